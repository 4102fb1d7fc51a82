package phase

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// KindJob is the workload of a task-mode run.
const KindJob Kind = "Job"

func taskChildren(run string) []Child { return []Child{{KindJob, naming.JobName(run)}} }

// taskAdapter is a Job running the agent pod once.
type taskAdapter struct{ m *machine }

func (w taskAdapter) kind() string { return "Job" }

func (w taskAdapter) job() *batchv1.Job { return cached[*batchv1.Job](w.m, KindJob) }

func (w taskAdapter) object() metav1.Object {
	if job := w.job(); job != nil {
		return job
	}
	return nil
}

func (w taskAdapter) recorded() bool       { return w.m.st.JobName != "" }
func (w taskAdapter) unavailable() string  { return "" }
func (w taskAdapter) needsFinalizer() bool { return false }
func (w taskAdapter) created() string      { return fmt.Sprintf("Job %s created", w.m.st.JobName) }

func (w taskAdapter) record() {
	name := naming.JobName(w.m.run().Name)
	if job := w.job(); job != nil {
		name = job.Name
	}
	w.m.st.JobName = name
}

func (w taskAdapter) create() error {
	job, err := workload.Job(w.m.in.Config.Workload, w.m.inputs())
	if err != nil {
		return err
	}
	w.m.act(Create, KindJob, job)
	return nil
}

func (w taskAdapter) lost() {
	w.m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("Job %s was deleted before the run finished", w.m.st.JobName), nil)
}

func (w taskAdapter) remove(force bool) {
	removeObject(w.m, KindJob, w.job(), force)
}

// observe follows the Job and its agent pod: the agent container's exit
// decides; the Job's own failure (its deadline), a lost pod or Job end the
// run otherwise.
func (w taskAdapter) observe() {
	m := w.m
	job, pod := w.job(), m.in.Pod
	agent := agentOf(pod)
	defer w.countAttempts(job, pod)
	switch {
	case w.awaitingReplacement(job, pod):
		// The infrastructure broke the pod, or the pod is gone, and the
		// Job has budget left (spec.retry): its verdict, a new pod or
		// its failure, decides; follow the deadline until it shows.
		if !m.in.Now.Before(m.deadline()) {
			why := "; the Job was replacing a pod the infrastructure stopped"
			if pod == nil {
				why = fmt.Sprintf("; pod %s disappeared and Job %s neither replaced it nor failed", m.st.PodName, job.Name)
			}
			m.fail(v1alpha1.ReasonTimeout, m.timeoutMessage(pod, agent)+why, nil)
			return
		}
		m.requeueAt(m.deadline())
		return
	case job != nil && retriesSpent(job):
		m.fail(v1alpha1.ReasonPodLost, retriesExhausted(job, jobFailed(job)), nil)
		return
	case pod != nil && disrupted(pod) && retried(job):
		// Disrupted again with the budget spent (the Job may not say so
		// yet): the same outcome as the Job's BackoffLimitExceeded.
		exit := exitCode(agent)
		m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("%s; gave up after %d attempts", podLostMessage(pod), max(m.st.Attempts, failures(job), 1)), exit)
		return
	case agent != nil && agent.State.Terminated != nil:
		m.agentTerminated(pod, agent.State.Terminated)
		return
	case pod != nil && podLost(pod):
		m.fail(v1alpha1.ReasonPodLost, podLostMessage(pod), nil)
		return
	case job != nil && jobFailed(job) != nil:
		c := jobFailed(job)
		if c.Reason == batchv1.JobReasonDeadlineExceeded {
			m.fail(v1alpha1.ReasonTimeout, fmt.Sprintf("Job %s exceeded its active deadline: %s", job.Name, c.Message), nil)
		} else {
			m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("Job %s failed without an agent result: %s: %s", job.Name, c.Reason, c.Message), nil)
		}
		return
	case pod == nil && m.st.PodName != "" && job != nil && job.DeletionTimestamp == nil:
		m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("pod %s disappeared before the agent finished", m.st.PodName), nil)
		return
	case job != nil && pod == nil && jobComplete(job):
		// The pod succeeded (exit 0) but is gone: no report to read.
		m.succeed(0, result.Outcome{Error: "the agent pod was removed before its result could be read"})
		return
	}
	m.followPod(pod, agent)
}
