package runcache

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func historyRun(i int, p v1alpha1.AgentRunPhase, completed time.Duration) *v1alpha1.AgentRun {
	r := newRun(func(r *v1alpha1.AgentRun) {
		r.Name = fmt.Sprintf("r%02d", i)
		r.UID = types.UID(r.Name)
		r.CreationTimestamp = metav1.NewTime(t0.Add(time.Duration(i) * time.Second))
		r.Status.Phase = p
		if p.IsTerminal() {
			r.Status.CompletedAt = new(metav1.NewTime(t0.Add(completed)))
		}
	})
	return r
}

// histories is HistoryOf each run.
func histories(runs []*v1alpha1.AgentRun) []HistoryRun {
	out := make([]HistoryRun, len(runs))
	for i, r := range runs {
		out[i] = HistoryOf(r)
	}
	return out
}

func names(rs []HistoryRun) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestPrune(t *testing.T) {
	var runs []*v1alpha1.AgentRun
	// 55 finished runs completing in reverse creation order, 3 live ones.
	for i := range 55 {
		runs = append(runs, historyRun(i, v1alpha1.PhaseSucceeded, time.Duration(100-i)*time.Minute))
	}
	for i := 55; i < 58; i++ {
		runs = append(runs, historyRun(i, v1alpha1.PhaseRunning, 0))
	}
	got := Prune(histories(runs), 50)
	// The five that completed first: r54..r50.
	assert.Equal(t, []string{"r54", "r53", "r52", "r51", "r50"}, names(got))
	assert.Nil(t, Prune(histories(runs[:50]), 50))
	assert.Len(t, Prune(histories(runs), 0), 55)
	for _, r := range Prune(histories(runs), 0) {
		assert.True(t, r.Phase.IsTerminal())
	}
}

func TestPruneKeepsParentsOfLiveRuns(t *testing.T) {
	a := historyRun(1, v1alpha1.PhaseSucceeded, time.Minute)
	b := historyRun(2, v1alpha1.PhaseFailed, 2*time.Minute)
	c := historyRun(3, v1alpha1.PhaseSucceeded, 3*time.Minute)
	child := historyRun(4, v1alpha1.PhasePending, 0)
	child.Spec.Parent = &v1alpha1.ParentRef{RunName: a.Name, SpawnDepth: 1}
	assert.Equal(t, []string{"r02"}, names(Prune(histories([]*v1alpha1.AgentRun{a, b, c, child}), 2)))
}

func TestPruneSkipsRunsBeingDeleted(t *testing.T) {
	a := historyRun(1, v1alpha1.PhaseSucceeded, time.Minute)
	a.DeletionTimestamp = new(metav1.NewTime(now))
	b := historyRun(2, v1alpha1.PhaseSucceeded, 2*time.Minute)
	c := historyRun(3, v1alpha1.PhaseSucceeded, 3*time.Minute)
	assert.Equal(t, []string{"r02"}, names(Prune(histories([]*v1alpha1.AgentRun{a, b, c}), 1)))
}

func TestCount(t *testing.T) {
	runs := []*v1alpha1.AgentRun{
		historyRun(1, v1alpha1.PhaseSucceeded, time.Minute), historyRun(2, v1alpha1.PhaseFailed, time.Minute),
		historyRun(3, v1alpha1.PhaseRunning, 0), historyRun(4, v1alpha1.PhasePending, 0), historyRun(5, "", 0),
		historyRun(6, v1alpha1.PhaseServing, 0),
	}
	assert.Equal(t, InstanceCounts{Active: 2, Waiting: 2, Succeeded: 1, Failed: 1}, Count(histories(runs)))
}

// pruneBySorting is what Prune computes, the obvious way: sort every
// finished run, take the oldest that are not parents of live runs.
func pruneBySorting(runs []*v1alpha1.AgentRun, limit int) []HistoryRun {
	liveParents := map[string]bool{}
	var finished []HistoryRun
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
		finished = append(finished, HistoryOf(r))
	}
	if len(finished) <= max(limit, 0) {
		return nil
	}
	sort.Slice(finished, func(i, j int) bool { return finishedBefore(&finished[i], &finished[j]) })
	var out []HistoryRun
	for _, r := range finished {
		if len(out) == len(finished)-max(limit, 0) {
			break
		}
		if !liveParents[r.Name] {
			out = append(out, r)
		}
	}
	return out
}

// historyOf is n runs of random phases, completion times (with ties) and
// parents.
func historyOf(rng *rand.Rand, n int) []*v1alpha1.AgentRun {
	phases := []v1alpha1.AgentRunPhase{v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed, v1alpha1.PhaseRunning, v1alpha1.PhasePending}
	runs := make([]*v1alpha1.AgentRun, n)
	for i := range runs {
		runs[i] = historyRun(i, phases[rng.IntN(len(phases))], time.Duration(rng.IntN(n/2+1))*time.Minute)
		if rng.IntN(10) == 0 {
			runs[i].Spec.Parent = &v1alpha1.ParentRef{RunName: fmt.Sprintf("r%02d", rng.IntN(n))}
		}
		if rng.IntN(20) == 0 {
			runs[i].DeletionTimestamp = new(metav1.NewTime(t0))
		}
	}
	rng.Shuffle(n, func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
	return runs
}

// Prune selects the oldest with a bounded heap; it chooses exactly what
// sorting the whole history would, in the same order.
func TestPruneSelectsAsSorting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		n := 1 + rng.IntN(60)
		runs := historyOf(rng, n)
		limit := rng.IntN(n+2) - 1
		assert.Equal(t, names(pruneBySorting(runs, limit)), names(Prune(histories(runs), limit)), "limit %d of %d runs", limit, n)
	}
}

// BenchmarkPrune50k: one pruning pass over an instance with 50,000
// finished runs, 10 over the limit.
//
//	go test -run XXX -bench Prune50k -benchmem ./pkg/agentrun/phase
func BenchmarkPrune50k(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	runs := make([]*v1alpha1.AgentRun, 50000)
	for i := range runs {
		runs[i] = historyRun(i, v1alpha1.PhaseSucceeded, time.Duration(rng.IntN(1000000))*time.Second)
	}
	hist := histories(runs)
	b.Run("heap", func(b *testing.B) {
		for b.Loop() {
			Prune(hist, 49990)
		}
	})
	b.Run("sort", func(b *testing.B) {
		for b.Loop() {
			pruneBySorting(runs, 49990)
		}
	})
}
