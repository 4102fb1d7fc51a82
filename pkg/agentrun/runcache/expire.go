package runcache

import (
	"sort"
	"time"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Expiry is what an instance's history policy deletes now, and when it
// must look again.
type Expiry struct {
	// Delete are the finished runs to delete, oldest finished first.
	Delete []HistoryRun
	// RequeueAfter is when the next finished run's TTL runs out; 0 for
	// none. The instance controller wakes itself with AddAfter: no polling.
	RequeueAfter time.Duration
}

// TTL is how long a finished run is kept after it finished: its
// spec.ttlSecondsAfterFinished, else the instance's
// runTTLSecondsAfterFinished; ok is false when neither is set.
func TTL(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance) (time.Duration, bool) {
	return ttl(run.Spec.TTLSecondsAfterFinished, inst)
}

func ttl(own *int32, inst *v1alpha1.SympoziumInstance) (time.Duration, bool) {
	switch {
	case own != nil:
		return time.Duration(max(0, *own)) * time.Second, true
	case inst != nil && inst.Spec.RunTTLSecondsAfterFinished != nil:
		return time.Duration(max(0, *inst.Spec.RunTTLSecondsAfterFinished)) * time.Second, true
	}
	return 0, false
}

// Expire applies an instance's whole history policy to its runs at now:
// runHistoryLimit over all finished runs (Prune, unchanged), then
// successfulRunsHistoryLimit and failedRunsHistoryLimit over each outcome
// when set, then each finished run's TTL counted from its completedAt. Live
// runs, runs being deleted and finished parents of live runs are never
// chosen; a run is listed once.
func Expire(runs []HistoryRun, inst *v1alpha1.SympoziumInstance, now time.Time) Expiry {
	var x Expiry
	chosen := map[string]bool{}
	add := func(rs []HistoryRun) {
		for _, r := range rs {
			if !chosen[r.Name] {
				chosen[r.Name] = true
				x.Delete = append(x.Delete, r)
			}
		}
	}
	add(Prune(runs, phase.HistoryLimit(inst)))
	if inst != nil {
		for _, lim := range []struct {
			phase v1alpha1.AgentRunPhase
			limit *int32
		}{
			{v1alpha1.PhaseSucceeded, inst.Spec.SuccessfulRunsHistoryLimit},
			{v1alpha1.PhaseFailed, inst.Spec.FailedRunsHistoryLimit},
		} {
			if lim.limit != nil {
				add(Prune(outcome(runs, lim.phase), int(*lim.limit)))
			}
		}
	}
	liveParents := liveParentNames(runs)
	var expired []HistoryRun
	for _, r := range runs {
		if r.Deleting || !r.Phase.IsTerminal() || chosen[r.Name] || liveParents[r.Name] {
			continue
		}
		ttl, ok := r.ttl(inst)
		if !ok {
			continue
		}
		at := r.finishedAt().Add(ttl)
		if !now.Before(at) {
			expired = append(expired, r)
			continue
		}
		if d := at.Sub(now); x.RequeueAfter == 0 || d < x.RequeueAfter {
			x.RequeueAfter = d
		}
	}
	sort.Slice(expired, func(i, j int) bool { return finishedBefore(&expired[i], &expired[j]) })
	add(expired)
	if x.RequeueAfter > 0 && x.RequeueAfter < phase.MinRequeue {
		x.RequeueAfter = phase.MinRequeue
	}
	return x
}

// outcome keeps the live runs (so that Prune protects their parents) and
// the finished runs of phase p.
func outcome(runs []HistoryRun, p v1alpha1.AgentRunPhase) []HistoryRun {
	var out []HistoryRun
	for _, r := range runs {
		if !r.Phase.IsTerminal() || r.Phase == p {
			out = append(out, r)
		}
	}
	return out
}

func liveParentNames(runs []HistoryRun) map[string]bool {
	live := map[string]bool{}
	for _, r := range runs {
		if !r.Deleting && !r.Phase.IsTerminal() && r.Parent != "" {
			live[r.Parent] = true
		}
	}
	return live
}

// ttl is TTL of the run r describes.
func (r *HistoryRun) ttl(inst *v1alpha1.SympoziumInstance) (time.Duration, bool) {
	var own *int32
	if r.HasTTL {
		own = &r.TTL
	}
	return ttl(own, inst)
}
