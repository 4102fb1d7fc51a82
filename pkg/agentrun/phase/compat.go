package phase

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// adopting reports whether obj, the run's workload as cached (controlled by
// the run), is one sympozium's own controller created for a run it had
// admitted (its status names the workload) and this controller has not
// recorded the admission of yet (no Admitted condition: sympozium's
// controller writes none). The run is then adopted: its admission is
// recorded once, saying so, and the workload is followed like one of this
// controller's own (the agent container is the same "agent", the result
// the same report).
func (m *machine) adopting(obj metav1.Object) bool {
	return obj != nil && m.w.recorded() && workload.CreatedByOriginal(obj) &&
		findCondition(m.st.Conditions, v1alpha1.ConditionAdmitted) == nil
}

// created is the message of the run's admission: the backend's, and what
// the admission changed of the spec or took over from sympozium's own
// controller. obj is the existing workload the admission records; nil
// when it was just asked for.
func (m *machine) created(obj metav1.Object) string {
	msg := m.w.created()
	if obj != nil && workload.CreatedByOriginal(obj) {
		msg = workload.AdoptedNote(m.w.kind(), obj)
	}
	if note := workload.IgnoredSandboxNote(m.run()); note != "" {
		msg += "; " + note
	}
	return msg
}
