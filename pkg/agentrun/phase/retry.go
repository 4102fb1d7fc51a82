package phase

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Retries of a task-mode run whose pod the infrastructure broke. The Job
// does the retrying (workload.PodFailurePolicy: a DisruptionTarget pod is
// counted against backoffLimit and replaced after the Job's backoff, any
// non-zero exit fails the Job); the machine only refrains from failing the
// run while the Job may still replace the pod, and counts the attempts.
// backoffLimit is read from the cached Job (trimJob keeps it), so a run
// follows the budget its Job was built with.

// disrupted reports a pod the infrastructure stopped: evicted, preempted,
// or marked by the DisruptionTarget condition (eviction API, preemption,
// taint manager, pod GC of a lost node). A pod merely deleted is not, and
// neither is one whose agent had already exited 0 by itself: the
// disruption came too late to stop it (the Job counts the pod as
// succeeded), so the agent's report decides.
func disrupted(pod *corev1.Pod) bool {
	if a := agentStatus(pod); a != nil && a.State.Terminated != nil && a.State.Terminated.ExitCode == 0 {
		return false
	}
	if pod.Status.Reason == "Evicted" || pod.Status.Reason == "Preempting" {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// failures is how many failed pods the Job has seen: those it counted in
// status.failed and those it recorded in status.uncountedTerminatedPods on
// the way there. The Job records a failed pod there before it removes the
// pod's tracking finalizer, so a failed pod that is gone from the cache
// is always in one of the two (once the Job's own update has arrived).
func failures(job *batchv1.Job) int32 {
	n := job.Status.Failed
	if u := job.Status.UncountedTerminatedPods; u != nil {
		n += int32(len(u.Failed))
	}
	return n
}

// retryBudget is the backoffLimit of a live Job that has not failed; 0 when
// the Job cannot (or will not) replace a pod.
func retryBudget(job *batchv1.Job) int32 {
	if job == nil || job.DeletionTimestamp != nil || jobFailed(job) != nil || jobComplete(job) || job.Spec.BackoffLimit == nil {
		return 0
	}
	return *job.Spec.BackoffLimit
}

// awaitingReplacement reports whether the Job decides what comes after
// the agent pod: the newest pod was disrupted, or the pod the run follows
// is gone, while the Job has budget left. The Job then either starts a new
// pod or fails (BackoffLimitExceeded, or its podFailurePolicy's FailJob for
// a pod that failed on its own), and the run follows that; its deadline
// still bounds the wait. A vanished pod is never taken for lost while the
// Job may still replace it: the pod can be gone from the cache before the
// Job's update that counts it (two informers, no order between them; and
// the Job counts a failed pod in a second write after removing its
// finalizer).
func (w taskAdapter) awaitingReplacement(job *batchv1.Job, pod *corev1.Pod) bool {
	budget := retryBudget(job)
	if budget == 0 || failures(job) > budget {
		return false
	}
	if pod != nil {
		return disrupted(pod)
	}
	return w.m.st.PodName != ""
}

// countAttempts records how many pods the Job started: 1 + the failures it
// counted while it lives, the failures once it failed. It is written with a
// transition the run writes anyway (started, finished) or when a
// replacement shows, so a run without disruptions spends no write on it.
// Called after the run's transition is decided.
func (w taskAdapter) countAttempts(job *batchv1.Job, pod *corev1.Pod) {
	m := w.m
	if job == nil {
		return
	}
	n := failures(job) + 1
	if jobFailed(job) != nil {
		n = max(failures(job), 1)
	}
	if recorded := m.run().Status.PodName; pod != nil && recorded != "" && pod.Name != recorded {
		// A pod other than the one the run recorded: the Job replaced
		// that one, whether or not its status says so yet (the Job's
		// update may reach the cache after the new pod). At least the
		// second attempt, then; the Job's count says which.
		n = max(n, 2)
	}
	if job.Spec.BackoffLimit != nil {
		// Counted failures beyond the budget start no pod.
		n = min(n, 1+max(*job.Spec.BackoffLimit, 0))
	}
	if pod != nil && !disrupted(pod) && m.st.PodName != "" && !m.st.Phase.IsTerminal() {
		// The run names the pod that runs its agent now: a replacement
		// once it shows (a run never disrupted writes nothing here).
		m.st.PodName = pod.Name
	}
	grew := n > max(m.st.Attempts, 1)
	if !grew && (m.st.Attempts != 0 || m.st.Phase == m.run().Status.Phase) {
		return
	}
	m.st.Attempts = max(n, m.st.Attempts)
	if !grew || m.st.Phase.IsTerminal() {
		return
	}
	limit := int32(0)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	m.event(corev1.EventTypeWarning, v1alpha1.ReasonRetrying,
		fmt.Sprintf("the infrastructure stopped the agent's pod; Job %s replaces it: attempt %d of at most %d", job.Name, n, 1+limit))
}

// retriesSpent reports a Job that failed because it spent its budget on
// pods the infrastructure stopped (more than one attempt).
func retriesSpent(job *batchv1.Job) bool {
	c := jobFailed(job)
	return c != nil && c.Reason == batchv1.JobReasonBackoffLimitExceeded && failures(job) > 1
}

// retriesExhausted is the message of a Job that failed after spending its
// budget on disruptions.
func retriesExhausted(job *batchv1.Job, c *batchv1.JobCondition) string {
	return fmt.Sprintf("Job %s gave up after %d attempts, the infrastructure stopped each pod: %s: %s", job.Name, failures(job), c.Reason, c.Message)
}

// retried reports a Job built with a retry budget (backoffLimit > 0).
func retried(job *batchv1.Job) bool {
	return job != nil && job.Spec.BackoffLimit != nil && *job.Spec.BackoffLimit > 0
}

// exitCode is the agent container's exit code when it terminated.
func exitCode(agent *corev1.ContainerStatus) *int32 {
	if agent == nil || agent.State.Terminated == nil {
		return nil
	}
	e := agent.State.Terminated.ExitCode
	return &e
}
