// Package index holds the indexes the controllers share on the run and pod
// informers, and their keys: one place, so that no controller imports
// another for them.
package index

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Index names on the shared informers.
const (
	// RunsByInstance keys runs by <namespace>/<instanceRef>.
	RunsByInstance = "sympozium.ai/by-instance"
	// RunsByParent keys sub-agent runs by <namespace>/<parent run>.
	RunsByParent = "sympozium.ai/by-parent"
	// WaitingRunsByInstance keys the runs that are neither admitted nor
	// terminal by <namespace>/<instanceRef>: the runs a freed slot, a new
	// instance or a new ConfigMap may let start. Waking them reads only
	// them, not every run of a busy instance (which made a burst quadratic).
	WaitingRunsByInstance = "sympozium.ai/waiting-by-instance"
	// SubagentsByInstance keys sub-agent runs (spec.parent set) by
	// <namespace>/<instanceRef>, for the sub-agent concurrency limit.
	SubagentsByInstance = "sympozium.ai/subagents-by-instance"
	// LiveRunsByInstance keys the unfinished runs (admitted or waiting) by
	// <namespace>/<instanceRef>, for the instance's run limit
	// (maxConcurrentRuns).
	LiveRunsByInstance = "sympozium.ai/live-by-instance"
	// LiveRuns keys every unfinished run by LiveRunsKey, for the
	// controller-wide run limit (--max-concurrent-runs).
	LiveRuns = "sympozium.ai/live"
	// PodsByJob keys pods by the UID of the Job that controls them.
	PodsByJob = "sympozium.ai/by-job-uid"
	// PodsByRun keys pods by <namespace>/<the sympozium.ai/agent-run
	// label> (naming.LabelValue of the run's name).
	PodsByRun = "sympozium.ai/by-run-label"
)

// LiveRunsKey is the one key of the LiveRuns index.
const LiveRunsKey = "live"

// Run returns the run obj is, as the run informer's store holds it: a live
// run as is, a finished run's record (phase.FinishedRun) rebuilt as the
// compacted run, a new object each call. Tombstones are unwrapped. ok is
// false for anything else.
func Run(obj any) (*v1alpha1.AgentRun, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	switch o := obj.(type) {
	case *v1alpha1.AgentRun:
		return o, true
	case *phase.FinishedRun:
		return o.AgentRun(), true
	}
	return nil, false
}

// GetRun is the run namespace/name of the run informer's store (see Run),
// or a NotFound error, as a lister's Get.
func GetRun(runs cache.Indexer, namespace, name string) (*v1alpha1.AgentRun, error) {
	obj, ok, err := runs.GetByKey(cache.ObjectName{Namespace: namespace, Name: name}.String())
	if err != nil {
		return nil, err
	}
	if r, isRun := Run(obj); ok && isRun {
		return r, nil
	}
	return nil, apierrors.NewNotFound(v1alpha1.Resource("agentrun"), name)
}

// History is what the history policy reads of the run obj is (see
// phase.HistoryRun), without rebuilding a finished run from its record.
func History(obj any) (phase.HistoryRun, bool) {
	switch o := obj.(type) {
	case *v1alpha1.AgentRun:
		return phase.HistoryOf(o), true
	case *phase.FinishedRun:
		return o.History(), true
	}
	return phase.HistoryRun{}, false
}

// InstanceOf is the namespace and spec.instanceRef of the run obj is.
func InstanceOf(obj any) (namespace, instance string, ok bool) {
	f, ok := factsOf(obj)
	return f.namespace, f.instance, ok
}

// runFacts is what the indexes read of a run, from either form.
type runFacts struct {
	namespace, instance, parent string
	phase                       v1alpha1.AgentRunPhase
	waiting                     bool
	resourceVersion             phase.ResourceVersionKey
	deleting                    bool
}

// FinishedAtRest reports whether obj is a run of the store that is finished
// and not being deleted: nothing is left to do for it but what its
// children's and grants' own events bring (a restart's list and a deadline
// that comes due after the end do not sync it). It reads either form of a
// run without rebuilding a record.
func FinishedAtRest(obj any) bool {
	f, ok := factsOf(obj)
	return ok && f.phase.IsTerminal() && !f.deleting
}

// FinishedResync reports whether an update event from old to cur is a
// resync of a finished run: finished both times, same resourceVersion. It
// reads either form of a run without rebuilding a record.
func FinishedResync(old, cur any) bool {
	o, ok := factsOf(old)
	c, ok2 := factsOf(cur)
	return ok && ok2 && o.phase.IsTerminal() && c.phase.IsTerminal() && o.resourceVersion == c.resourceVersion
}

func factsOf(obj any) (runFacts, bool) {
	switch o := obj.(type) {
	case *v1alpha1.AgentRun:
		f := runFacts{namespace: o.Namespace, instance: o.Spec.InstanceRef, phase: o.Status.Phase, waiting: phase.IsWaiting(o),
			resourceVersion: phase.ResourceVersionKeyOf(o.ResourceVersion), deleting: o.DeletionTimestamp != nil}
		if o.Spec.Parent != nil {
			f.parent = o.Spec.Parent.RunName
		}
		return f, true
	case *phase.FinishedRun:
		return runFacts{namespace: o.Namespace, instance: o.Instance, parent: o.ParentName(), phase: o.Phase(),
			resourceVersion: o.ResourceVersionKey(), deleting: o.Deleting()}, true
	}
	return runFacts{}, false
}

// RunLabelKey is the PodsByRun key of a run's pods.
func RunLabelKey(namespace, run string) string { return namespace + "/" + naming.LabelValue(run) }

// InstanceKey is the RunsByInstance key of a run.
func InstanceKey(namespace, instance string) string { return namespace + "/" + instance }

// byInstance indexes the runs for which keep is true by InstanceKey.
func byInstance(keep func(runFacts) bool) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		r, ok := factsOf(obj)
		if !ok || !keep(r) {
			return nil, nil
		}
		return []string{InstanceKey(r.namespace, r.instance)}, nil
	}
}

func liveFacts(r runFacts) bool { return !r.phase.IsTerminal() }

// Add adds the indexes the controllers use to the run and pod
// informers. It is idempotent, so every controller sharing the informers may
// call it.
func Add(runs, pods cache.SharedIndexInformer) error {
	want := map[cache.SharedIndexInformer]cache.Indexers{
		runs: {
			RunsByInstance:        byInstance(func(runFacts) bool { return true }),
			WaitingRunsByInstance: byInstance(func(r runFacts) bool { return r.waiting }),
			SubagentsByInstance:   byInstance(func(r runFacts) bool { return r.parent != "" }),
			LiveRunsByInstance:    byInstance(liveFacts),
			LiveRuns: func(obj any) ([]string, error) {
				if r, ok := factsOf(obj); ok && liveFacts(r) {
					return []string{LiveRunsKey}, nil
				}
				return nil, nil
			},
			RunsByParent: func(obj any) ([]string, error) {
				r, ok := factsOf(obj)
				if !ok || r.parent == "" {
					return nil, nil
				}
				return []string{r.namespace + "/" + r.parent}, nil
			},
		},
		pods: {
			PodsByJob: func(obj any) ([]string, error) {
				p, ok := obj.(*corev1.Pod)
				if !ok {
					return nil, nil
				}
				if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "Job" {
					return []string{string(ref.UID)}, nil
				}
				return nil, nil
			},
			PodsByRun: func(obj any) ([]string, error) {
				p, ok := obj.(*corev1.Pod)
				if !ok || p.Labels[v1alpha1.LabelAgentRun] == "" {
					return nil, nil
				}
				return []string{p.Namespace + "/" + p.Labels[v1alpha1.LabelAgentRun]}, nil
			},
		},
	}
	for inf, idx := range want {
		have := inf.GetIndexer().GetIndexers()
		missing := cache.Indexers{}
		for name, fn := range idx {
			if _, ok := have[name]; !ok {
				missing[name] = fn
			}
		}
		if len(missing) == 0 {
			continue
		}
		if err := inf.AddIndexers(missing); err != nil {
			return fmt.Errorf("adding indexers: %w", err)
		}
	}
	return nil
}

// Summary is what the metrics read of a run of the store: a few fields,
// from either form of a run, without rebuilding a finished run's record.
type Summary struct {
	Namespace, Instance string
	Phase               v1alpha1.AgentRunPhase
	// Reason is a finished run's outcome reason (phase.OutcomeReason); a
	// Pending run's Admitted condition reason (WaitingForCapacity,
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

// Summarize returns the Summary of the run obj is; ok is false for
// anything else.
func Summarize(obj any) (Summary, bool) {
	switch o := obj.(type) {
	case *phase.FinishedRun:
		return Summary{Namespace: o.Namespace, Instance: o.Instance, Phase: o.Phase(), Reason: o.OutcomeReason()}, true
	case *v1alpha1.AgentRun:
		s := Summary{Namespace: o.Namespace, Instance: o.Spec.InstanceRef, Phase: o.Status.Phase, Mode: o.Spec.Mode, Created: o.CreationTimestamp}
		if s.Mode == "" {
			s.Mode = v1alpha1.ModeTask
		}
		switch {
		case o.Status.Phase.IsTerminal():
			s.Reason = phase.OutcomeReason(o.Status.Conditions)
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

func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}
