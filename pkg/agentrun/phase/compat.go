package phase

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
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

// admissionEvent is the event of the admission recorded with message msg
// (from created): a progress event when it only says what was created.
func (m *machine) admissionEvent(msg string) {
	if msg == m.w.created() {
		m.progress(v1alpha1.ReasonJobCreated, msg)
		return
	}
	m.event(corev1.EventTypeNormal, v1alpha1.ReasonJobCreated, msg)
}

// adoptedPhase gives an adopted run the condition of the phase sympozium's
// controller left it in (it writes none), as this controller's own run in
// that phase has: Running, or Serving (kept in step by the server adapter
// from then on).
func (m *machine) adoptedPhase() {
	switch m.st.Phase {
	case v1alpha1.PhaseRunning:
		m.setCondition(v1alpha1.ConditionRunning, metav1.ConditionTrue, v1alpha1.ReasonStarted,
			fmt.Sprintf("agent container started in pod %s", m.st.PodName))
	case v1alpha1.PhaseServing:
		m.setCondition(v1alpha1.ConditionServing, metav1.ConditionTrue, v1alpha1.ReasonStarted,
			fmt.Sprintf("Deployment %s is available behind Service %s", m.st.DeploymentName, m.st.ServiceName))
	}
}

// foreignWorkload fails a run whose status names its workload under a name
// this controller never gives it, and reports whether it did. sympozium's
// own controller named an agent sandbox run's Sandbox "sb-<run>" (in an
// API group of its own) and its SandboxClaim "sbc-<run>": this controller
// cannot follow those, and the run would otherwise fail as if its
// workload had been deleted.
func (m *machine) foreignWorkload() bool {
	run := m.run()
	var kind, name string
	switch BackendOf(run) {
	case BackendTask:
		kind, name = "Job", m.st.JobName
	case BackendServer:
		kind, name = "Deployment", m.st.DeploymentName
	case BackendSandbox:
		kind, name = workload.SandboxKind, m.st.SandboxName
	case BackendSandboxClaim:
		kind, name = workload.SandboxClaimKind, m.st.SandboxClaimName
	}
	want := Children(run)[0].Name
	if name == "" || name == want {
		return false
	}
	m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("the status names %s %s, which this controller did not create (it names this run's %s %s): "+
		"sympozium's own controller started the run, and this controller cannot follow that %s; delete the run and create it again to run it",
		kind, name, kind, want, kind), nil)
	return true
}
