package phase

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func TestAdmissionUndecided(t *testing.T) {
	cases := map[string]struct {
		run  *v1alpha1.AgentRun
		want bool
	}{
		"new, no status":         {newRun(), true},
		"Pending, never decided": {newRun(withPhase(v1alpha1.PhasePending)), true},
		"told to wait for a slot": {newRun(withPhase(v1alpha1.PhasePending),
			withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)), false},
		"told to wait for its instance": {newRun(withPhase(v1alpha1.PhasePending),
			withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonInstanceNotFound)), false},
		"admitted":                     {newRun(admitted()), false},
		"workload named, no condition": {newRun(withPhase(v1alpha1.PhasePending), withJobName()), false},
		"running":                      {newRun(running()), false},
		"failed before admission": {newRun(withPhase(v1alpha1.PhaseFailed),
			withCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, v1alpha1.ReasonInvalidSpec)), false},
		"being deleted": {newRun(withDeleted()), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, AdmissionUndecided(tc.run))
		})
	}
}
