package workload

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// DefaultInfrastructureRetries is how many times a task-mode run's pod that
// the infrastructure broke is replaced when neither the run nor its instance
// says (spec.retry.infrastructure).
const DefaultInfrastructureRetries int32 = 2

// InfrastructureRetries is the run's retry budget for pods the
// infrastructure broke: spec.retry.infrastructure, else the instance's
// agents.default.retry.infrastructure, else DefaultInfrastructureRetries;
// clamped to [0, v1alpha1.MaxInfrastructureRetries].
func InfrastructureRetries(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance) int32 {
	n := DefaultInfrastructureRetries
	switch {
	case run != nil && run.Spec.Retry != nil && run.Spec.Retry.Infrastructure != nil:
		n = *run.Spec.Retry.Infrastructure
	case inst != nil && inst.Spec.Agents.Default.Retry != nil && inst.Spec.Agents.Default.Retry.Infrastructure != nil:
		n = *inst.Spec.Agents.Default.Retry.Infrastructure
	}
	return min(max(n, 0), v1alpha1.MaxInfrastructureRetries)
}

// PodFailurePolicy is the Job's own split between what the infrastructure
// broke and what the agent decided, so that the Job controller, not this
// one, replaces pods (with its backoff) and counts them against
// backoffLimit (= InfrastructureRetries):
//
//  1. a pod with the DisruptionTarget condition (evicted, preempted, lost
//     with its node, deleted by the taint manager or pod GC) is Counted;
//  2. any container's non-zero exit (the agent's own decision, or a
//     sidecar's) fails the Job at once: it is never retried.
//
// A pod that failed without either (it never ran a container) is counted
// like a disruption. The run's own deadline bounds every attempt: the Job's
// activeDeadlineSeconds spans all of them.
func PodFailurePolicy() *batchv1.PodFailurePolicy {
	return &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{
			Action: batchv1.PodFailurePolicyActionCount,
			OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
				{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue},
			},
		},
		{
			Action: batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
				Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn,
				Values:   []int32{0},
			},
		},
	}}
}
