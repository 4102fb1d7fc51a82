// Package runstore is the run store: the one reader of the AgentRun
// informer's cache. The cache holds a run in one of two shapes, a live run
// as a *v1alpha1.AgentRun and a finished run as a *runcache.FinishedRun
// record (runcache.TrimForCache), and only this package tells them apart:
// the controllers, the metrics and the instance tally ask it typed
// questions (Get, the live runs of an instance or a parent, Histories,
// FinishedAtRest, Summaries), and the run event handlers get each run as
// an Entry. A caller never type-asserts what the cache holds, so a question
// that must see finished runs cannot skip their records by accident.
package runstore

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Store answers the controllers' questions about the runs the informer's
// cache holds. Every run it returns is read-only: it points into the cache,
// or is a finished run rebuilt from its record (runcache.FinishedRun.AgentRun:
// the compacted run, whose maps and pointers are still the cache's).
type Store struct {
	indexer cache.Indexer
}

// New is the store of the runs informer, with the indexes it reads added
// (idempotent: every controller sharing the informer may call it).
func New(runs cache.SharedIndexInformer) (*Store, error) {
	if err := addIndexes(runs); err != nil {
		return nil, err
	}
	return &Store{indexer: runs.GetIndexer()}, nil
}

// Get is the run namespace/name, or a NotFound error, as a lister's Get.
func (s *Store) Get(namespace, name string) (*v1alpha1.AgentRun, error) {
	obj, ok, err := s.indexer.GetByKey(cache.ObjectName{Namespace: namespace, Name: name}.String())
	if err != nil {
		return nil, err
	}
	if r, isRun := EntryOf(obj).Run(); ok && isRun {
		return r, nil
	}
	return nil, apierrors.NewNotFound(v1alpha1.Resource("agentrun"), name)
}

// FinishedAtRest reports whether the store holds the run key finished and
// not being deleted (see Entry.FinishedAtRest).
func (s *Store) FinishedAtRest(key cache.ObjectName) bool {
	obj, ok, _ := s.indexer.GetByKey(key.String())
	return ok && EntryOf(obj).FinishedAtRest()
}

// live returns the unfinished runs under key of the index name. An
// unfinished run is never a record, so nothing is rebuilt.
func (s *Store) live(name, key string) []*v1alpha1.AgentRun {
	objs, err := s.indexer.ByIndex(name, key)
	if err != nil {
		return nil
	}
	out := make([]*v1alpha1.AgentRun, 0, len(objs))
	for _, o := range objs {
		if r, ok := o.(*v1alpha1.AgentRun); ok && !r.Status.Phase.IsTerminal() {
			out = append(out, r)
		}
	}
	return out
}

// Live are every unfinished run (admitted or waiting), for the
// controller-wide run limit.
func (s *Store) Live() []*v1alpha1.AgentRun { return s.live(liveRuns, liveRunsKey) }

// LiveOfInstance are the unfinished runs of the instance.
func (s *Store) LiveOfInstance(namespace, instance string) []*v1alpha1.AgentRun {
	return s.live(liveRunsByInstance, InstanceKey(namespace, instance))
}

// LiveSubagents are the unfinished sub-agent runs (spec.parent set) of the
// instance.
func (s *Store) LiveSubagents(namespace, instance string) []*v1alpha1.AgentRun {
	return s.live(subagentsByInstance, InstanceKey(namespace, instance))
}

// LiveChildren are the unfinished sub-agent runs of the run parent.
func (s *Store) LiveChildren(namespace, parent string) []*v1alpha1.AgentRun {
	return s.live(runsByParent, namespace+"/"+parent)
}

// Children are every sub-agent run of the run parent, finished ones
// included (rebuilt from their records).
func (s *Store) Children(namespace, parent string) []*v1alpha1.AgentRun {
	objs, err := s.indexer.ByIndex(runsByParent, namespace+"/"+parent)
	if err != nil {
		return nil
	}
	out := make([]*v1alpha1.AgentRun, 0, len(objs))
	for _, o := range objs {
		if r, ok := EntryOf(o).Run(); ok {
			out = append(out, r)
		}
	}
	return out
}

// Waiting are the runs of the instance (by InstanceKey) that are neither
// admitted nor finished (phase.IsWaiting): the runs a freed slot, a new
// instance or a new ConfigMap may let start. It reads only them, not every
// run of a busy instance (which made a burst quadratic).
func (s *Store) Waiting(instanceKey string) []*v1alpha1.AgentRun {
	objs, err := s.indexer.ByIndex(waitingRunsByInstance, instanceKey)
	if err != nil {
		return nil
	}
	out := make([]*v1alpha1.AgentRun, 0, len(objs))
	for _, o := range objs {
		if r, ok := o.(*v1alpha1.AgentRun); ok && phase.IsWaiting(r) {
			out = append(out, r)
		}
	}
	return out
}

// WaitingInstances are the InstanceKeys of the instances that have waiting
// runs.
func (s *Store) WaitingInstances() []string {
	return s.indexer.ListIndexFuncValues(waitingRunsByInstance)
}

// Histories is what the history policy reads of each run of the instance
// (runcache.HistoryRun), without rebuilding a finished run from its record.
func (s *Store) Histories(namespace, instance string) ([]runcache.HistoryRun, error) {
	objs, err := s.indexer.ByIndex(runsByInstance, InstanceKey(namespace, instance))
	if err != nil {
		return nil, err
	}
	runs := make([]runcache.HistoryRun, 0, len(objs))
	for _, o := range objs {
		if r, ok := EntryOf(o).History(); ok {
			runs = append(runs, r)
		}
	}
	return runs, nil
}

// InstanceKey is the key of an instance's runs: <namespace>/<instance>.
func InstanceKey(namespace, instance string) string { return namespace + "/" + instance }

// Index names on the runs informer.
const (
	// runsByInstance keys runs by InstanceKey.
	runsByInstance = "sympozium.ai/by-instance"
	// runsByParent keys sub-agent runs by <namespace>/<parent run>.
	runsByParent = "sympozium.ai/by-parent"
	// waitingRunsByInstance keys the runs that are neither admitted nor
	// terminal by InstanceKey (see Waiting).
	waitingRunsByInstance = "sympozium.ai/waiting-by-instance"
	// subagentsByInstance keys sub-agent runs (spec.parent set) by
	// InstanceKey, for the sub-agent concurrency limit.
	subagentsByInstance = "sympozium.ai/subagents-by-instance"
	// liveRunsByInstance keys the unfinished runs (admitted or waiting) by
	// InstanceKey, for the instance's run limit (maxConcurrentRuns).
	liveRunsByInstance = "sympozium.ai/live-by-instance"
	// liveRuns keys every unfinished run by liveRunsKey, for the
	// controller-wide run limit (--max-concurrent-runs).
	liveRuns = "sympozium.ai/live"
	// liveRunsKey is the one key of the liveRuns index.
	liveRunsKey = "live"
	// runsBySchedule keys the runs labelled sympozium.ai/schedule by
	// <namespace>/<schedule>, for the schedule controller.
	runsBySchedule = "sympozium.ai/by-schedule"
	// LabelSchedule is the label of a schedule's runs (sympozium's).
	LabelSchedule = "sympozium.ai/schedule"
)

// OfSchedule returns every run of the cache labelled for the schedule
// namespace/schedule, finished ones rebuilt from their records.
func (s *Store) OfSchedule(namespace, schedule string) ([]*v1alpha1.AgentRun, error) {
	objs, err := s.indexer.ByIndex(runsBySchedule, namespace+"/"+schedule)
	if err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.AgentRun, 0, len(objs))
	for _, o := range objs {
		if r, ok := EntryOf(o).Run(); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Has reports whether the cache holds a run namespace/name.
func (s *Store) Has(namespace, name string) bool {
	_, ok, _ := s.indexer.GetByKey(cache.ObjectName{Namespace: namespace, Name: name}.String())
	return ok
}

// byInstance indexes the runs for which keep is true by InstanceKey.
func byInstance(keep func(facts) bool) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		r, ok := EntryOf(obj).facts()
		if !ok || !keep(r) {
			return nil, nil
		}
		return []string{InstanceKey(r.namespace, r.instance)}, nil
	}
}

func liveFacts(r facts) bool { return !r.phase.IsTerminal() }

// addIndexes adds the indexes the store reads to the runs informer,
// those it lacks only.
func addIndexes(runs cache.SharedIndexInformer) error {
	want := cache.Indexers{
		runsByInstance:        byInstance(func(facts) bool { return true }),
		waitingRunsByInstance: byInstance(func(r facts) bool { return r.waiting }),
		subagentsByInstance:   byInstance(func(r facts) bool { return r.parent != "" }),
		liveRunsByInstance:    byInstance(liveFacts),
		liveRuns: func(obj any) ([]string, error) {
			if r, ok := EntryOf(obj).facts(); ok && liveFacts(r) {
				return []string{liveRunsKey}, nil
			}
			return nil, nil
		},
		runsBySchedule: func(obj any) ([]string, error) {
			e := EntryOf(obj)
			if v, ok := e.labels()[LabelSchedule]; ok && v != "" {
				if f, ok := e.facts(); ok {
					return []string{f.namespace + "/" + v}, nil
				}
			}
			return nil, nil
		},
		runsByParent: func(obj any) ([]string, error) {
			r, ok := EntryOf(obj).facts()
			if !ok || r.parent == "" {
				return nil, nil
			}
			return []string{r.namespace + "/" + r.parent}, nil
		},
	}
	have := runs.GetIndexer().GetIndexers()
	missing := cache.Indexers{}
	for name, fn := range want {
		if _, ok := have[name]; !ok {
			missing[name] = fn
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := runs.AddIndexers(missing); err != nil {
		return fmt.Errorf("adding indexers: %w", err)
	}
	return nil
}
