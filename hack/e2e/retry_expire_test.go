package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// preempt does to the run's live agent pod what the kubelet does to a pod
// it preempts or evicts for node pressure: the DisruptionTarget condition,
// the agent killed with 137, the pod Failed. (kwok runs no kubelet; the
// Job controller and this controller see exactly what a real node shows.)
// It returns the pod's name.
func (e *env) preempt(t *testing.T, ns, run string) string {
	t.Helper()
	return e.onLiveAgentPod(t, ns, run, "preempt", func(ctx context.Context, p *corev1.Pod) error {
		now := metav1.Now()
		p.Status.Phase = corev1.PodFailed
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "PreemptionByScheduler", Message: "preempted by e2e", LastTransitionTime: now})
		terminateContainers(p, now, 137, "Error", "")
		_, err := e.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

// terminateContainers ends every container of p as the kubelet reports
// it: terminated at now with exit code and reason, not ready; the agent
// container with agentMessage as its termination message.
func terminateContainers(p *corev1.Pod, now metav1.Time, exit int32, reason, agentMessage string) {
	for j := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[j]
		started := now
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		term := &corev1.ContainerStateTerminated{ExitCode: exit, Reason: reason, StartedAt: started, FinishedAt: now}
		if cs.Name == v1alpha1.AgentContainerName {
			term.Message = agentMessage
		}
		cs.State = corev1.ContainerState{Terminated: term}
		cs.Ready = false
	}
}

// onLiveAgentPod waits for a running, undeleted pod of the run on which act
// succeeds (to verb it), and returns that pod's name. The bound is the
// runs' own timeout in the tests that disrupt pods (3 minutes), not a guess
// at how soon a pod runs: the chaos test starts waiting when it starts
// creating its runs, and on a loaded machine, with the controller killed
// and restarted, the last run's pod ran after more than 30 s.
func (e *env) onLiveAgentPod(t *testing.T, ns, run, verb string, act func(context.Context, *corev1.Pod) error) string {
	t.Helper()
	return e.onLivePodBut(t, ns, run, verb, "", 3*time.Minute, act)
}

// onLivePodBut is onLiveAgentPod that passes over the pod named skip and
// waits up to timeout.
func (e *env) onLivePodBut(t *testing.T, ns, run, verb, skip string, timeout time.Duration, act func(context.Context, *corev1.Pod) error) string {
	t.Helper()
	var name string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=" + run})
		if err != nil {
			return false, nil
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Name == skip || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
				continue
			}
			if err := act(ctx, p); err != nil {
				return false, nil
			}
			name = p.Name
			return true, nil
		}
		return false, nil
	})
	require.NoError(t, err, "no running pod of run %s to %s", run, verb)
	return name
}

func (e *env) runPods(t *testing.T, ns, run string) []corev1.Pod {
	t.Helper()
	pods, err := e.kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=" + run})
	require.NoError(t, err)
	return pods.Items
}

// TestInfrastructureRetry: the infrastructure's breakage is retried by the
// Job within the run's deadline, the agent's own decision never.
func TestInfrastructureRetry(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", "  agents:\n    default:\n      retry: {infrastructure: 3}\n"))
	e.apply(t, runYAML(ns, "preempted", "inst", map[string]string{"SIM_DURATION": "15s"}, "  timeout: 3m\n  cleanup: keep\n"))
	e.apply(t, runYAML(ns, "exits", "inst", map[string]string{"SIM_EXIT_CODE": "3", "SIM_DURATION": "1s"}, "  timeout: 3m\n  cleanup: keep\n"))
	e.apply(t, runYAML(ns, "noretry", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 3m\n  retry: {infrastructure: 0}\n"))
	e.apply(t, runYAML(ns, "spent", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 3m\n  retry: {infrastructure: 1}\n"))

	for _, r := range []string{"preempted", "noretry", "spent"} {
		e.waitPhase(t, ns, r, v1alpha1.PhaseRunning, 60*time.Second)
	}
	first := e.preempt(t, ns, "preempted")
	e.preempt(t, ns, "noretry")
	e.preempt(t, ns, "spent")

	// No budget: the preemption ends the run at once.
	r := e.waitPhase(t, ns, "noretry", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonPodLost, failedReason(r))
	assert.Contains(t, r.Status.Error, "PreemptionByScheduler")
	assert.Equal(t, int32(1), r.Status.Attempts)

	// With a budget the Job replaces the pod (after its 10s backoff) and
	// the run, still Running, finishes on the second pod.
	r = e.waitRun(t, ns, "preempted", 60*time.Second, "attempt 2", func(r *v1alpha1.AgentRun) bool { return r.Status.Attempts == 2 })
	assert.Equal(t, v1alpha1.PhaseRunning, r.Status.Phase)
	r = e.waitPhase(t, ns, "preempted", v1alpha1.PhaseSucceeded, 90*time.Second)
	assert.Equal(t, int32(2), r.Status.Attempts)
	assert.NotEqual(t, first, r.Status.PodName, "the run names the pod that finished it")
	assert.Len(t, e.runPods(t, ns, "preempted"), 2, "cleanup: keep: both attempts' pods are there")
	out := e.kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=preempted,reason=Retrying", "-o", "name")
	assert.NotEmpty(t, strings.TrimSpace(out), "a Retrying event")

	// The agent's own exit: one pod, the Job failed by its podFailurePolicy.
	r = e.waitPhase(t, ns, "exits", v1alpha1.PhaseFailed, 60*time.Second)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r))
	assert.Equal(t, int32(1), r.Status.Attempts)
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		job, err := e.kube.BatchV1().Jobs(ns).Get(ctx, "exits", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range job.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				if c.Reason != batchv1.JobReasonPodFailurePolicy {
					return false, fmt.Errorf("job failed with %s", c.Reason)
				}
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "the agent's exit fails the Job through its podFailurePolicy")
	assert.Len(t, e.runPods(t, ns, "exits"), 1, "never retried")

	// Budget 1: the replacement is preempted too, and the run gives up.
	e.waitRun(t, ns, "spent", 60*time.Second, "attempt 2", func(r *v1alpha1.AgentRun) bool { return r.Status.Attempts == 2 })
	e.preempt(t, ns, "spent")
	r = e.waitPhase(t, ns, "spent", v1alpha1.PhaseFailed, 60*time.Second)
	assert.Equal(t, v1alpha1.ReasonPodLost, failedReason(r))
	assert.Contains(t, r.Status.Error, "gave up after 2 attempts", "whether the Job or the pod told first")
	assert.Equal(t, int32(2), r.Status.Attempts)
	for _, n := range []string{"noretry", "spent"} {
		e.waitNoChildren(t, ns, n, 60*time.Second)
	}
	// retry is immutable.
	out, err = e.kubectlErr("patch", "agentrun", "preempted", "-n", ns, "--type=merge", "-p", `{"spec":{"retry":{"infrastructure":5}}}`)
	require.Error(t, err)
	assert.Contains(t, out, "retry is immutable once created")
}

// TestRunTTLAndHistoryLimits: a finished run goes when its TTL runs out
// (not before, and never a live one); per-outcome limits keep the failed
// runs people debug apart from the succeeded ones.
func TestRunTTLAndHistoryLimits(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctl := e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", "  runTTLSecondsAfterFinished: 3600\n"))
	e.apply(t, runYAML(ns, "short", "inst", map[string]string{"SIM_DURATION": "1s"}, "  ttlSecondsAfterFinished: 6\n"))
	e.apply(t, runYAML(ns, "long", "inst", map[string]string{"SIM_DURATION": "1s"}, ""))
	e.apply(t, runYAML(ns, "live", "inst", map[string]string{"SIM_DURATION": "1h"}, "  ttlSecondsAfterFinished: 0\n"))

	short := e.waitPhase(t, ns, "short", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitPhase(t, ns, "long", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitPhase(t, ns, "live", v1alpha1.PhaseRunning, 60*time.Second)
	// The timer lives in memory only: a controller SIGKILLed while the TTL
	// runs finds it again from completedAt.
	ctl.kill() // returns once the process has exited: nothing to wait for
	e.startController(t, ns)
	var goneAt time.Time
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, "short", metav1.GetOptions{})
		goneAt = time.Now()
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the run with a 6s TTL is deleted")
	expiry := short.Status.CompletedAt.Add(6 * time.Second)
	assert.False(t, goneAt.Before(expiry.Add(-time.Second)), "deleted at %s, before its TTL ran out at %s", goneAt, expiry)
	// A product promise, not a wait: the bound stays tight on a loaded machine.
	assert.WithinDuration(t, expiry, goneAt, 5*time.Second, "deleted when its TTL ran out (a timer, not a poll)")
	e.getRun(t, ns, "long")
	assert.Equal(t, v1alpha1.PhaseRunning, e.getRun(t, ns, "live").Status.Phase, "a TTL never touches a live run")

	// Separate limits: keep 1 succeeded and 2 failed.
	e.kubectl(t, "patch", "sympoziuminstance", "inst", "-n", ns, "--type=merge", "-p",
		`{"spec":{"successfulRunsHistoryLimit":1,"failedRunsHistoryLimit":2}}`)
	for i := range 3 {
		e.apply(t, runYAML(ns, fmt.Sprintf("ok-%d", i), "inst", map[string]string{"SIM_DURATION": "1s"}, ""))
		e.apply(t, runYAML(ns, fmt.Sprintf("bad-%d", i), "inst", map[string]string{"SIM_DURATION": "1s", "SIM_EXIT_CODE": "2"}, ""))
	}
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		runs, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		var ok, bad, live int
		for _, r := range runs.Items {
			switch r.Status.Phase {
			case v1alpha1.PhaseSucceeded:
				ok++
			case v1alpha1.PhaseFailed:
				bad++
			default:
				live++
			}
		}
		return ok == 1 && bad == 2 && live == 1 && len(runs.Items) == 4, nil
	})
	require.NoError(t, err, "1 succeeded, 2 failed and the live run remain")
	assert.Equal(t, v1alpha1.PhaseRunning, e.getRun(t, ns, "live").Status.Phase)
}

// TestInvalidInstancesRejected extends the rejection catalogue to the
// instance's history and retry fields.
func TestInvalidInstancesRejected(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	for _, tc := range []struct{ spec, want string }{
		{"  runTTLSecondsAfterFinished: -1\n", `spec.runTTLSecondsAfterFinished: Invalid value: -1: runTTLSecondsAfterFinished must be 0 or more`},
		{"  successfulRunsHistoryLimit: -1\n", `spec.successfulRunsHistoryLimit: Invalid value: -1: successfulRunsHistoryLimit must be 0 or more`},
		{"  failedRunsHistoryLimit: -2\n", `spec.failedRunsHistoryLimit: Invalid value: -2: failedRunsHistoryLimit must be 0 or more`},
		{"  agents:\n    default:\n      retry: {infrastructure: 11}\n", `spec.agents.default.retry.infrastructure: Invalid value: 11: infrastructure must be between 0 and 10`},
	} {
		out, err := e.kubectlInput(instanceYAML(ns, "bad", tc.spec), "create", "-f", "-")
		require.Error(t, err, tc.spec)
		assert.Contains(t, out, tc.want)
	}
}
