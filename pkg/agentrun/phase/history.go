package phase

import (
	"container/heap"
	"slices"
	"sort"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// InstanceCounts are the run counts an instance reports in its status.
type InstanceCounts struct {
	Active, Waiting, Succeeded, Failed int32
}

// Count counts an instance's runs by state.
func Count(runs []*v1alpha1.AgentRun) InstanceCounts {
	var c InstanceCounts
	for _, r := range runs {
		switch {
		case r.Status.Phase == v1alpha1.PhaseSucceeded:
			c.Succeeded++
		case r.Status.Phase == v1alpha1.PhaseFailed:
			c.Failed++
		case r.Status.Phase == v1alpha1.PhaseRunning || r.Status.Phase == v1alpha1.PhaseServing:
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
func Prune(runs []*v1alpha1.AgentRun, limit int) []*v1alpha1.AgentRun {
	if limit < 0 {
		limit = 0
	}
	liveParents := map[string]bool{}
	var finished []*v1alpha1.AgentRun
	for _, r := range runs {
		if r.DeletionTimestamp != nil {
			continue
		}
		if !r.Status.Phase.IsTerminal() {
			if r.Spec.Parent != nil {
				liveParents[r.Spec.Parent.RunName] = true
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
func oldestFinished(rs []*v1alpha1.AgentRun, n int) []*v1alpha1.AgentRun {
	if n <= 0 {
		return nil
	}
	if n >= len(rs) {
		out := slices.Clone(rs)
		sort.Slice(out, func(i, j int) bool { return finishedBefore(out[i], out[j]) })
		return out
	}
	// h is a max-heap (by finishedBefore) of the n oldest so far: its root
	// is the youngest of them, the one a still older run replaces.
	h := &newestFirst{}
	for _, r := range rs {
		switch {
		case len(*h) < n:
			heap.Push(h, r)
		case finishedBefore(r, (*h)[0]):
			(*h)[0] = r
			heap.Fix(h, 0)
		}
	}
	out := []*v1alpha1.AgentRun(*h)
	sort.Slice(out, func(i, j int) bool { return finishedBefore(out[i], out[j]) })
	return out
}

// newestFirst is a heap of runs whose root finished last.
type newestFirst []*v1alpha1.AgentRun

func (h newestFirst) Len() int           { return len(h) }
func (h newestFirst) Less(i, j int) bool { return finishedBefore(h[j], h[i]) }
func (h newestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *newestFirst) Push(x any)        { *h = append(*h, x.(*v1alpha1.AgentRun)) }
func (h *newestFirst) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

func finishedBefore(a, b *v1alpha1.AgentRun) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if a.Status.CompletedAt != nil {
		ta = a.Status.CompletedAt.Time
	}
	if b.Status.CompletedAt != nil {
		tb = b.Status.CompletedAt.Time
	}
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// Older orders runs by creation, then name: the order in which waiting runs
// are admitted and children are counted.
func Older(a, b *v1alpha1.AgentRun) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}
