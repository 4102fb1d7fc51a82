package runstore

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Summary is what the metrics read of a run of the store: a few fields,
// from either shape of a run, without rebuilding a finished run's record.
type Summary struct {
	Namespace, Instance string
	Phase               v1alpha1.AgentRunPhase
	// Reason is a finished run's outcome reason (runcache.OutcomeReason);
	// a Pending run's Admitted condition reason (WaitingForCapacity,
	// InstanceNotFound, ... while it waits, JobCreated once admitted, ""
	// before its first decision); "" for the others.
	Reason string
	// Live runs only (a finished run's record does not say): the run's
	// mode, its creation time, and for a server whether it is serving
	// (phase Serving, condition Serving True).
	Mode    v1alpha1.AgentRunMode
	Created metav1.Time
	Ready   bool
}

// Summary is the entry's Summary; ok is false for anything but a run.
func (e Entry) Summary() (Summary, bool) {
	switch o := e.obj.(type) {
	case *runcache.FinishedRun:
		return Summary{Namespace: o.Namespace, Instance: o.Instance, Phase: o.Phase(), Reason: o.OutcomeReason()}, true
	case *v1alpha1.AgentRun:
		s := Summary{Namespace: o.Namespace, Instance: o.Spec.InstanceRef, Phase: o.Status.Phase, Mode: o.Spec.Mode, Created: o.CreationTimestamp}
		if s.Mode == "" {
			s.Mode = v1alpha1.ModeTask
		}
		switch {
		case o.Status.Phase.IsTerminal():
			s.Reason = runcache.OutcomeReason(o.Status.Conditions)
		case o.Status.Phase == v1alpha1.PhasePending || o.Status.Phase == "":
			if c := condition(o.Status.Conditions, v1alpha1.ConditionAdmitted); c != nil {
				s.Reason = c.Reason
			}
		case o.Status.Phase == v1alpha1.PhaseServing:
			c := condition(o.Status.Conditions, v1alpha1.ConditionServing)
			s.Ready = c != nil && c.Status == metav1.ConditionTrue
		}
		return s, true
	}
	return Summary{}, false
}

// Summaries is the Summary of every run of the store.
func (s *Store) Summaries() []Summary {
	objs := s.indexer.List()
	out := make([]Summary, 0, len(objs))
	for _, obj := range objs {
		if sum, ok := EntryOf(obj).Summary(); ok {
			out = append(out, sum)
		}
	}
	return out
}

// LiveUID is the UID of the run namespace/name when the store holds it
// unfinished; ok is false otherwise. Nothing is rebuilt.
func (s *Store) LiveUID(namespace, name string) (types.UID, bool) {
	obj, ok, _ := s.indexer.GetByKey(cache.ObjectName{Namespace: namespace, Name: name}.String())
	if !ok {
		return "", false
	}
	r, isRun := obj.(*v1alpha1.AgentRun) // a record is always finished
	if !isRun || r.Status.Phase.IsTerminal() {
		return "", false
	}
	return r.UID, true
}

func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}
