package instance

import (
	"sync"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

// tally keeps each instance's run counts up to date from the run
// informer's events, so that an instance's sync reads its counts, and
// learns whether its history policy has anything to do, without going over
// every run it ever kept: with 50,000 finished runs an instance sync costs
// what changed, not the history (TestTallyMatchesRecount). It is one of
// the process's in-memory stores, declared with the others in the table of
// pkg/controller/agentrun/stores.go.
type tally struct {
	mu sync.Mutex
	by map[string]*instanceTally // by runstore.InstanceKey
}

// instanceTally is one instance's tally.
type instanceTally struct {
	// Counts counts every cached run as runcache.Count does.
	Counts runcache.InstanceCounts
	// Serving counts the runs in phase Serving.
	Serving int32
	// Kept counts the finished runs not being deleted, by phase: what the
	// history limits compare (runcache.Prune).
	KeptSucceeded, KeptFailed int
	// KeptWithTTL counts the kept finished runs with their own
	// ttlSecondsAfterFinished.
	KeptWithTTL int
}

func newTally() *tally { return &tally{by: map[string]*instanceTally{}} }

// add counts the run e with sign +1 or -1.
func (t *tally) add(e runstore.Entry, sign int) {
	ns, inst, ok := e.Instance()
	h, ok2 := e.History()
	if !ok || !ok2 {
		return
	}
	key := runstore.InstanceKey(ns, inst)
	t.mu.Lock()
	defer t.mu.Unlock()
	it := t.by[key]
	if it == nil {
		it = &instanceTally{}
		t.by[key] = it
	}
	it.count(h, sign)
	if *it == (instanceTally{}) {
		delete(t.by, key)
	}
}

func (it *instanceTally) count(h runcache.HistoryRun, sign int) {
	s32 := int32(sign)
	c := runcache.Count([]runcache.HistoryRun{h})
	it.Counts.Active += c.Active * s32
	it.Counts.Waiting += c.Waiting * s32
	it.Counts.Succeeded += c.Succeeded * s32
	it.Counts.Failed += c.Failed * s32
	if h.Phase == v1alpha1.PhaseServing {
		it.Serving += s32
	}
	if h.Deleting || !h.Phase.IsTerminal() {
		return
	}
	if h.Phase == v1alpha1.PhaseSucceeded {
		it.KeptSucceeded += sign
	} else {
		it.KeptFailed += sign
	}
	if h.HasTTL {
		it.KeptWithTTL += sign
	}
}

// update moves a run from its old to its new state.
func (t *tally) update(old, cur runstore.Entry) {
	t.add(old, -1)
	t.add(cur, +1)
}

// of is a copy of the instance's tally.
func (t *tally) of(key string) instanceTally {
	t.mu.Lock()
	defer t.mu.Unlock()
	if it := t.by[key]; it != nil {
		return *it
	}
	return instanceTally{}
}

// historyDue reports whether runcache.Expire may find something to do for
// the instance: more kept finished runs than a history limit allows, or a
// kept finished run with a TTL (its own, or the instance's). When it is
// false, Expire would delete nothing and set no timer, so the sync skips
// reading the instance's runs.
func (it instanceTally) historyDue(inst *v1alpha1.SympoziumInstance) bool {
	kept := it.KeptSucceeded + it.KeptFailed
	switch {
	case kept > phase.HistoryLimit(inst):
		return true
	case inst.Spec.SuccessfulRunsHistoryLimit != nil && it.KeptSucceeded > int(max(0, *inst.Spec.SuccessfulRunsHistoryLimit)):
		return true
	case inst.Spec.FailedRunsHistoryLimit != nil && it.KeptFailed > int(max(0, *inst.Spec.FailedRunsHistoryLimit)):
		return true
	case it.KeptWithTTL > 0:
		return true
	case inst.Spec.RunTTLSecondsAfterFinished != nil && kept > 0:
		return true
	}
	return false
}
