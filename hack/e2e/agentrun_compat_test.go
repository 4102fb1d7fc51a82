package e2e

// AgentRuns as sympozium's own clients and its own controller leave them
// (issue 11): runs without sessionKey/agentId, runs with both sandboxes,
// runs carrying its finalizer, runs it had started (its Job), and its trace
// annotation.

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// watchJobEnv returns a function that waits for the Job named name in ns to
// be created and returns its agent container's env: a run's Job may be
// deleted (cleanup) soon after, so the watch starts before the run exists.
func (e *env) watchJobEnv(t *testing.T, ns, name string) func() map[string]string {
	t.Helper()
	w, err := e.kube.BatchV1().Jobs(ns).Watch(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	require.NoError(t, err)
	t.Cleanup(w.Stop)
	return func() map[string]string {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				require.True(t, ok, "watch of Job %s ended", name)
				job, isJob := ev.Object.(*batchv1.Job)
				if ev.Type != watch.Added || !isJob {
					continue
				}
				env := map[string]string{}
				for _, c := range job.Spec.Template.Spec.Containers {
					if c.Name == v1alpha1.AgentContainerName {
						for _, v := range c.Env {
							env[v.Name] = v.Value
						}
					}
				}
				return env
			case <-timeout:
				require.FailNow(t, "no Job "+name)
			}
		}
	}
}

// Runs written exactly as sympozium's schedule controller
// (sympoziumschedule_controller.go:169-217 at 25c0bb2: no sessionKey) and
// its TUI (cmd/sympozium/main.go:7659-7680: neither agentId nor
// sessionKey) write them run to completion; the agent receives the
// documented defaults, and the runs' specs stay as written. Runs of its
// channel router (channel_router.go:180-216) continue the caller's trace
// from otel.dev/traceparent, in status.traceID and TRACEPARENT; an invalid
// one gives the run a trace of its own.
func TestRunsAsSympoziumsClientsWriteThem(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	runs := e.client.SympoziumV1alpha1().AgentRuns(ns)
	e.apply(t, instanceYAML(ns, "alice", "  agents: {default: {model: gpt-4o, baseURL: \"http://ollama:11434\"}}\n"))
	e.startController(t, ns)

	model := v1alpha1.ModelSpec{Provider: "ollama", Model: "gpt-4o", BaseURL: "http://ollama:11434"}
	// The schedule controller: "<schedule>-<totalRuns+1>", its labels,
	// agentId "schedule-<schedule>", the instance's model and skills (none
	// here), no authSecretRef (the instance has no authRefs).
	scheduled := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-1", Namespace: ns, Labels: map[string]string{
			"sympozium.ai/instance": "alice", "sympozium.ai/schedule": "nightly", "sympozium.ai/type": "heartbeat"}},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "alice", Task: "check the cluster", AgentID: "schedule-nightly", Model: model},
	}
	// The TUI: "<instance>-run-<unix seconds>", a 10m timeout.
	tui := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-run-1767225600", Namespace: ns, Labels: map[string]string{"sympozium.ai/instance": "alice"}},
		Spec:       v1alpha1.AgentRunSpec{InstanceRef: "alice", Task: "hello", Model: model, Timeout: &metav1.Duration{Duration: 10 * time.Minute}},
	}
	// The channel router, with a valid and an invalid traceparent.
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	channel := func(name, traceparent string) *v1alpha1.AgentRun {
		return &v1alpha1.AgentRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
				Labels: map[string]string{"sympozium.ai/instance": "alice", "sympozium.ai/source": "channel", "sympozium.ai/source-channel": "telegram"},
				Annotations: map[string]string{"sympozium.ai/reply-channel": "telegram", "sympozium.ai/reply-chat-id": "42",
					"sympozium.ai/sender-name": "Ada", "sympozium.ai/sender-id": "7", "otel.dev/traceparent": traceparent}},
			Spec: v1alpha1.AgentRunSpec{InstanceRef: "alice", AgentID: "primary", SessionKey: "channel-telegram-42-1767225600000000000",
				Task: "why is the api slow?", Model: model, Timeout: &metav1.Duration{Duration: 10 * time.Minute}},
		}
	}
	traced := channel("traced", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	untraced := channel("untraced", "00-"+callerTrace+"-0000000000000000-01") // zero span: invalid

	for _, run := range []*v1alpha1.AgentRun{scheduled, tui, traced, untraced} {
		jobEnv := e.watchJobEnv(t, ns, run.Name)
		created, err := runs.Create(ctx, run, metav1.CreateOptions{})
		require.NoError(t, err, "admitted as sympozium's CRD admits it")
		env := jobEnv()
		wantAgent, wantSession := run.Spec.AgentID, run.Spec.SessionKey
		if wantAgent == "" {
			wantAgent = "primary"
		}
		if wantSession == "" {
			wantSession = fmt.Sprintf("agentrun:%s/%s:%s", ns, run.Name, created.UID)
		}
		assert.Equal(t, wantAgent, env["AGENT_ID"], run.Name)
		assert.Equal(t, wantSession, env["SESSION_KEY"], run.Name)

		r := e.waitPhase(t, ns, run.Name, v1alpha1.PhaseSucceeded, 60*time.Second)
		assert.Equal(t, run.Spec.SessionKey, r.Spec.SessionKey, "the spec is never written")
		assert.Equal(t, run.Spec.AgentID, r.Spec.AgentID, "the spec is never written")
		assert.Regexp(t, "^00-"+r.Status.TraceID+"-[0-9a-f]{16}-01$", env["TRACEPARENT"], "%s: TRACEPARENT follows status.traceID", run.Name)
		if run == traced {
			assert.Equal(t, callerTrace, r.Status.TraceID, "the caller's trace continues")
			assert.NotContains(t, env["TRACEPARENT"], "00f067aa0ba902b7", "a span of the run's own under the caller's")
		} else {
			assert.NotEqual(t, callerTrace, r.Status.TraceID, run.Name)
			assert.Len(t, r.Status.TraceID, 32, run.Name)
		}
	}
}

// originalJob is the Job sympozium's own controller creates for run
// (agentrun_controller.go:1222-1275, its containers :1293-1425 and volumes
// :1817-1893 at 25c0bb2), owned by run as controllerutil.SetControllerReference
// sets it.
func originalJob(run *v1alpha1.AgentRun) *batchv1.Job {
	labels := map[string]string{
		"sympozium.ai/agent-run": run.Name, "sympozium.ai/instance": run.Spec.InstanceRef,
		"sympozium.ai/component": "agent-run", "app.kubernetes.io/part-of": "sympozium",
		"app.kubernetes.io/managed-by": "sympozium-controller",
	}
	ttl, deadline, backoff := int32(300), int64(600), int32(0)
	if run.Spec.Timeout != nil {
		deadline = int64(run.Spec.Timeout.Seconds()) + 60
	}
	readOnly, noPrivEsc, nonRoot, uid := true, false, true, int64(1000)
	env := []corev1.EnvVar{
		{Name: "AGENT_RUN_ID", Value: run.Name}, {Name: "AGENT_ID", Value: run.Spec.AgentID},
		{Name: "SESSION_KEY", Value: run.Spec.SessionKey}, {Name: "INSTANCE_NAME", Value: run.Spec.InstanceRef},
		{Name: "AGENT_NAMESPACE", Value: run.Namespace}, {Name: "TASK", Value: run.Spec.Task},
		{Name: "SYSTEM_PROMPT", Value: run.Spec.SystemPrompt}, {Name: "MODEL_PROVIDER", Value: run.Spec.Model.Provider},
		{Name: "MODEL_NAME", Value: run.Spec.Model.Model}, {Name: "MODEL_BASE_URL", Value: run.Spec.Model.BaseURL},
		{Name: "THINKING_MODE", Value: string(run.Spec.Model.Thinking)},
	}
	keys := make([]string, 0, len(run.Spec.Env))
	for k := range run.Spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: run.Spec.Env[k]})
	}
	secCtx := &corev1.SecurityContext{ReadOnlyRootFilesystem: &readOnly, AllowPrivilegeEscalation: &noPrivEsc,
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	res := func(rc, rm, lc, lm string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(rc), corev1.ResourceMemory: resource.MustParse(rm)},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lc), corev1.ResourceMemory: resource.MustParse(lm)}}
	}
	ws, ipc, tmp := resource.MustParse("1Gi"), resource.MustParse("64Mi"), resource.MustParse("256Mi")
	ref := metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: run.Name, Namespace: run.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*ref}},
		Spec: batchv1.JobSpec{
			TTLSecondsAfterFinished: &ttl, ActiveDeadlineSeconds: &deadline, BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, ServiceAccountName: "sympozium-agent",
					DNSPolicy: corev1.DNSClusterFirst, NodeSelector: run.Spec.Model.NodeSelector,
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, RunAsUser: &uid, FSGroup: &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{
						{Name: "agent", Image: "ghcr.io/sympozium-ai/sympozium/agent-runner:v0.0.0", ImagePullPolicy: corev1.PullIfNotPresent,
							SecurityContext: secCtx, Env: env,
							VolumeMounts: []corev1.VolumeMount{{Name: "workspace", MountPath: "/workspace"},
								{Name: "skills", MountPath: "/skills", ReadOnly: true}, {Name: "ipc", MountPath: "/ipc"}, {Name: "tmp", MountPath: "/tmp"}},
							Resources: res("250m", "512Mi", "1", "1Gi")},
						{Name: "ipc-bridge", Image: "ghcr.io/sympozium-ai/sympozium/ipc-bridge:v0.0.0", ImagePullPolicy: corev1.PullIfNotPresent,
							SecurityContext: secCtx,
							Env: []corev1.EnvVar{{Name: "AGENT_RUN_ID", Value: run.Name}, {Name: "INSTANCE_NAME", Value: run.Spec.InstanceRef},
								{Name: "AGENT_NAMESPACE", Value: run.Namespace}, {Name: "EVENT_BUS_URL", Value: "nats://nats.sympozium-system.svc:4222"}},
							VolumeMounts: []corev1.VolumeMount{{Name: "ipc", MountPath: "/ipc"}},
							Resources:    res("50m", "64Mi", "100m", "128Mi")},
					},
					Volumes: []corev1.Volume{
						{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &ws}}},
						{Name: "ipc", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &ipc}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: &tmp}}},
						{Name: "skills", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

// startedByOriginal creates run as sympozium's controller leaves a run it
// started: its finalizer, its Job (and so its pod), and the status it
// writes (Running, jobName, startedAt, traceID; podName once it saw the
// pod). It returns once the agent container is in a state done says.
func (e *env) startedByOriginal(t *testing.T, run *v1alpha1.AgentRun, done func(corev1.ContainerStatus) bool) {
	t.Helper()
	ctx := context.Background()
	run.Finalizers = []string{"sympozium.ai/agentrun-finalizer"}
	created, err := e.client.SympoziumV1alpha1().AgentRuns(run.Namespace).Create(ctx, run, metav1.CreateOptions{})
	require.NoError(t, err)
	job, err := e.kube.BatchV1().Jobs(run.Namespace).Create(ctx, originalJob(created), metav1.CreateOptions{})
	require.NoError(t, err)
	var pod corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := e.kube.CoreV1().Pods(run.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/controller-uid=" + string(job.UID)})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = pods.Items[0]
		for _, c := range pod.Status.ContainerStatuses {
			if c.Name == "agent" && done(c) {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "the original's pod of %s", run.Name)
	started := metav1.NewTime(created.CreationTimestamp.Add(time.Second))
	created.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning, JobName: job.Name, PodName: pod.Name,
		StartedAt: &started, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	_, err = e.client.SympoziumV1alpha1().AgentRuns(run.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// Switching controllers with runs in flight: runs sympozium's controller
// started, their Jobs written exactly as it writes them, are adopted, one
// whose agent is still running and one whose agent has finished: the agent
// container's outcome decides each, as for this controller's own runs; no
// second Job, no ChildNameConflict, and sympozium's finalizer is removed.
func TestAdoptsRunsTheOriginalStarted(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	e.apply(t, instanceYAML(ns, "alice", ""))
	// The original's controller makes this ServiceAccount in every namespace it runs agents in.
	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sympozium-agent, namespace: %s}\n", ns))

	newRun := func(name string, env map[string]string) *v1alpha1.AgentRun {
		return &v1alpha1.AgentRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"sympozium.ai/instance": "alice"},
				Annotations: map[string]string{"otel.dev/traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
			Spec: v1alpha1.AgentRunSpec{InstanceRef: "alice", AgentID: "primary", SessionKey: "channel-telegram-42-1767225600000000000",
				Task: "check the cluster", Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}, Env: env},
		}
	}
	finished := `{"status":"error","error":"model refused the task","metrics":{"inputTokens":12,"outputTokens":3}}`
	e.startedByOriginal(t, newRun("inflight", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "20s"}),
		func(c corev1.ContainerStatus) bool { return c.State.Running != nil })
	e.startedByOriginal(t, newRun("done", map[string]string{"SIM_MESSAGE": finished, "SIM_EXIT_CODE": "3"}),
		func(c corev1.ContainerStatus) bool { return c.State.Terminated != nil })

	e.startController(t, ns)

	adopted := func(name string) string {
		return "Job " + name + " was created by sympozium's own controller; adopted: its agent container decides the run"
	}
	// In flight: adopted while its agent runs, then its outcome.
	r := e.waitRun(t, ns, "inflight", 20*time.Second, "adopted", func(r *v1alpha1.AgentRun) bool {
		return condition(r, v1alpha1.ConditionAdmitted) != nil
	})
	assert.Equal(t, v1alpha1.PhaseRunning, r.Status.Phase, "adopted while the agent runs")
	assert.Empty(t, r.Finalizers, "sympozium's finalizer removed")
	c := condition(r, v1alpha1.ConditionAdmitted)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assert.Equal(t, v1alpha1.ReasonJobCreated, c.Reason)
	assert.Equal(t, adopted("inflight"), c.Message)
	r = e.waitPhase(t, ns, "inflight", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	assert.EqualValues(t, 2300, r.Status.TokenUsage.TotalTokens)
	assert.Equal(t, "inflight", r.Status.JobName)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", r.Status.TraceID, "kept as sympozium wrote it")

	// Finished before the switch: its outcome is read at once.
	r = e.waitPhase(t, ns, "done", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r))
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 3, *r.Status.ExitCode)
	assert.Contains(t, r.Status.Error, "model refused the task")
	assert.EqualValues(t, 15, r.Status.TokenUsage.TotalTokens)
	assert.Equal(t, adopted("done"), condition(r, v1alpha1.ConditionAdmitted).Message)
	assert.Empty(t, r.Finalizers)

	// cleanup (the default) removes sympozium's Jobs like ours, and no
	// other Job was ever made.
	for _, name := range []string{"inflight", "done"} {
		e.waitNoChildren(t, ns, name, 60*time.Second)
	}
	out := e.kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=AgentRun", "-o", "jsonpath={.items[*].reason}")
	assert.NotContains(t, out, v1alpha1.ReasonChildNameConflict)
	jobs, err := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, jobs.Items)
}

// A run deleted while it still carries sympozium's finalizer (deleted
// before this controller started): this controller lets it go.
func TestOriginalsFinalizerDoesNotHoldADeletedRun(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.apply(t, strings.Replace(runYAML(ns, "stuck", "missing", nil, ""), "metadata: {name: stuck, namespace: "+ns+"}",
		"metadata: {name: stuck, namespace: "+ns+", finalizers: [sympozium.ai/agentrun-finalizer]}", 1))
	e.kubectl(t, "delete", "agentrun", "stuck", "-n", ns, "--wait=false")
	r := e.getRun(t, ns, "stuck")
	require.NotNil(t, r.DeletionTimestamp, "held by the finalizer")

	e.startController(t, ns)
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, "stuck", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the run is gone")
}

// Both sandboxes enabled, as sympozium's integration test writes it
// (test/integration/test-agent-sandbox.sh:298-330): admitted, run in the
// agent sandbox without the container sandbox's sidecar, and the admission
// says so.
func TestBothSandboxesAgentSandboxWins(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	e.agentSandbox(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "both", "inst", map[string]string{"SIM_MESSAGE": successReport},
		"  cleanup: keep\n  sandbox: {enabled: true}\n  agentSandbox: {enabled: true}\n"))

	r := e.waitPhase(t, ns, "both", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "both", r.Status.SandboxName)
	assert.Empty(t, r.Status.JobName)
	const note = "spec.sandbox ignored: agentSandbox is enabled too and replaces the container sandbox"
	assert.Equal(t, "Sandbox both created; "+note, condition(r, v1alpha1.ConditionAdmitted).Message)
	out := e.kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=both,involvedObject.kind=AgentRun",
		"-o", "jsonpath={.items[*].message}")
	assert.Contains(t, out, note)

	sb, err := e.dynamic(t).Resource(sandboxesGVR).Namespace(ns).Get(context.Background(), "both", metav1.GetOptions{})
	require.NoError(t, err)
	containers, _, _ := unstructured.NestedSlice(sb.Object, "spec", "podTemplate", "spec", "containers")
	var names []string
	for _, c := range containers {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	assert.Contains(t, names, v1alpha1.AgentContainerName)
	assert.NotContains(t, names, "sandbox", "the container sandbox's sidecar is not added")
}

// A server sympozium's controller started (agentrun_controller.go:693-926
// at 25c0bb2: Deployment and Service "<run>-server" running its web proxy,
// status Serving): adopted and kept as it is, the run stays Serving, and
// deleting the run stops it like this controller's own servers.
func TestAdoptsServerTheOriginalStarted(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	e.apply(t, instanceYAML(ns, "alice", ""))
	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sympozium-agent, namespace: %s}\n", ns))

	run, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Finalizers: []string{"sympozium.ai/agentrun-finalizer"},
			Labels: map[string]string{"sympozium.ai/instance": "alice"}},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "alice", AgentID: "web-endpoint", SessionKey: "web-endpoint", Task: "serve",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}, Mode: v1alpha1.ModeServer,
			Skills: []v1alpha1.SkillRef{{SkillPackRef: "web-endpoint"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	labels := map[string]string{
		"sympozium.ai/agent-run": "web", "sympozium.ai/instance": "alice", "sympozium.ai/component": "agent-server",
		"app.kubernetes.io/part-of": "sympozium", "app.kubernetes.io/managed-by": "sympozium-controller",
	}
	ref := []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}
	probe := func(delay, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(8080)}},
			InitialDelaySeconds: delay, PeriodSeconds: period}
	}
	one, yes, no := int32(1), true, false
	dep, err := e.kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-server", Namespace: ns, Labels: labels, OwnerReferences: ref},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyAlways, ServiceAccountName: "sympozium-agent",
				Containers: []corev1.Container{{Name: "web-proxy", Image: "ghcr.io/sympozium-ai/sympozium/web-proxy:latest",
					ImagePullPolicy: corev1.PullIfNotPresent,
					Env: []corev1.EnvVar{{Name: "INSTANCE_NAME", Value: "alice"}, {Name: "WEB_PROXY_API_KEY", ValueFrom: &corev1.EnvVarSource{
						SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "web-server-api-key"}, Key: "api-key"}}}},
					Ports:         []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
					LivenessProbe: probe(5, 10), ReadinessProbe: probe(3, 5),
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}},
					SecurityContext: &corev1.SecurityContext{RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no},
				}},
			}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-server", Namespace: ns, Labels: labels, OwnerReferences: ref},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := e.kube.AppsV1().Deployments(ns).Get(ctx, "web-server", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == 1, nil
	})
	require.NoError(t, err, "sympozium's server available")
	now := metav1.Now()
	run.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseServing, DeploymentName: "web-server", ServiceName: "web-server", StartedAt: &now}
	_, err = e.client.SympoziumV1alpha1().AgentRuns(ns).UpdateStatus(ctx, run, metav1.UpdateOptions{})
	require.NoError(t, err)

	e.startController(t, ns)
	r := e.waitRun(t, ns, "web", 20*time.Second, "adopted", func(r *v1alpha1.AgentRun) bool {
		c := condition(r, v1alpha1.ConditionServing)
		return condition(r, v1alpha1.ConditionAdmitted) != nil && c != nil && c.Status == metav1.ConditionTrue
	})
	assert.Equal(t, v1alpha1.PhaseServing, r.Status.Phase)
	assert.Equal(t, "Deployment web-server was created by sympozium's own controller; adopted: kept as it is, its availability decides while the run serves",
		condition(r, v1alpha1.ConditionAdmitted).Message)
	assert.Equal(t, []string{v1alpha1.FinalizerServer}, r.Finalizers, "sympozium's finalizer replaced by ours")
	// Left as sympozium built it: never updated. Checked after a barrier,
	// not a sleep: the controller has carried a later run through its life
	// since it adopted the server, and had every chance to update it.
	e.barrierRun(t, ns, "alice")
	d, err := e.kube.AppsV1().Deployments(ns).Get(ctx, "web-server", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, dep.Generation, d.Generation)
	assert.Equal(t, "web-proxy", d.Spec.Template.Spec.Containers[0].Name)
	svc, err := e.kube.CoreV1().Services(ns).Get(ctx, "web-server", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, labels, svc.Spec.Selector)

	// Deleting the run stops the server: recorded, then gone.
	e.kubectl(t, "delete", "agentrun", "web", "-n", ns, "--timeout=60s")
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.kube.AppsV1().Deployments(ns).Get(ctx, "web-server", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the Deployment is gone")
}
