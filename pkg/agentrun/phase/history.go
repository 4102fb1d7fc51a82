package phase

import (
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
	sort.Slice(finished, func(i, j int) bool { return finishedBefore(finished[i], finished[j]) })
	excess := len(finished) - limit
	var out []*v1alpha1.AgentRun
	for _, r := range finished {
		if len(out) == excess {
			break
		}
		if liveParents[r.Name] {
			continue
		}
		out = append(out, r)
	}
	return out
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
