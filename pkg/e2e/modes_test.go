package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var (
	sandboxesGVR = schema.GroupVersionResource{Group: "agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxes"}
	claimsGVR    = schema.GroupVersionResource{Group: "extensions.agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxclaims"}
)

func init() {
	// The agent-sandbox informers, like the others (see rbac_test.go),
	// stream their initial state with a watch; list is their fallback.
	for _, r := range []string{"agents.x-k8s.io/sandboxes", "extensions.agents.x-k8s.io/sandboxclaims"} {
		unusedOK["list "+r] = "informers list only when the API server cannot stream a watch list"
	}
}

// deletionRecorder watches a run until it is deleted and keeps the last
// state it was seen in before it went.
type deletionRecorder struct {
	done chan struct{}
	last *v1alpha1.AgentRun
	// held is the first state seen with a deletionTimestamp.
	held *v1alpha1.AgentRun
}

func (e *env) recordDeletion(t *testing.T, ns, name string) *deletionRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	require.NoError(t, err)
	d := &deletionRecorder{done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for ev := range w.ResultChan() {
			r, ok := ev.Object.(*v1alpha1.AgentRun)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				return
			}
			d.last = r
			if r.DeletionTimestamp != nil && d.held == nil {
				d.held = r
			}
		}
	}()
	return d
}

// wait returns the last state of the run before it was deleted.
func (d *deletionRecorder) wait(t *testing.T, timeout time.Duration) *v1alpha1.AgentRun {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("the run was not deleted within %s; last seen: %+v", timeout, d.last)
	}
	return d.last
}

// waitServerGone waits until a run's Deployment, Service and pods are gone.
func (e *env) waitServerGone(t *testing.T, ns, run string, timeout time.Duration) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=" + run}
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		deps, err := e.kube.AppsV1().Deployments(ns).List(ctx, sel)
		if err != nil {
			return false, nil
		}
		svcs, err := e.kube.CoreV1().Services(ns).List(ctx, sel)
		if err != nil {
			return false, nil
		}
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			return false, nil
		}
		return len(deps.Items)+len(svcs.Items)+len(pods.Items) == 0, nil
	})
	require.NoError(t, err, "the Deployment, Service or pods of %s/%s are still there", ns, run)
}

func (e *env) deployment(t *testing.T, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := e.kube.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return d
}

func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, v := range c.Env {
		m[v.Name] = v.Value
	}
	return m
}

func TestServerMode(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	phases := e.recordPhases(t, ns, "srv")
	// SIM_DURATION keeps kwok's simulated agent running: a server does not
	// exit.
	e.apply(t, runYAML(ns, "srv", "inst", map[string]string{"SIM_DURATION": "1h"}, "  mode: server\n  timeout: 2m\n"))

	// Serving once the deployment controller reports the Deployment
	// available (kwok makes its pod Ready).
	e.kubectl(t, "wait", "-n", ns, "--for=condition=Serving", "--timeout=60s", "agentrun/srv")
	r := e.getRun(t, ns, "srv")
	assert.Equal(t, v1alpha1.PhaseServing, r.Status.Phase)
	assert.Equal(t, "srv-server", r.Status.DeploymentName)
	assert.Equal(t, "srv-server", r.Status.ServiceName)
	assert.Empty(t, r.Status.JobName)
	assert.NotNil(t, r.Status.StartedAt)
	assert.Nil(t, r.Status.CompletedAt)
	assert.Contains(t, r.Finalizers, v1alpha1.FinalizerServer)
	assert.Equal(t, []v1alpha1.AgentRunPhase{"", v1alpha1.PhasePending, v1alpha1.PhaseServing}, phases.get())
	dep := e.deployment(t, ns, "srv-server")
	require.NotNil(t, metav1.GetControllerOf(dep))
	assert.Equal(t, r.UID, metav1.GetControllerOf(dep).UID)
	assert.Equal(t, corev1.RestartPolicyAlways, dep.Spec.Template.Spec.RestartPolicy)
	assert.Equal(t, "check the cluster", envMap(dep.Spec.Template.Spec.Containers[0])["TASK"])
	svc, err := e.kube.CoreV1().Services(ns).Get(context.Background(), "srv-server", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, r.UID, metav1.GetControllerOf(svc).UID)
	require.Len(t, svc.Spec.Ports, 1)
	assert.Equal(t, "http", svc.Spec.Ports[0].Name)
	assert.EqualValues(t, 8080, svc.Spec.Ports[0].Port)
	assert.Equal(t, "srv", svc.Spec.Selector[v1alpha1.LabelAgentRun])
	out := e.kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=srv,involvedObject.kind=AgentRun", "-o", "jsonpath={.items[*].reason}")
	assert.Contains(t, out, v1alpha1.ReasonJobCreated)
	assert.Contains(t, out, v1alpha1.ReasonStarted)

	// A serving run has no deadline: its spec may change, which rolls the
	// Deployment; mounting a skill pack whose sidecar requires a server
	// (as web-endpoint's web proxy does) makes the Deployment run that
	// server alone, never the agent's one-shot task, and its port is the
	// Service's.
	e.apply(t, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata: {name: web, namespace: %s}
spec:
  skills:
  - {name: browse, content: "# Browse"}
  sidecar:
    image: registry.example/web-tool:test
    requiresServer: true
    ports: [{name: web, containerPort: 3000}]
`, ns))
	e.kubectl(t, "patch", "agentrun", "srv", "-n", ns, "--type", "merge",
		"-p", `{"spec":{"task":"answer questions","skills":[{"skillPackRef":"web"}]}}`)
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := e.kube.AppsV1().Deployments(ns).Get(ctx, "srv-server", metav1.GetOptions{})
		if err != nil || len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Name != "web-proxy" ||
			envMap(d.Spec.Template.Spec.Containers[0])["INSTANCE_NAME"] == "" {
			return false, nil
		}
		s, err := e.kube.CoreV1().Services(ns).Get(ctx, "srv-server", metav1.GetOptions{})
		if err != nil || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != 3000 {
			return false, nil
		}
		return d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == 1 && d.Status.AvailableReplicas >= 1, nil
	})
	require.NoError(t, err, "the Deployment was not rolled to the new spec")
	r = e.waitRun(t, ns, "srv", 30*time.Second, "Serving at generation 2", func(r *v1alpha1.AgentRun) bool {
		c := condition(r, v1alpha1.ConditionServing)
		return r.Status.ObservedGeneration == 2 && c != nil && c.Status == metav1.ConditionTrue
	})
	assert.Equal(t, v1alpha1.PhaseServing, r.Status.Phase)

	// Deleting the run: Succeeded is recorded while the finalizer holds it,
	// then the Deployment and Service go, then the run.
	deletion := e.recordDeletion(t, ns, "srv")
	e.kubectl(t, "delete", "agentrun", "srv", "-n", ns, "--wait=false")
	last := deletion.wait(t, 60*time.Second)
	require.NotNil(t, deletion.held, "never seen held by the finalizer")
	assert.Equal(t, v1alpha1.PhaseSucceeded, last.Status.Phase, "the last state before the run went")
	assert.NotNil(t, last.Status.CompletedAt)
	c := condition(last, v1alpha1.ConditionComplete)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	succeededHeld := false
	for _, r := range []*v1alpha1.AgentRun{deletion.held, last} {
		if r.Status.Phase == v1alpha1.PhaseSucceeded && r.DeletionTimestamp != nil && len(r.Finalizers) > 0 {
			succeededHeld = true
		}
	}
	assert.True(t, succeededHeld, "Succeeded must be written while the finalizer still holds the run")
	e.waitServerGone(t, ns, "srv", 60*time.Second)
}

func TestServerNeverReady(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "stuck", "inst", map[string]string{"SIM_DURATION": "1h"},
		"  mode: server\n  timeout: 6s\n  model: {provider: openai, model: gpt-4o, nodeSelector: {no-such: node}}\n"))

	r := e.waitPhase(t, ns, "stuck", v1alpha1.PhaseFailed, 40*time.Second)
	assert.Equal(t, v1alpha1.ReasonServerNotReady, failedReason(r))
	assert.Contains(t, r.Status.Error, "Unschedulable")
	assert.Contains(t, r.Status.Error, "stuck-server")
	require.NotNil(t, r.Status.CompletedAt)
	assert.WithinDuration(t, r.CreationTimestamp.Add(6*time.Second), r.Status.CompletedAt.Time, 3*time.Second)
	assert.Nil(t, r.Status.StartedAt)
	// The server is removed and the finalizer released: nothing holds the
	// finished run.
	e.waitServerGone(t, ns, "stuck", 60*time.Second)
	e.waitRun(t, ns, "stuck", 10*time.Second, "no finalizer", func(r *v1alpha1.AgentRun) bool { return len(r.Finalizers) == 0 })
	e.kubectl(t, "delete", "agentrun", "stuck", "-n", ns, "--timeout=20s")
}

// TestContainerSandbox: the sandbox sidecar runs beside the agent and never
// holds the run open, whatever the agent's outcome (see also
// TestTaskRunSidecarDoesNotHoldTheRun).
func TestContainerSandbox(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns, "--sandbox-image", "registry.example/sympozium/sandbox:test")
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "sbx-fail", "inst", map[string]string{"SIM_EXIT_CODE": "3", "SIM_DURATION": "2s"},
		"  cleanup: keep\n  sandbox: {enabled: true, resources: {limits: {memory: 256Mi}}}\n"))
	e.apply(t, runYAML(ns, "sbx-ok", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  sandbox: {enabled: true}\n"))

	r := e.waitPhase(t, ns, "sbx-fail", v1alpha1.PhaseFailed, 60*time.Second)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r))
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 3, *r.Status.ExitCode)
	pod := e.agentPod(t, ns, "sbx-fail")
	var sidecar *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "sandbox" {
			sidecar = &pod.Spec.Containers[i]
		}
	}
	require.NotNil(t, sidecar, "no sandbox container: %+v", pod.Spec.Containers)
	assert.Equal(t, "registry.example/sympozium/sandbox:test", sidecar.Image)
	assert.Equal(t, "256Mi", sidecar.Resources.Limits.Memory().String())
	assert.False(t, *sidecar.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, sidecar.SecurityContext.Capabilities.Drop)
	var sidecarRunning bool
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == "sandbox" && s.State.Running != nil {
			sidecarRunning = true
		}
	}
	assert.True(t, sidecarRunning, "the sidecar should still run: %+v", pod.Status.ContainerStatuses)

	// cleanup: delete stops the sidecar by deleting the Job.
	r = e.waitPhase(t, ns, "sbx-ok", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	e.waitNoChildren(t, ns, "sbx-ok", 30*time.Second)
}

// installSandboxCRDs installs the test CRDs of the agent-sandbox API and
// waits until discovery serves them; they are removed after the test.
func (e *env) installSandboxCRDs(t *testing.T) {
	t.Helper()
	file := filepath.Join(e.root, "pkg", "e2e", "testdata", "agent-sandbox-crds.yaml")
	e.kubectl(t, "apply", "--server-side", "-f", file)
	t.Cleanup(func() { _, _ = e.kubectlErr("delete", "--ignore-not-found", "--wait=false", "-f", file) })
	e.kubectl(t, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/sandboxes.agents.x-k8s.io", "crd/sandboxclaims.extensions.agents.x-k8s.io")
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, gvr := range []schema.GroupVersionResource{sandboxesGVR, claimsGVR} {
			if _, err := e.kube.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String()); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(t, err, "discovery does not serve the agent-sandbox API")
}

func TestAgentSandbox(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	// Started before the agent-sandbox API exists in the cluster.
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))

	// Not installed: runs that ask for it fail at once; others are not
	// affected.
	e.apply(t, runYAML(ns, "early", "inst", nil, "  agentSandbox: {enabled: true}\n"))
	e.apply(t, runYAML(ns, "early-claim", "inst", nil, "  agentSandbox: {enabled: true, warmPoolRef: pool}\n"))
	e.apply(t, runYAML(ns, "plain", "inst", map[string]string{"SIM_MESSAGE": successReport}, ""))
	for _, name := range []string{"early", "early-claim"} {
		r := e.waitPhase(t, ns, name, v1alpha1.PhaseFailed, 30*time.Second)
		assert.Equal(t, v1alpha1.ReasonSandboxUnavailable, failedReason(r), name)
		assert.Contains(t, r.Status.Error, "agents.x-k8s.io", name)
		assert.Less(t, r.Status.CompletedAt.Sub(r.CreationTimestamp.Time), 10*time.Second, name)
	}
	e.waitPhase(t, ns, "plain", v1alpha1.PhaseSucceeded, 60*time.Second)

	// Installed later: picked up without restarting the controller.
	e.installSandboxCRDs(t)
	dyn, err := dynamic.NewForConfig(e.cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	standIn := &sandboxStandIn{dyn: dyn, kube: e.kube, ns: ns, bare: "bare-pool"}
	go standIn.run(ctx)

	e.apply(t, runYAML(ns, "sb-ok", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "2s"},
		"  agentSandbox: {enabled: true, resources: {limits: {memory: 512Mi}}}\n"))
	e.apply(t, runYAML(ns, "sb-fail", "inst", map[string]string{"SIM_EXIT_CODE": "3",
		"SIM_MESSAGE": `{"status":"error","error":"model refused the task"}`}, "  agentSandbox: {enabled: true}\n"))
	e.apply(t, runYAML(ns, "sb-slow", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 15s\n  cleanup: keep\n  agentSandbox: {enabled: true}\n"))
	e.apply(t, runYAML(ns, "sb-claim", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  agentSandbox: {enabled: true, warmPoolRef: pool}\n"))
	e.apply(t, runYAML(ns, "sb-bare", "inst", map[string]string{"SIM_EXIT_CODE": "4"}, "  agentSandbox: {enabled: true, warmPoolRef: bare-pool}\n"))

	// Success: the Sandbox carried the Job's pod template; its pod, named
	// like it, decided.
	r := e.waitPhase(t, ns, "sb-ok", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	assert.Equal(t, "sb-ok", r.Status.SandboxName)
	assert.Equal(t, "sb-ok", r.Status.PodName)
	assert.Empty(t, r.Status.JobName)
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 0, *r.Status.ExitCode)
	assert.NotNil(t, r.Status.StartedAt)
	assert.EqualValues(t, 2300, r.Status.TokenUsage.TotalTokens)
	// cleanup: delete removes the Sandbox.
	e.waitGone(t, dyn.Resource(sandboxesGVR).Namespace(ns), "sb-ok", 30*time.Second)

	r = e.waitPhase(t, ns, "sb-fail", v1alpha1.PhaseFailed, 60*time.Second)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r))
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 3, *r.Status.ExitCode)
	assert.Contains(t, r.Status.Error, "model refused the task")

	// Timeout: the Sandbox goes even with cleanup: keep.
	e.waitPhase(t, ns, "sb-slow", v1alpha1.PhaseRunning, 15*time.Second)
	r = e.waitPhase(t, ns, "sb-slow", v1alpha1.PhaseFailed, 40*time.Second)
	assert.Equal(t, v1alpha1.ReasonTimeout, failedReason(r))
	assert.Contains(t, r.Status.Error, "still running")
	assert.WithinDuration(t, r.CreationTimestamp.Add(15*time.Second), r.Status.CompletedAt.Time, 3*time.Second)
	e.waitGone(t, dyn.Resource(sandboxesGVR).Namespace(ns), "sb-slow", 30*time.Second)

	// Warm pool: the claim's bound Sandbox is tracked; the run's task
	// reached the pool's pod through the claim's env.
	r = e.waitPhase(t, ns, "sb-claim", v1alpha1.PhaseSucceeded, 60*time.Second)
	assert.Equal(t, "sb-claim", r.Status.SandboxClaimName)
	assert.True(t, strings.HasPrefix(r.Status.SandboxName, "pool-"), "bound sandbox %q", r.Status.SandboxName)
	assert.Equal(t, r.Status.SandboxName, r.Status.PodName)
	assert.Equal(t, "the cluster is healthy", r.Status.Result)
	e.waitGone(t, dyn.Resource(claimsGVR).Namespace(ns), "sb-claim", 30*time.Second)

	// A pool whose pods do not carry the run's labels: the controller reads
	// the pod once the claim reports it finished.
	r = e.waitPhase(t, ns, "sb-bare", v1alpha1.PhaseFailed, 60*time.Second)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r))
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 4, *r.Status.ExitCode)
	assert.True(t, strings.HasPrefix(r.Status.SandboxName, "bare-pool-"), "bound sandbox %q", r.Status.SandboxName)
	require.NoError(t, standIn.err())
}

// waitGone waits until the named object of a dynamic resource is gone.
func (e *env) waitGone(t *testing.T, rc dynamic.ResourceInterface, name string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := rc.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "%s is still there", name)
}

// sandboxStandIn is a test-only stand-in for the agent-sandbox controller,
// enough for the AgentRun controller's side of the contract: for each
// Sandbox it creates the pod named like it from spec.podTemplate (owned by
// the Sandbox) and mirrors the pod into the Sandbox's Ready and Finished
// conditions; for each SandboxClaim it makes a Sandbox named
// "<pool>-<suffix>" from its pool's template (here a fixed one: container
// "agent" with the claim's env, and the claim's additionalPodMetadata labels
// unless the pool is bare), records it in status.sandbox.name and mirrors
// its conditions. It reconciles by polling.
type sandboxStandIn struct {
	dyn  dynamic.Interface
	kube kubernetes.Interface
	ns   string
	// bare is the pool whose pods do not get the claim's labels.
	bare string

	mu   sync.Mutex
	errs []error
}

func (s *sandboxStandIn) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	return fmt.Errorf("sandbox stand-in: %v", s.errs)
}

func (s *sandboxStandIn) run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && !apierrors.IsAlreadyExists(err) {
			s.mu.Lock()
			if len(s.errs) < 10 {
				s.errs = append(s.errs, err)
			}
			s.mu.Unlock()
		}
	}
}

// reconcile handles every claim and Sandbox once; it returns the first
// error and goes on with the others.
func (s *sandboxStandIn) reconcile(ctx context.Context) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	claims, err := s.dyn.Resource(claimsGVR).Namespace(s.ns).List(ctx, metav1.ListOptions{})
	keep(err)
	if err == nil {
		for i := range claims.Items {
			keep(s.claim(ctx, &claims.Items[i]))
		}
	}
	sandboxes, err := s.dyn.Resource(sandboxesGVR).Namespace(s.ns).List(ctx, metav1.ListOptions{})
	keep(err)
	if err == nil {
		for i := range sandboxes.Items {
			keep(s.sandbox(ctx, &sandboxes.Items[i]))
		}
	}
	return first
}

func controllerRefTo(u *unstructured.Unstructured) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName(), UID: u.GetUID(),
		Controller: new(true), BlockOwnerDeletion: new(true)}
}

func (s *sandboxStandIn) sandbox(ctx context.Context, sb *unstructured.Unstructured) error {
	if sb.GetDeletionTimestamp() != nil {
		return nil
	}
	pod, err := s.kube.CoreV1().Pods(s.ns).Get(ctx, sb.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		spec, _, _ := unstructured.NestedMap(sb.Object, "spec", "podTemplate", "spec")
		labels, _, _ := unstructured.NestedStringMap(sb.Object, "spec", "podTemplate", "metadata", "labels")
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sb.GetName(), Namespace: s.ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{controllerRefTo(sb)}}}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &p.Spec); err != nil {
			return err
		}
		_, err = s.kube.CoreV1().Pods(s.ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	return s.setConditions(ctx, sandboxesGVR, sb, podConditions(pod))
}

// podConditions are the Sandbox conditions the agent-sandbox controller
// derives from its pod.
func podConditions(pod *corev1.Pod) []metav1.Condition {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		reason := "PodSucceeded"
		if pod.Status.Phase == corev1.PodFailed {
			reason = "PodFailed"
		}
		return []metav1.Condition{
			{Type: "Ready", Status: metav1.ConditionFalse, Reason: reason, Message: "the pod finished"},
			{Type: "Finished", Status: metav1.ConditionTrue, Reason: reason, Message: "the pod finished"},
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "DependenciesReady", Message: "the pod is ready"}}
		}
	}
	return []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "DependenciesNotReady", Message: "the pod is not ready"}}
}

// setConditions writes conds into u's status unless it has them already.
func (s *sandboxStandIn) setConditions(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured, conds []metav1.Condition) error {
	have, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	same := len(have) == len(conds)
	for i := 0; same && i < len(conds); i++ {
		m, _ := have[i].(map[string]any)
		same = m["type"] == conds[i].Type && m["status"] == string(conds[i].Status) && m["reason"] == conds[i].Reason
	}
	if same {
		return nil
	}
	var out []any
	now := metav1.Now()
	for _, c := range conds {
		c.LastTransitionTime = now
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return err
		}
		out = append(out, m)
	}
	u = u.DeepCopy()
	if err := unstructured.SetNestedSlice(u.Object, out, "status", "conditions"); err != nil {
		return err
	}
	_, err := s.dyn.Resource(gvr).Namespace(s.ns).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}

func (s *sandboxStandIn) claim(ctx context.Context, c *unstructured.Unstructured) error {
	if c.GetDeletionTimestamp() != nil {
		return nil
	}
	bound, _, _ := unstructured.NestedString(c.Object, "status", "sandbox", "name")
	if bound == "" {
		pool, _, _ := unstructured.NestedString(c.Object, "spec", "warmPoolRef", "name")
		name := pool + "-" + strings.ToLower(string(c.GetUID())[:5])
		var env []any
		items, _, _ := unstructured.NestedSlice(c.Object, "spec", "env")
		for _, it := range items {
			m, _ := it.(map[string]any)
			if cn, _ := m["containerName"].(string); cn == "" || cn == "agent" {
				env = append(env, map[string]any{"name": m["name"], "value": m["value"]})
			}
		}
		labels := map[string]any{}
		if pool != s.bare {
			l, _, _ := unstructured.NestedMap(c.Object, "spec", "additionalPodMetadata", "labels")
			labels = l
		}
		sb := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": sandboxesGVR.GroupVersion().String(), "kind": "Sandbox",
			"metadata": map[string]any{"name": name, "namespace": s.ns},
			"spec": map[string]any{"podTemplate": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{
					"restartPolicy": "Never",
					"containers":    []any{map[string]any{"name": "agent", "image": "registry.example/" + pool + "-agent:test", "env": env}},
				},
			}},
		}}
		sb.SetOwnerReferences([]metav1.OwnerReference{controllerRefTo(c)})
		if _, err := s.dyn.Resource(sandboxesGVR).Namespace(s.ns).Create(ctx, sb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		c = c.DeepCopy()
		if err := unstructured.SetNestedField(c.Object, name, "status", "sandbox", "name"); err != nil {
			return err
		}
		_, err := s.dyn.Resource(claimsGVR).Namespace(s.ns).UpdateStatus(ctx, c, metav1.UpdateOptions{})
		return err
	}
	sb, err := s.dyn.Resource(sandboxesGVR).Namespace(s.ns).Get(ctx, bound, metav1.GetOptions{})
	if err != nil {
		return err
	}
	have, _, _ := unstructured.NestedSlice(sb.Object, "status", "conditions")
	var conds []metav1.Condition
	for _, h := range have {
		var cond metav1.Condition
		if m, ok := h.(map[string]any); ok && runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond) == nil {
			conds = append(conds, cond)
		}
	}
	if len(conds) == 0 {
		return nil
	}
	return s.setConditions(ctx, claimsGVR, c, conds)
}
