package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

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
	// Its admission and that it serves are Events.
	assert.ElementsMatch(t, []string{v1alpha1.ReasonJobCreated, v1alpha1.ReasonStarted}, e.runEvents(t, ns, "srv", 2))

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
	e.waitNoChildren(t, ns, "sbx-ok", 60*time.Second)
}
