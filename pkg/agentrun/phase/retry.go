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
// taint manager, pod GC of a lost node). A pod merely deleted is not.
func disrupted(pod *corev1.Pod) bool {
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

// retryBudget is the backoffLimit of a live Job that has not failed; 0 when
// the Job cannot (or will not) replace a pod.
func retryBudget(job *batchv1.Job) int32 {
	if job == nil || job.DeletionTimestamp != nil || jobFailed(job) != nil || jobComplete(job) || job.Spec.BackoffLimit == nil {
		return 0
	}
	return *job.Spec.BackoffLimit
}

// awaitingReplacement reports whether the Job is replacing the agent pod
// after a disruption: the newest pod was disrupted, or is gone after the
// Job counted a failure, and the Job's budget is not spent. The Job then
// either starts a new pod or fails (BackoffLimitExceeded), and the run
// follows that; its deadline still bounds the wait.
func (w taskAdapter) awaitingReplacement(job *batchv1.Job, pod *corev1.Pod) bool {
	budget := retryBudget(job)
	if budget == 0 || job.Status.Failed > budget {
		return false
	}
	switch {
	case pod != nil:
		return disrupted(pod)
	case w.m.st.PodName != "":
		// The disrupted pod is already gone: the Job counted it (only
		// disruptions and container-less failures are counted).
		return job.Status.Failed > 0
	}
	return false
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
	n := job.Status.Failed + 1
	if jobFailed(job) != nil {
		n = max(job.Status.Failed, 1)
	}
	if job.Spec.BackoffLimit != nil {
		// Counted failures beyond the budget start no pod.
		n = min(n, 1+max(*job.Spec.BackoffLimit, 0))
	}
	grew := n > max(m.st.Attempts, 1)
	if !grew && (m.st.Attempts != 0 || m.st.Phase == m.run().Status.Phase) {
		return
	}
	m.st.Attempts = max(n, m.st.Attempts)
	if !grew || m.st.Phase.IsTerminal() {
		return
	}
	if pod != nil && !disrupted(pod) && m.st.PodName != "" {
		m.st.PodName = pod.Name
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
	return c != nil && c.Reason == batchv1.JobReasonBackoffLimitExceeded && job.Status.Failed > 1
}

// retriesExhausted is the message of a Job that failed after spending its
// budget on disruptions.
func retriesExhausted(job *batchv1.Job, c *batchv1.JobCondition) string {
	return fmt.Sprintf("Job %s gave up after %d attempts, the infrastructure stopped each pod: %s: %s", job.Name, job.Status.Failed, c.Reason, c.Message)
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
