package runcache

import (
	"container/heap"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// HistoryRun is what an instance's history policy and counts read of a
// run (Count, Prune, Expire): a value, built from a live run (HistoryOf) or
// from a finished run's record (FinishedRun.History) without expanding it,
// so that going over 50,000 runs allocates one slice, not 50,000 runs.
type HistoryRun struct {
	Name string
	uid  runUID // UID() builds the string, for the few runs deleted
	// Phase is status.phase.
	Phase v1alpha1.AgentRunPhase
	// Parent is spec.parent.runName ("" for a run that is no sub-agent).
	Parent string
	// Created is the creation timestamp; Completed status.completedAt
	// (zero when unset).
	Created, Completed time.Time
	// TTL is spec.ttlSecondsAfterFinished, when HasTTL.
	TTL      int32
	HasTTL   bool
	Deleting bool
}

// HistoryOf is what the history policy reads of r.
func HistoryOf(r *v1alpha1.AgentRun) HistoryRun {
	h := HistoryRun{Name: r.Name, uid: uidOf(r.UID), Phase: r.Status.Phase, Created: r.CreationTimestamp.Time,
		Deleting: r.DeletionTimestamp != nil}
	if r.Spec.Parent != nil {
		h.Parent = r.Spec.Parent.RunName
	}
	if r.Status.CompletedAt != nil {
		h.Completed = r.Status.CompletedAt.Time
	}
	if r.Spec.TTLSecondsAfterFinished != nil {
		h.TTL, h.HasTTL = *r.Spec.TTLSecondsAfterFinished, true
	}
	return h
}

// History is what the history policy reads of the finished run f records.
func (f *FinishedRun) History() HistoryRun {
	h := HistoryRun{Name: f.Name, uid: f.runUID(), Phase: f.Phase(), Created: f.creationTimestamp().Time, Parent: f.ParentName(),
		Deleting: f.Deleting(), TTL: f.TTL, HasTTL: f.flags&flagTTL != 0}
	switch m := f.moreOrNone(); {
	case f.flags&flagCompleted != 0:
		h.Completed = unpackTime(f.completed, f.flags&flagCompletedUTC != 0).Time
	case m.CompletedAt != nil:
		h.Completed = m.CompletedAt.Time
	}
	return h
}

// UID is the run's metadata.uid.
func (r *HistoryRun) UID() types.UID { return r.uid.value() }

// InstanceCounts are the run counts an instance reports in its status.
type InstanceCounts struct {
	Active, Waiting, Succeeded, Failed int32
}

// Count counts an instance's runs by state.
func Count(runs []HistoryRun) InstanceCounts {
	var c InstanceCounts
	for _, r := range runs {
		switch {
		case r.Phase == v1alpha1.PhaseSucceeded:
			c.Succeeded++
		case r.Phase == v1alpha1.PhaseFailed:
			c.Failed++
		case r.Phase == v1alpha1.PhaseRunning || r.Phase == v1alpha1.PhaseServing:
			c.Active++
		default:
			c.Waiting++
		}
	}
	return c
}

// Prune returns the finished runs to delete so that at most limit finished
// runs of an instance remain, oldest finished first. Live runs are never
// chosen, nor a finished run that is the parent of a live run (deleting it
// would remove the live child through garbage collection).
func Prune(runs []HistoryRun, limit int) []HistoryRun {
	if limit < 0 {
		limit = 0
	}
	liveParents := map[string]bool{}
	var finished []HistoryRun
	for _, r := range runs {
		if r.Deleting {
			continue
		}
		if !r.Phase.IsTerminal() {
			if r.Parent != "" {
				liveParents[r.Parent] = true
			}
			continue
		}
		finished = append(finished, r)
	}
	if len(finished) <= limit {
		return nil
	}
	excess := len(finished) - limit
	eligible := finished[:0]
	for _, r := range finished {
		if !liveParents[r.Name] {
			eligible = append(eligible, r)
		}
	}
	return oldestFinished(eligible, excess)
}

// oldestFinished returns the n runs of rs that finished first, in that
// order. Pruning a long history deletes a few runs at a time, so rather
// than sorting the whole history it keeps the n oldest seen in a bounded
// heap: O(len(rs)·log n).
func oldestFinished(rs []HistoryRun, n int) []HistoryRun {
	if n <= 0 {
		return nil
	}
	if n >= len(rs) {
		out := slices.Clone(rs)
		sort.Slice(out, func(i, j int) bool { return finishedBefore(&out[i], &out[j]) })
		return out
	}
	// h is a max-heap (by finishedBefore) of the n oldest so far: its root
	// is the youngest of them, the one a still older run replaces.
	h := &newestFirst{}
	for _, r := range rs {
		switch {
		case len(*h) < n:
			heap.Push(h, r)
		case finishedBefore(&r, &(*h)[0]):
			(*h)[0] = r
			heap.Fix(h, 0)
		}
	}
	out := []HistoryRun(*h)
	sort.Slice(out, func(i, j int) bool { return finishedBefore(&out[i], &out[j]) })
	return out
}

// newestFirst is a heap of runs whose root finished last.
type newestFirst []HistoryRun

func (h newestFirst) Len() int           { return len(h) }
func (h newestFirst) Less(i, j int) bool { return finishedBefore(&h[j], &h[i]) }
func (h newestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *newestFirst) Push(x any)        { *h = append(*h, x.(HistoryRun)) }
func (h *newestFirst) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

func finishedBefore(a, b *HistoryRun) bool {
	ta, tb := a.finishedAt(), b.finishedAt()
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.Name < b.Name
}

// finishedAt is when the run finished: completedAt, else (a status written
// by an older controller) its creation.
func (r *HistoryRun) finishedAt() time.Time {
	if !r.Completed.IsZero() {
		return r.Completed
	}
	return r.Created
}
