package workload

import (
	"testing"

	"github.com/stretchr/testify/assert"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func TestInfrastructureRetries(t *testing.T) {
	retry := func(n int32) *v1alpha1.RetryPolicy { return &v1alpha1.RetryPolicy{Infrastructure: new(n)} }
	inst := func(p *v1alpha1.RetryPolicy) *v1alpha1.SympoziumInstance {
		i := &v1alpha1.SympoziumInstance{}
		i.Spec.Agents.Default.Retry = p
		return i
	}
	run := func(p *v1alpha1.RetryPolicy) *v1alpha1.AgentRun {
		r := &v1alpha1.AgentRun{}
		r.Spec.Retry = p
		return r
	}
	for name, tc := range map[string]struct {
		run  *v1alpha1.AgentRun
		inst *v1alpha1.SympoziumInstance
		want int32
	}{
		"default":                           {run: run(nil), inst: inst(nil), want: DefaultInfrastructureRetries},
		"no instance":                       {run: run(nil), want: DefaultInfrastructureRetries},
		"instance default":                  {run: run(nil), inst: inst(retry(5)), want: 5},
		"run overrides instance":            {run: run(retry(0)), inst: inst(retry(5)), want: 0},
		"empty run policy: instance":        {run: run(&v1alpha1.RetryPolicy{}), inst: inst(retry(4)), want: 4},
		"clamped above (admission skipped)": {run: run(retry(99)), want: v1alpha1.MaxInfrastructureRetries},
		"clamped below":                     {run: run(retry(-1)), want: 0},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, InfrastructureRetries(tc.run, tc.inst))
		})
	}
}

// TestPodFailurePolicyOrder checks the rules that make "retry what the
// infrastructure broke, never what the agent decided": the disruption rule
// comes first, because an evicted agent is killed with a non-zero exit code
// (137) that the FailJob rule would otherwise match.
func TestPodFailurePolicyOrder(t *testing.T) {
	p := PodFailurePolicy()
	if assert.Len(t, p.Rules, 2) {
		assert.Equal(t, batchv1.PodFailurePolicyActionCount, p.Rules[0].Action)
		assert.Equal(t, corev1.DisruptionTarget, p.Rules[0].OnPodConditions[0].Type)
		assert.Equal(t, batchv1.PodFailurePolicyActionFailJob, p.Rules[1].Action)
		assert.Equal(t, batchv1.PodFailurePolicyOnExitCodesOpNotIn, p.Rules[1].OnExitCodes.Operator)
		assert.Equal(t, []int32{0}, p.Rules[1].OnExitCodes.Values)
	}
}
