package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

const successReport = `{"status":"success","response":"the cluster is healthy","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":45000}}`

// instanceYAML is a SympoziumInstance; spec is indented under spec:.
func instanceYAML(ns, name, spec string) string {
	if spec == "" {
		spec = "  runHistoryLimit: 50\n"
	}
	return fmt.Sprintf("apiVersion: sympozium.ai/v1alpha1\nkind: SympoziumInstance\nmetadata: {name: %s, namespace: %s}\nspec:\n%s", name, ns, spec)
}

// runYAML is a task-mode run of instance inst whose simulated agent follows
// sim (SIM_EXIT_CODE, SIM_MESSAGE, SIM_DURATION, SIM_WAITING_REASON); extra
// is appended under spec.
func runYAML(ns, name, inst string, sim map[string]string, extra string) string {
	var env strings.Builder
	if len(sim) > 0 {
		env.WriteString("  env:\n")
		keys := make([]string, 0, len(sim))
		for k := range sim {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := json.Marshal(sim[k])
			fmt.Fprintf(&env, "    %s: %s\n", k, v)
		}
	}
	return fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata: {name: %s, namespace: %s}
spec:
  instanceRef: %s
  agentId: default
  sessionKey: s-%s
  task: check the cluster
  model: {provider: openai, model: gpt-4o}
%s%s`, name, ns, inst, name, env.String(), extra)
}

// phaseRecorder watches a run and records every phase it is seen in.
type phaseRecorder struct {
	mu     sync.Mutex
	phases []v1alpha1.AgentRunPhase
}

func (e *env) recordPhases(t *testing.T, ns, name string) *phaseRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	require.NoError(t, err)
	pr := &phaseRecorder{}
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				continue
			}
			if r, ok := ev.Object.(*v1alpha1.AgentRun); ok {
				pr.mu.Lock()
				if n := len(pr.phases); n == 0 || pr.phases[n-1] != r.Status.Phase {
					pr.phases = append(pr.phases, r.Status.Phase)
				}
				pr.mu.Unlock()
			}
		}
	}()
	return pr
}

func (p *phaseRecorder) get() []v1alpha1.AgentRunPhase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]v1alpha1.AgentRunPhase(nil), p.phases...)
}

func condition(r *v1alpha1.AgentRun, typ string) *metav1.Condition {
	for i := range r.Status.Conditions {
		if r.Status.Conditions[i].Type == typ {
			return &r.Status.Conditions[i]
		}
	}
	return nil
}

func failedReason(r *v1alpha1.AgentRun) string {
	if c := condition(r, v1alpha1.ConditionFailed); c != nil && c.Status == metav1.ConditionTrue {
		return c.Reason
	}
	return ""
}

// jobGone waits until the run's Job and its pods are gone.
func (e *env) waitNoChildren(t *testing.T, ns, run string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		jobs, err := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=" + run})
		if err != nil {
			return false, nil
		}
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=" + run})
		if err != nil {
			return false, nil
		}
		return len(jobs.Items) == 0 && len(pods.Items) == 0, nil
	})
	require.NoError(t, err, "the Job or pods of %s/%s are still there", ns, run)
}

func (e *env) agentPod(t *testing.T, ns, run string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=" + run})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		return true, nil
	})
	require.NoError(t, err, "no pod for run %s", run)
	return pod
}

func TestTaskRunSucceeds(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	phases := e.recordPhases(t, ns, "ok")
	e.apply(t, runYAML(ns, "ok", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "2s"}, ""))

	// kubectl wait works on the Job-style condition.
	e.kubectl(t, "wait", "-n", ns, "--for=condition=Complete", "--timeout=60s", "agentrun/ok")
	r := e.getRun(t, ns, "ok")
	assert.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 0, *r.Status.ExitCode)
	assert.Equal(t, &v1alpha1.TokenUsage{InputTokens: 1500, OutputTokens: 800, TotalTokens: 2300, ToolCalls: 5, DurationMs: 45000}, r.Status.TokenUsage)
	assert.Equal(t, "ok", r.Status.JobName)
	assert.NotEmpty(t, r.Status.PodName)
	assert.NotNil(t, r.Status.StartedAt)
	assert.NotNil(t, r.Status.CompletedAt)
	assert.Len(t, r.Status.TraceID, 32)
	assert.Equal(t, r.Generation, r.Status.ObservedGeneration)
	for _, typ := range []string{v1alpha1.ConditionAdmitted, v1alpha1.ConditionComplete} {
		c := condition(r, typ)
		require.NotNil(t, c, typ)
		assert.Equal(t, metav1.ConditionTrue, c.Status, typ)
	}
	// Pending and Running were really written, in order.
	require.Eventually(t, func() bool {
		p := phases.get()
		return len(p) > 0 && p[len(p)-1] == v1alpha1.PhaseSucceeded
	}, 30*time.Second, 50*time.Millisecond)
	assert.Equal(t, []v1alpha1.AgentRunPhase{"", v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseSucceeded}, phases.get())
	// An Event for each transition (only the outcome with
	// --progress-events=false, TestTaskRunFewerEvents).
	// (Events carry seconds: two in the same second come in any order.)
	assert.ElementsMatch(t, []string{v1alpha1.ReasonJobCreated, v1alpha1.ReasonStarted, v1alpha1.ReasonSucceeded}, e.runEvents(t, ns, "ok", 3))
	// cleanup: delete (the default) removes the Job and its pod.
	e.waitNoChildren(t, ns, "ok", 60*time.Second)
	// The columns show it.
	cols := strings.Fields(strings.Split(strings.TrimSpace(e.kubectl(t, "get", "agentrun", "ok", "-n", ns)), "\n")[1])
	assert.Equal(t, []string{"ok", "inst", "Succeeded"}, cols[:3])
	assert.Equal(t, "2300", cols[4])
}

func TestTaskRunPodContract(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", "  authRefs: [{provider: openai, secret: openai-key}]\n"))
	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: openai-key, namespace: %s}\nstringData: {OPENAI_API_KEY: sk-secret-value}\n", ns))
	e.apply(t, runYAML(ns, "contract", "inst", map[string]string{"SIM_DURATION": "1h", "MY_VAR": "x"}, "  timeout: 2m\n  cleanup: keep\n  toolPolicy: {allow: [read_file], deny: [exec, write_file]}\n"))
	e.waitPhase(t, ns, "contract", v1alpha1.PhaseRunning, 60*time.Second)
	pod := e.agentPod(t, ns, "contract")
	spec := pod.Spec
	assert.Equal(t, corev1.RestartPolicyNever, spec.RestartPolicy)
	assert.Equal(t, false, *spec.AutomountServiceAccountToken)
	require.NotNil(t, spec.SecurityContext.RunAsNonRoot)
	assert.True(t, *spec.SecurityContext.RunAsNonRoot)
	assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, spec.SecurityContext.SeccompProfile.Type)
	agent := spec.Containers[0]
	assert.Equal(t, v1alpha1.AgentContainerName, agent.Name)
	assert.Equal(t, corev1.TerminationMessageFallbackToLogsOnError, agent.TerminationMessagePolicy)
	assert.False(t, *agent.SecurityContext.AllowPrivilegeEscalation)
	assert.True(t, *agent.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, []corev1.Capability{"ALL"}, agent.SecurityContext.Capabilities.Drop)
	env := map[string]string{}
	for _, v := range agent.Env {
		env[v.Name] = v.Value
	}
	assert.Equal(t, "contract", env["AGENT_RUN_ID"])
	assert.Equal(t, "check the cluster", env["TASK"])
	assert.Equal(t, "gpt-4o", env["MODEL_NAME"])
	assert.Equal(t, "read_file", env["TOOL_POLICY_ALLOW"])
	assert.Equal(t, "exec,write_file", env["TOOL_POLICY_DENY"])
	assert.Equal(t, "true", env["TOOLS_ENABLED"])
	assert.Equal(t, "x", env["MY_VAR"])
	assert.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, env["TRACEPARENT"])
	left, err := time.ParseDuration(env["RUN_TIMEOUT"]) // as sympozium's agent-runner reads it
	require.NoError(t, err, "RUN_TIMEOUT %q", env["RUN_TIMEOUT"])
	assert.True(t, left > 0 && left <= 2*time.Minute, "RUN_TIMEOUT %s: the time left of a 2m timeout", left)
	require.Len(t, agent.EnvFrom, 1)
	assert.Equal(t, "openai-key", agent.EnvFrom[0].SecretRef.Name)
	b, _ := json.Marshal(pod.Spec)
	assert.NotContains(t, string(b), "sk-secret-value", "the API key must be referenced, never copied")
	mounts := map[string]string{}
	for _, m := range agent.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	assert.Equal(t, map[string]string{"workspace": "/workspace", "tmp": "/tmp", "ipc": "/ipc"}, mounts)
	// Job backstop deadline.
	job, err := e.kube.BatchV1().Jobs(ns).Get(context.Background(), "contract", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, job.Spec.ActiveDeadlineSeconds)
	assert.InDelta(t, 135, *job.Spec.ActiveDeadlineSeconds, 10)
	// Retries are for pods the infrastructure broke (the default budget of
	// 2), never for the agent's own exit: the API server stored the policy.
	assert.EqualValues(t, 2, *job.Spec.BackoffLimit)
	require.NotNil(t, job.Spec.PodFailurePolicy)
	assert.Equal(t, workload.PodFailurePolicy(), job.Spec.PodFailurePolicy)
}

func TestTaskRunAgentFails(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "bad", "inst", map[string]string{"SIM_EXIT_CODE": "3",
		"SIM_MESSAGE": `{"status":"error","error":"model refused the task","metrics":{"inputTokens":12,"outputTokens":3}}`}, ""))
	e.kubectl(t, "wait", "-n", ns, "--for=condition=Failed", "--timeout=60s", "agentrun/bad")
	r := e.getRun(t, ns, "bad")
	assert.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase)
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 3, *r.Status.ExitCode)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r))
	assert.Contains(t, r.Status.Error, "model refused the task")
	assert.EqualValues(t, 15, r.Status.TokenUsage.TotalTokens)
	e.waitNoChildren(t, ns, "bad", 60*time.Second)
	// kubectl describe explains the failure: the Warning and its message.
	assert.Contains(t, e.runEvents(t, ns, "bad", 3), v1alpha1.ReasonAgentFailed)
	out := e.kubectl(t, "describe", "agentrun", "-n", ns, "bad")
	assert.Regexp(t, `Warning\s+AgentFailed\s+.*agent container exited with code 3 \(Error\): model refused the task`, out)
}

// TestTaskRunFewerEvents: with --progress-events=false the steps of the
// happy path are only in the conditions; the outcome is still an Event.
func TestTaskRunFewerEvents(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns, "--progress-events=false")
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "ok", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "2s"}, ""))
	r := e.waitPhase(t, ns, "ok", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, []string{v1alpha1.ReasonSucceeded}, e.runEvents(t, ns, "ok", 1))
	assert.Equal(t, v1alpha1.ReasonJobCreated, condition(r, v1alpha1.ConditionAdmitted).Reason, "the admission is in the conditions")
	// No other Event comes. Events are written by one background writer,
	// in the order they were recorded: once a run created after ok was
	// cleaned up has its own Event written, every Event recorded for ok
	// is written too (a barrier, not a sleep).
	e.waitNoChildren(t, ns, "ok", 60*time.Second)
	e.runEvents(t, ns, e.barrierRun(t, ns, "inst"), 1)
	assert.Equal(t, []string{v1alpha1.ReasonSucceeded}, e.runEvents(t, ns, "ok", 1), "no other Event came")
}

// runEvents waits until the run has at least n Events and returns their
// reasons (Events are written after the status, by a background writer).
func (e *env) runEvents(t *testing.T, ns, run string, n int) []string {
	t.Helper()
	var reasons []string
	require.Eventually(t, func() bool {
		out, err := e.kubectlErr("get", "events", "-n", ns, "--field-selector", "involvedObject.name="+run+",involvedObject.kind=AgentRun",
			"-o", "jsonpath={.items[*].reason}")
		if err != nil {
			return false
		}
		reasons = strings.Fields(out)
		return len(reasons) >= n
	}, 60*time.Second, 200*time.Millisecond, "%d Events of %s", n, run)
	return reasons
}

func TestTaskRunSidecarDoesNotHoldTheRun(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "side", "inst", map[string]string{"SIM_MESSAGE": successReport},
		"  cleanup: keep\n  sandbox: {enabled: true, image: sandbox:test}\n"))
	r := e.waitPhase(t, ns, "side", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	pod := e.agentPod(t, ns, "side")
	var sidecarRunning bool
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == "sandbox" && s.State.Running != nil {
			sidecarRunning = true
		}
	}
	assert.True(t, sidecarRunning, "the sidecar should still run: %+v", pod.Status.ContainerStatuses)
}

func TestTaskRunTimeouts(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "slow", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 8s\n  cleanup: keep\n"))
	e.apply(t, runYAML(ns, "stuck", "inst", nil, "  timeout: 6s\n  model: {provider: openai, model: gpt-4o, nodeSelector: {no-such: node}}\n"))

	r := e.waitPhase(t, ns, "slow", v1alpha1.PhaseFailed, 40*time.Second)
	assert.Equal(t, v1alpha1.ReasonTimeout, failedReason(r))
	assert.Contains(t, r.Status.Error, "still running")
	require.NotNil(t, r.Status.StartedAt)
	// A product promise, not a wait: the run ends at its timeout (3s of
	// slack for the API server's whole seconds), however loaded the machine.
	assert.WithinDuration(t, r.CreationTimestamp.Add(8*time.Second), r.Status.CompletedAt.Time, 3*time.Second)
	// On expiry the workload is deleted, even with cleanup: keep.
	e.waitNoChildren(t, ns, "slow", 60*time.Second)

	r = e.waitPhase(t, ns, "stuck", v1alpha1.PhaseFailed, 40*time.Second)
	assert.Equal(t, v1alpha1.ReasonTimeout, failedReason(r))
	assert.Contains(t, r.Status.Error, "Unschedulable")
	assert.Nil(t, r.Status.StartedAt)
	e.waitNoChildren(t, ns, "stuck", 60*time.Second)
}

func TestTaskRunWorkloadLost(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "podgone", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 5m\n"))
	e.apply(t, runYAML(ns, "jobgone", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 5m\n"))
	e.waitPhase(t, ns, "podgone", v1alpha1.PhaseRunning, 60*time.Second)
	e.waitPhase(t, ns, "jobgone", v1alpha1.PhaseRunning, 60*time.Second)

	pod := e.agentPod(t, ns, "podgone")
	e.kubectl(t, "delete", "pod", "-n", ns, pod.Name, "--wait=false")
	e.kubectl(t, "delete", "job", "-n", ns, "jobgone", "--cascade=background", "--wait=false")

	r := e.waitPhase(t, ns, "podgone", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonPodLost, failedReason(r))
	r = e.waitPhase(t, ns, "jobgone", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonJobLost, failedReason(r))
	e.waitNoChildren(t, ns, "podgone", 60*time.Second)
	e.waitNoChildren(t, ns, "jobgone", 60*time.Second)
}

func TestTaskRunFailsFast(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns) // --fail-fast-grace 3s
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "pull", "inst", map[string]string{"SIM_WAITING_REASON": "ErrImagePull"}, ""))
	e.apply(t, runYAML(ns, "secret", "inst", map[string]string{"SIM_WAITING_REASON": "CreateContainerConfigError"}, ""))
	e.apply(t, runYAML(ns, "skills", "inst", nil, "  skills: [{skillPackRef: missing-pack}]\n"))
	for run, reason := range map[string]string{"pull": v1alpha1.ReasonImagePullFailed, "secret": v1alpha1.ReasonConfigError, "skills": v1alpha1.ReasonConfigError} {
		r := e.waitPhase(t, ns, run, v1alpha1.PhaseFailed, 40*time.Second)
		assert.Equal(t, reason, failedReason(r), run)
		// A product promise, not a wait: failing fast (grace 3s) means well
		// before 30s; do not raise it for a slow machine.
		assert.Less(t, r.Status.CompletedAt.Sub(r.CreationTimestamp.Time), 30*time.Second, run)
	}
	r := e.getRun(t, ns, "skills")
	assert.Contains(t, r.Status.Error, "missing-pack")
	assert.Empty(t, r.Status.JobName, "no Job for a run whose skills are missing")
}

func TestTaskRunWithSkills(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata: {name: k8s-ops, namespace: %s}
spec:
  skills:
  - {name: triage, description: how to triage, content: "# Triage\nLook at events first."}
`, ns))
	e.apply(t, runYAML(ns, "skilled", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  cleanup: keep\n  skills: [{skillPackRef: k8s-ops}]\n"))
	e.waitPhase(t, ns, "skilled", v1alpha1.PhaseSucceeded, 60*time.Second)
	cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "k8s-ops", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Contains(t, cm.Data["triage.md"], "Look at events first.")
	pod := e.agentPod(t, ns, "skilled")
	var found bool
	for _, v := range pod.Spec.Volumes {
		if v.Name == "skills" && v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ConfigMap.Name == "k8s-ops" {
			found = true
		}
	}
	assert.True(t, found, "skills volume: %+v", pod.Spec.Volumes)
	sp, err := e.client.SympoziumV1alpha1().SkillPacks(ns).Get(context.Background(), "k8s-ops", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "k8s-ops", sp.Status.ConfigMapName)
	assert.EqualValues(t, 1, sp.Status.SkillCount)

	// Editing the pack re-renders its ConfigMap.
	e.kubectl(t, "-n", ns, "patch", "skillpack", "k8s-ops", "--type=json",
		"-p", `[{"op":"replace","path":"/spec/skills/0/content","value":"# Triage\nRead the logs."}]`)
	require.Eventually(t, func() bool {
		cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "k8s-ops", metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["triage.md"], "Read the logs.")
	}, 30*time.Second, 100*time.Millisecond)
}

func TestTaskRunCleanupKeep(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "kept", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  cleanup: keep\n"))
	e.apply(t, runYAML(ns, "deleted", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  cleanup: delete\n"))
	e.waitPhase(t, ns, "kept", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitPhase(t, ns, "deleted", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitNoChildren(t, ns, "deleted", 60*time.Second)
	// The kept Job stays. Not a sleep but a barrier: once the kept Job is
	// complete (the last change of the run's children) and the controller
	// has carried a later run through its life, it has handled every event
	// of the kept run, and had every chance to do something wrong.
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		j, err := e.kube.BatchV1().Jobs(ns).Get(ctx, "kept", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil // deleted: the check below says so
		}
		if err != nil {
			return false, nil
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "the kept Job did not complete")
	e.barrierRun(t, ns, "inst")
	_, err = e.kube.BatchV1().Jobs(ns).Get(context.Background(), "kept", metav1.GetOptions{})
	assert.NoError(t, err)
	assert.NotNil(t, e.agentPod(t, ns, "kept"))
}

func TestTaskRunInstanceAppearsLater(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, runYAML(ns, "early", "late-inst", map[string]string{"SIM_MESSAGE": successReport}, ""))
	r := e.waitRun(t, ns, "early", 30*time.Second, "InstanceNotFound", func(r *v1alpha1.AgentRun) bool {
		c := condition(r, v1alpha1.ConditionAdmitted)
		return r.Status.Phase == v1alpha1.PhasePending && c != nil && c.Reason == v1alpha1.ReasonInstanceNotFound
	})
	assert.Empty(t, r.Status.JobName)
	e.apply(t, instanceYAML(ns, "late-inst", ""))
	e.waitPhase(t, ns, "early", v1alpha1.PhaseSucceeded, 60*time.Second)
}

func TestTaskRunHistoryPruned(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	// Two live runs first, so they are the oldest of all.
	e.apply(t, runYAML(ns, "live-0", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 10m\n"))
	e.apply(t, runYAML(ns, "live-1", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 10m\n"))
	var all strings.Builder
	for i := range 55 {
		all.WriteString("---\n")
		all.WriteString(runYAML(ns, fmt.Sprintf("done-%02d", i), "inst", map[string]string{"SIM_DURATION": "0s"}, ""))
	}
	e.apply(t, all.String())
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		runs, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		finished := 0
		for _, r := range runs.Items {
			if r.Status.Phase.IsTerminal() {
				finished++
			}
		}
		return finished == 50 && len(runs.Items) == 52, nil
	})
	require.NoError(t, err, "expected 50 finished + 2 live runs")
	for _, live := range []string{"live-0", "live-1"} {
		r := e.getRun(t, ns, live)
		assert.Equal(t, v1alpha1.PhaseRunning, r.Status.Phase, live)
	}
	// The instance counts what is kept.
	var st v1alpha1.SympoziumInstanceStatus
	require.Eventually(t, func() bool {
		inst, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(context.Background(), "inst", metav1.GetOptions{})
		if err == nil {
			st = inst.Status
		}
		return err == nil && st.ActiveRuns == 2 && st.SucceededRuns == 50 && st.FailedRuns == 0 && st.WaitingRuns == 0
	}, 30*time.Second, 200*time.Millisecond, "instance status counts: %+v", &st)
	t.Logf("instance status: %+v", st)
}

func TestSubagentLimits(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", "  agents: {default: {subagents: {maxDepth: 2, maxConcurrent: 2, maxChildrenPerAgent: 3}}}\n"))
	e.apply(t, runYAML(ns, "parent", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 10m\n"))
	e.waitPhase(t, ns, "parent", v1alpha1.PhaseRunning, 60*time.Second)
	child := func(name string, depth int, sim map[string]string) string {
		return runYAML(ns, name, "inst", sim, fmt.Sprintf("  timeout: 10m\n  parent: {runName: parent, sessionKey: s-parent, spawnDepth: %d}\n", depth))
	}
	e.apply(t, child("too-deep", 3, nil))
	r := e.waitPhase(t, ns, "too-deep", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonSpawnDepthExceeded, failedReason(r))

	// Three children in order; the third must wait for a slot.
	hold := map[string]string{"SIM_DURATION": "1h"}
	e.apply(t, child("c1", 1, hold))
	e.afterCreationSecondOf(t, ns, "c1") // distinct creation seconds: oldest first is well defined
	e.apply(t, child("c2", 1, hold))
	e.afterCreationSecondOf(t, ns, "c2")
	e.apply(t, child("c3", 1, map[string]string{"SIM_MESSAGE": successReport}))
	e.afterCreationSecondOf(t, ns, "c3")
	e.apply(t, child("c4", 1, nil))
	e.waitPhase(t, ns, "c1", v1alpha1.PhaseRunning, 30*time.Second)
	e.waitPhase(t, ns, "c2", v1alpha1.PhaseRunning, 30*time.Second)
	r = e.waitRun(t, ns, "c3", 30*time.Second, "WaitingForCapacity", func(r *v1alpha1.AgentRun) bool {
		c := condition(r, v1alpha1.ConditionAdmitted)
		return c != nil && c.Reason == v1alpha1.ReasonWaitingForCapacity
	})
	assert.Equal(t, v1alpha1.PhasePending, r.Status.Phase)
	r = e.waitPhase(t, ns, "c4", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonTooManyChildren, failedReason(r))
	// Children are owned by the parent.
	c1 := e.getRun(t, ns, "c1")
	require.Len(t, c1.OwnerReferences, 1)
	assert.Equal(t, "parent", c1.OwnerReferences[0].Name)

	// c3 must still wait: checked after a barrier, not a sleep (the
	// controller has carried a later run through its life; that run's end
	// and deletion also woke the runs waiting for capacity, c3 among them).
	e.barrierRun(t, ns, "inst")
	assert.Equal(t, v1alpha1.PhasePending, e.getRun(t, ns, "c3").Status.Phase, "c3 must still wait")

	// Free a slot: c3 starts and succeeds.
	e.kubectl(t, "delete", "agentrun", "-n", ns, "c1", "--wait=false")
	e.waitPhase(t, ns, "c3", v1alpha1.PhaseSucceeded, 60*time.Second)

	// Deleting the parent removes its children and every workload.
	e.kubectl(t, "delete", "agentrun", "-n", ns, "parent")
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		runs, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(runs.Items) == 0, nil
	})
	require.NoError(t, err, "children of a deleted parent remain")
	for _, n := range []string{"parent", "c1", "c2", "c3"} {
		e.waitNoChildren(t, ns, n, 60*time.Second)
	}
}

func TestRunDeletedMidFlight(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "gone", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 10m\n  cleanup: keep\n"))
	e.waitPhase(t, ns, "gone", v1alpha1.PhaseRunning, 60*time.Second)
	e.kubectl(t, "delete", "agentrun", "-n", ns, "gone")
	e.waitNoChildren(t, ns, "gone", 60*time.Second)
}

func TestControllerRestartMidRun(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctl := e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "survivor", "inst", map[string]string{"SIM_DURATION": "6s", "SIM_MESSAGE": successReport}, "  cleanup: keep\n"))
	r := e.waitPhase(t, ns, "survivor", v1alpha1.PhaseRunning, 60*time.Second)
	job, err := e.kube.BatchV1().Jobs(ns).Get(context.Background(), "survivor", metav1.GetOptions{})
	require.NoError(t, err)
	ctl.kill() // returns once the process has exited
	ctl = e.startController(t, ns)
	r = e.waitPhase(t, ns, "survivor", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	jobs, err := e.kube.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, jobs.Items, 1, "exactly one Job")
	assert.Equal(t, job.UID, jobs.Items[0].UID, "the Job was not recreated")

	// A run created while the controller is down starts when it is back,
	// with one Job.
	ctl.kill()
	e.apply(t, runYAML(ns, "late", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  cleanup: keep\n"))
	// No sleep: kill waited for the process to exit, and no other
	// controller watches this namespace, so nothing can have touched it.
	assert.Empty(t, e.getRun(t, ns, "late").Status.Phase)
	e.startController(t, ns)
	e.waitPhase(t, ns, "late", v1alpha1.PhaseSucceeded, 60*time.Second)
	_, err = e.kube.BatchV1().Jobs(ns).Get(context.Background(), "late", metav1.GetOptions{})
	assert.NoError(t, err)
}
