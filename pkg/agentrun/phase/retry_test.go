package phase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// budget gives a cached Job the backoffLimit (retry budget) and failure
// count of a Job built with workload.PodFailurePolicy.
func budget(limit, failed int32) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		j.Spec.BackoffLimit = new(limit)
		j.Status.Failed = failed
	}
}

// preempted is a pod the kubelet stopped for the infrastructure: the
// DisruptionTarget condition, the agent killed (137), the pod Failed.
func preempted() podOpt {
	return func(p *corev1.Pod) {
		agentExited(137, "")(p)
		podCond(corev1.DisruptionTarget, corev1.ConditionTrue, "PreemptionByScheduler", "preempted")(p)
	}
}

// uncountedFailed is a Job that has seen failed pods and not yet added
// them to status.failed (it does so after removing their finalizers).
func uncountedFailed(uids ...types.UID) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		j.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Failed: uids}
	}
}

func withAttempts(n int32) runOpt { return func(r *v1alpha1.AgentRun) { r.Status.Attempts = n } }

func replacement(opts ...podOpt) *corev1.Pod {
	p := newPod(opts...)
	p.Name, p.UID, p.CreationTimestamp = "run-pod-2", "pod-uid-2", metav1.NewTime(t0.Add(40*time.Second))
	return p
}

// TestRetryInfrastructure is the retry table (item 3 of issue 14): what
// the infrastructure broke waits for the Job's replacement within the
// run's deadline; what the agent decided ends the run at once.
func TestRetryInfrastructure(t *testing.T) {
	cases := map[string]struct {
		in      Observed
		phase   v1alpha1.AgentRunPhase
		reason  string // Failed reason; "" for a live run
		attempt int32
		podName string
		events  []string
		errHas  string
	}{
		"preempted pod with budget left: the run waits for the Job's replacement": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: newPod(preempted())},
			phase: v1alpha1.PhaseRunning, attempt: 1, podName: "run-pod",
		},
		"evicted pod (status reason only) with budget left: waits": {
			in: Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 1))},
				Pod: newPod(agentExited(137, ""), func(p *corev1.Pod) { p.Status.Reason = "Evicted" })},
			phase: v1alpha1.PhaseRunning, attempt: 2, podName: "run-pod", events: []string{v1alpha1.ReasonRetrying},
		},
		"disrupted pod already gone, the Job counted it: waits": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 1))}},
			phase: v1alpha1.PhaseRunning, attempt: 2, podName: "run-pod", events: []string{v1alpha1.ReasonRetrying},
		},
		"the replacement runs: attempt 2 recorded with its pod": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 1))}, Pod: replacement(agentRunning(t0.Add(45 * time.Second)))},
			phase: v1alpha1.PhaseRunning, attempt: 2, podName: "run-pod-2", events: []string{v1alpha1.ReasonRetrying},
		},
		"the replacement succeeds: Succeeded after 2 attempts": {
			in:    Observed{Run: newRun(running(), withAttempts(2)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 1))}, Pod: replacement(agentExited(0, reportJSON))},
			phase: v1alpha1.PhaseSucceeded, attempt: 2, podName: "run-pod-2", events: []string{v1alpha1.ReasonSucceeded},
		},
		"the agent's own non-zero exit is never retried": {
			in:    Observed{Run: newRun(running()), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: newPod(agentExited(3, ""))},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonAgentFailed, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonAgentFailed},
		},
		"the pod is gone before the Job counted it, budget left: the Job decides, the run waits": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}},
			phase: v1alpha1.PhaseRunning, attempt: 1, podName: "run-pod",
		},
		"the pod is gone, the Job recorded it as an uncounted failure: waits, attempt 2": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0), uncountedFailed("pod-uid"))}},
			phase: v1alpha1.PhaseRunning, attempt: 2, podName: "run-pod", events: []string{v1alpha1.ReasonRetrying},
		},
		"the pod is gone and the Job failed it (podFailurePolicy): PodLost": {
			in: Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 1),
				jobCond("Failed", batchv1.JobReasonPodFailurePolicy))}},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonPodLost, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonPodLost},
			errHas: "failed without an agent result",
		},
		"the pod is gone with no budget: PodLost at once": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(0, 0))}},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonPodLost, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonPodLost},
			errHas: "disappeared",
		},
		"the pod is gone and the Job never decides: Timeout that says so": {
			in: Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))},
				Now: t0.Add(11 * time.Minute)},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonTimeout, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonTimeout},
			errHas: "pod run-pod disappeared and Job run neither replaced it nor failed",
		},
		"a replacement shows before the Job's count: attempt 2 all the same": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: replacement(agentRunning(t0.Add(45 * time.Second)))},
			phase: v1alpha1.PhaseRunning, attempt: 2, podName: "run-pod-2", events: []string{v1alpha1.ReasonRetrying},
		},
		"the replacement succeeds before the Job's count shows: Succeeded after 2 attempts": {
			in:    Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: replacement(agentExited(0, reportJSON))},
			phase: v1alpha1.PhaseSucceeded, attempt: 2, podName: "run-pod-2", events: []string{v1alpha1.ReasonSucceeded},
		},
		"attempt 2 counted while the pod was gone, then its replacement: still attempt 2, the run names it": {
			in: Observed{Run: newRun(running(), withAttempts(2)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 1))},
				Pod: replacement(agentRunning(t0.Add(45 * time.Second)))},
			phase: v1alpha1.PhaseRunning, attempt: 2, podName: "run-pod-2",
		},
		"no budget (retry.infrastructure: 0): preemption fails the run": {
			in:    Observed{Run: newRun(running()), Objects: Objects{KindJob: jobFor(newRun(), budget(0, 0))}, Pod: newPod(preempted())},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonPodLost, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonPodLost},
			errHas: "PreemptionByScheduler",
		},
		"budget spent: the Job failed, PodLost after 3 attempts": {
			in: Observed{Run: newRun(running(), withAttempts(3)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 3), jobCond("Failed", batchv1.JobReasonBackoffLimitExceeded))},
				Pod: newPod(preempted())},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonPodLost, attempt: 3, podName: "run-pod", events: []string{v1alpha1.ReasonPodLost},
			errHas: "gave up after 3 attempts",
		},
		"preempted again with the budget spent, before the Job says so: PodLost": {
			in: Observed{Run: newRun(running(), withAttempts(2)), Objects: Objects{KindJob: jobFor(newRun(), budget(1, 2))},
				Pod: replacement(preempted())},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonPodLost, attempt: 2, podName: "run-pod-2", events: []string{v1alpha1.ReasonPodLost},
			errHas: "gave up after 2 attempts",
		},
		"a retry never outlives the run's deadline: Timeout": {
			in: Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: newPod(preempted()),
				Now: t0.Add(11 * time.Minute)},
			phase: v1alpha1.PhaseFailed, reason: v1alpha1.ReasonTimeout, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonTimeout},
			errHas: "replacing a pod",
		},
		"the agent exited 0 before the disruption took effect: Succeeded with its report": {
			in: Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0), jobCond("Complete", ""))},
				Pod: newPod(agentExited(0, reportJSON), podCond(corev1.DisruptionTarget, corev1.ConditionTrue, "PreemptionByScheduler", "preempted"))},
			phase: v1alpha1.PhaseSucceeded, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonSucceeded},
		},
		"the agent exited 0 on a disrupted pod, the Job not done yet: Succeeded, no wait": {
			in: Observed{Run: newRun(running(), withAttempts(1)), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))},
				Pod: newPod(agentExited(0, reportJSON), podCond(corev1.DisruptionTarget, corev1.ConditionTrue, "EvictionByEvictionAPI", "evicted"))},
			phase: v1alpha1.PhaseSucceeded, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonSucceeded},
		},
		"a plain start records attempt 1 with the transition, no write of its own": {
			in:    Observed{Run: newRun(admitted()), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: newPod(agentRunning(t0.Add(5 * time.Second)))},
			phase: v1alpha1.PhaseRunning, attempt: 1, podName: "run-pod", events: []string{v1alpha1.ReasonStarted},
		},
		"a pending run records nothing": {
			in:    Observed{Run: newRun(admitted()), Objects: Objects{KindJob: jobFor(newRun(), budget(2, 0))}, Pod: newPod()},
			phase: v1alpha1.PhasePending,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := tc.in
			in.Instance = newInstance()
			if in.Now.IsZero() {
				in.Now = now
			}
			in.Config = testConfig
			before := in.Run.DeepCopy()
			d := Next(in)
			assert.Equal(t, before, in.Run, "Next mutated its input")
			assert.Equal(t, tc.phase, d.Status.Phase)
			assert.Equal(t, tc.reason, failedReason(&d.Status))
			assert.Equal(t, tc.attempt, d.Status.Attempts, "attempts")
			assert.Equal(t, tc.podName, d.Status.PodName, "podName")
			var reasons []string
			for _, e := range d.Events {
				reasons = append(reasons, e.Reason)
				assert.Contains(t, v1alpha1.Reasons, e.Reason)
			}
			assert.Equal(t, tc.events, reasons, "events")
			assert.Contains(t, d.Status.Error, tc.errHas)
			if !d.Status.Phase.IsTerminal() {
				assert.Positive(t, d.RequeueAfter, "a live run is woken at its deadline")
				assert.False(t, acts(d, Delete, KindJob), "a live run keeps its Job")
			}
			assertIdempotent(t, in, d)
		})
	}
}

// TestRetryIsTheJobs: only a task-mode run's Job replaces a pod the
// infrastructure broke. A server's Deployment replaces its pod by itself
// (not counted, the run keeps serving); an agent-sandbox run is not retried
// (its Sandbox holds one pod): PodLost, whatever the instance's default.
func TestRetryIsTheJobs(t *testing.T) {
	withRetry := func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Agents.Default.Retry = &v1alpha1.RetryPolicy{Infrastructure: new(int32(3))}
	}
	for _, k := range kits {
		t.Run(string(k.backend), func(t *testing.T) {
			in := Observed{Run: k.run(k.started), Instance: newInstance(withRetry), Now: now, Config: testConfig}
			k.workload(&in, newPod(preempted()))
			if job, ok := in.Objects[KindJob]; ok {
				budget(3, 0)(job.(*batchv1.Job))
			}
			d := Next(in)
			switch k.backend {
			case BackendTask:
				assert.Equal(t, v1alpha1.PhaseRunning, d.Status.Phase, "the Job replaces the pod")
			case BackendServer:
				assert.False(t, d.Status.Phase.IsTerminal(), "the Deployment replaces the pod: %s", d.Status.Error)
			default:
				assert.Equal(t, v1alpha1.ReasonPodLost, failedReason(&d.Status), "an agent sandbox is not retried")
			}
			assertIdempotent(t, in, d)
		})
	}
}
