package phase

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Defaults of an instance's sub-agent limits (SPEC §1).
const (
	DefaultMaxDepth            = 2
	DefaultMaxConcurrent       = 5
	DefaultMaxChildrenPerAgent = 3
	DefaultRunHistoryLimit     = 50
)

// SubagentLimits are an instance's effective sub-agent limits.
type SubagentLimits struct {
	MaxDepth, MaxConcurrent, MaxChildrenPerAgent int32
}

// Limits returns the instance's sub-agent limits with defaults filled in.
func Limits(inst *v1alpha1.SympoziumInstance) SubagentLimits {
	l := SubagentLimits{MaxDepth: DefaultMaxDepth, MaxConcurrent: DefaultMaxConcurrent, MaxChildrenPerAgent: DefaultMaxChildrenPerAgent}
	if inst == nil {
		return l
	}
	s := inst.Spec.Agents.Default.Subagents
	if s.MaxDepth != nil {
		l.MaxDepth = *s.MaxDepth
	}
	if s.MaxConcurrent != nil && *s.MaxConcurrent > 0 {
		l.MaxConcurrent = *s.MaxConcurrent
	}
	if s.MaxChildrenPerAgent != nil {
		l.MaxChildrenPerAgent = *s.MaxChildrenPerAgent
	}
	return l
}

// HistoryLimit is how many finished runs of the instance are kept.
func HistoryLimit(inst *v1alpha1.SympoziumInstance) int {
	if inst == nil || inst.Spec.RunHistoryLimit == nil || *inst.Spec.RunHistoryLimit < 0 {
		return DefaultRunHistoryLimit
	}
	return int(*inst.Spec.RunHistoryLimit)
}

// IsAdmitted reports whether the run's workload was created: it holds a
// slot of its instance's sub-agent capacity until it finishes.
func IsAdmitted(run *v1alpha1.AgentRun) bool {
	_, name := run.Status.Workload()
	return name != ""
}

// IsWaiting reports whether the run is unfinished and not admitted yet.
func IsWaiting(run *v1alpha1.AgentRun) bool {
	return !run.Status.Phase.IsTerminal() && !IsAdmitted(run)
}

// AdmissionUndecided reports whether nothing has been decided yet about
// the run's admission: it is waiting (IsWaiting), not being deleted, and
// its status records no admission decision (no Admitted condition): it
// was never synced, or its first decision did not reach the API server.
// A run that was told to wait (for a slot, its instance, a ConfigMap, its
// parent) has had its decision; it is looked at again when what it waits
// for changes.
func AdmissionUndecided(run *v1alpha1.AgentRun) bool {
	return IsWaiting(run) && run.DeletionTimestamp == nil && findCondition(run.Status.Conditions, v1alpha1.ConditionAdmitted) == nil
}

func agentStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == v1alpha1.AgentContainerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// podLost reports a pod that is going away or was stopped by the cluster
// (deleted, evicted, preempted) rather than finished by the agent.
func podLost(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Reason == "Evicted" || pod.Status.Reason == "Preempting" {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return pod.Status.Phase == corev1.PodFailed && agentStatus(pod) != nil && agentStatus(pod).State.Terminated == nil
}

func podLostMessage(pod *corev1.Pod) string {
	switch {
	case pod.Status.Reason != "":
		return fmt.Sprintf("pod %s stopped by the cluster: %s: %s", pod.Name, pod.Status.Reason, pod.Status.Message)
	case pod.DeletionTimestamp != nil:
		return fmt.Sprintf("pod %s was deleted before the agent finished", pod.Name)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("pod %s disrupted: %s: %s", pod.Name, c.Reason, c.Message)
		}
	}
	return fmt.Sprintf("pod %s failed before the agent finished", pod.Name)
}

func jobCondition(job *batchv1.Job, typ batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		if job.Status.Conditions[i].Type == typ && job.Status.Conditions[i].Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

func jobFailed(job *batchv1.Job) *batchv1.JobCondition {
	if c := jobCondition(job, batchv1.JobFailed); c != nil {
		return c
	}
	return jobCondition(job, batchv1.JobFailureTarget)
}

func jobComplete(job *batchv1.Job) bool { return jobCondition(job, batchv1.JobComplete) != nil }

// waitingFailure maps an agent container's waiting reason to the run's
// failure reason once the grace period is over; "" for ordinary waits.
func waitingFailure(reason string) string {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable":
		return v1alpha1.ReasonImagePullFailed
	case "CreateContainerConfigError", "CreateContainerError":
		return v1alpha1.ReasonConfigError
	}
	return ""
}

// unschedulable returns the scheduler's message for a pod it cannot place.
func unschedulable(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return c.Message
		}
	}
	return ""
}
