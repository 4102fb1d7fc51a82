package phase

import (
	"fmt"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Run control: cancelling a run (spec.cancel), a parent's end stopping its
// children, and the limits on all runs (an instance's maxConcurrentRuns,
// the controller's Config.MaxConcurrentRuns).

// Load is what a run limit is checked against: the admitted, unfinished
// runs, and the runs waiting for a slot of the same limit that are older
// than the run deciding (they start first: oldest first, never skipped).
type Load struct {
	Active, WaitingAhead int
}

// full reports whether limit (> 0) leaves no slot for the run.
func (l Load) full(limit int) bool { return limit > 0 && l.Active+l.WaitingAhead >= limit }

// MaxConcurrentRuns is the instance's run limit; 0 for none.
func MaxConcurrentRuns(inst *v1alpha1.SympoziumInstance) int {
	if inst == nil || inst.Spec.MaxConcurrentRuns == nil || *inst.Spec.MaxConcurrentRuns < 1 {
		return 0
	}
	return int(*inst.Spec.MaxConcurrentRuns)
}

// atCapacity returns why the run must wait for a run slot; "" when it may
// start.
func (m *machine) atCapacity() string {
	if n := MaxConcurrentRuns(m.in.Instance); m.in.Runs.full(n) {
		return fmt.Sprintf("waiting for a run slot of instance %s (maxConcurrentRuns %d)", m.run().Spec.InstanceRef, n)
	}
	if n := m.in.Config.MaxConcurrentRuns; m.in.AllRuns.full(n) {
		return fmt.Sprintf("waiting for a run slot of the controller (--max-concurrent-runs %d)", n)
	}
	return ""
}

// parent returns the run's parent as observed, or nil when the run is no
// sub-agent, the parent is not found, or the run found under the parent's
// name is not the one that owns this run (the parent was deleted and its
// name reused).
func (m *machine) parent() *v1alpha1.AgentRun {
	p := m.in.Parent
	if p == nil || m.run().Spec.Parent == nil || p.Name != m.run().Spec.Parent.RunName {
		return nil
	}
	for _, ref := range m.run().OwnerReferences {
		if ref.Kind == "AgentRun" && ref.Name == p.Name && ref.UID != p.UID {
			return nil
		}
	}
	return p
}

// stopRequested ends a live run that was cancelled, or whose parent has
// finished, and reports whether it did. The workload is deleted whatever
// spec.cleanup says (forcesCleanup): the agent gets its pod's termination
// grace period, as the workload's controller deletes the pod.
func (m *machine) stopRequested() bool {
	if m.run().Spec.Cancel {
		msg := "the run was cancelled (spec.cancel)"
		if by := m.run().Annotations[v1alpha1.AnnotationCancelledBy]; by != "" {
			// A schedule's concurrencyPolicy Replace names itself.
			msg = "the run was cancelled (spec.cancel) by " + by
		}
		m.fail(v1alpha1.ReasonCancelled, msg+m.stoppedWhile(), nil)
		return true
	}
	p := m.parent()
	if p == nil || !p.Status.Phase.IsTerminal() {
		return false
	}
	if p.Spec.Cancel {
		m.fail(v1alpha1.ReasonCancelled, fmt.Sprintf("parent run %s was cancelled", p.Name)+m.stoppedWhile(), nil)
		return true
	}
	m.fail(v1alpha1.ReasonParentFinished, fmt.Sprintf("parent run %s finished (%s) before this run", p.Name, p.Status.Phase)+m.stoppedWhile(), nil)
	return true
}

// stoppedWhile says what the run was doing when it was stopped.
func (m *machine) stoppedWhile() string {
	switch m.st.Phase {
	case v1alpha1.PhaseRunning:
		return " while running"
	case v1alpha1.PhaseServing:
		return " while serving"
	}
	if m.w.recorded() {
		return " before the agent started"
	}
	if c := findCondition(m.st.Conditions, v1alpha1.ConditionAdmitted); c != nil && c.Reason != "" {
		return " while waiting (" + c.Reason + ")"
	}
	return " before it was admitted"
}
