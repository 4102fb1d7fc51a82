package phase

import "github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"

// The admission policy: who counts ahead of a run waiting for a slot, and
// which limits bind. The controller counts, from its caches, the live runs
// a limit spans (InstanceLoad per instance) under the limit's admission
// lock; what those counts mean for the run deciding is decided here, from
// the counts alone, and table-tested (TestLoadOf).

// Older orders runs by creation, then name: the order in which waiting runs
// are admitted and children are counted.
func Older(a, b *v1alpha1.AgentRun) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// AheadForRunLimit reports whether other, a live run that holds no slot,
// would take a free slot of a run limit before run: it is older, not being
// deleted and not cancelled (a cancelled run never starts).
func AheadForRunLimit(run, other *v1alpha1.AgentRun) bool {
	return other.DeletionTimestamp == nil && !other.Spec.Cancel && Older(other, run)
}

// AheadForSubagentLimit reports whether other, a sub-agent run of the same
// instance that holds no slot, would take a free sub-agent slot before
// run: it is older and not being deleted. A cancelled one counts (it ends
// at its own next sync, and frees its place then).
func AheadForSubagentLimit(run, other *v1alpha1.AgentRun) bool {
	return other.DeletionTimestamp == nil && Older(other, run)
}

// InstanceLoad is what the live runs of one instance count for a run
// limit, as the controller counts them from its caches.
type InstanceLoad struct {
	// Instance is the instance; nil when it is not found (or not looked
	// up: it has no run waiting ahead).
	Instance *v1alpha1.SympoziumInstance
	// Active counts its runs that hold a slot: admitted in the cache,
	// admitted by this controller and not seen yet, or whose workload the
	// cache holds (the controller stopped between creating it and
	// recording it).
	Active int
	// ActiveSubagents counts the sub-agent runs among Active that the
	// cache shows.
	ActiveSubagents int
	// Ahead and AheadSubagents count its runs that hold no slot and are
	// ahead of the run deciding (AheadForRunLimit): runs that are no
	// sub-agent, and sub-agent runs.
	Ahead, AheadSubagents int
}

// LoadOf is the load a run limit is checked against, from the counts of
// the instances it spans by InstanceKey-like key (own is the deciding
// run's): every run holding a slot, and the runs ahead that would take a
// slot first. A run held back by another limit does not count ahead: a run
// of an instance that is not found (it waits for its instance, not for a
// slot), a sub-agent run while its instance's sub-agent slots are taken
// (maxConcurrent), and a run of another instance while that instance's run
// slots are taken (its maxConcurrentRuns).
func LoadOf(own string, instances map[string]InstanceLoad) Load {
	var l Load
	for key, c := range instances {
		l.Active += c.Active
		if c.Instance == nil {
			continue
		}
		if n := MaxConcurrentRuns(c.Instance); key != own && n > 0 && c.Active >= n {
			continue
		}
		l.WaitingAhead += c.Ahead
		if c.ActiveSubagents < int(Limits(c.Instance).MaxConcurrent) {
			l.WaitingAhead += c.AheadSubagents
		}
	}
	return l
}
