package instance

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

// The tally the run handlers keep agrees, after any sequence of events,
// with a recount of the runs the store holds (runcache.Count), and its
// historyDue with what runcache.Expire finds to do over those runs: skipping
// the history when it says so changes nothing.
func TestTallyMatchesRecount(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	phases := []v1alpha1.AgentRunPhase{"", v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseServing,
		v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed}
	limit := func() *int32 {
		if rng.IntN(2) == 0 {
			return nil
		}
		return new(int32(rng.IntN(6) - 1))
	}
	for round := range 200 {
		f := newFixture(t)
		now := f.clock.Now()
		inst := newInstance(func(i *v1alpha1.SympoziumInstance) {
			i.Spec.RunHistoryLimit, i.Spec.SuccessfulRunsHistoryLimit, i.Spec.FailedRunsHistoryLimit = limit(), limit(), limit()
			if rng.IntN(4) == 0 {
				i.Spec.RunTTLSecondsAfterFinished = new(int32(rng.IntN(120)))
			}
		})
		store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
		randomRun := func() *v1alpha1.AgentRun {
			name := fmt.Sprintf("r%d", rng.IntN(12))
			done := now.Add(-time.Duration(rng.IntN(300)) * time.Second)
			r := newRun(name, t0, phases[rng.IntN(len(phases))], &done)
			if rng.IntN(3) == 0 {
				r.Spec.TTLSecondsAfterFinished = new(int32(rng.IntN(600)))
			}
			if rng.IntN(6) == 0 {
				r.DeletionTimestamp = new(metav1.NewTime(now))
			}
			if rng.IntN(5) == 0 {
				r.Spec.Parent = &v1alpha1.ParentRef{RunName: fmt.Sprintf("r%d", rng.IntN(12))}
			}
			if rng.IntN(8) == 0 {
				r.Spec.InstanceRef = "other"
			}
			return r
		}
		for step := range 60 {
			obj := cached(t, randomRun())
			key, _ := cache.MetaNamespaceKeyFunc(obj)
			old, exists, _ := store.GetByKey(key)
			switch {
			case exists && rng.IntN(4) == 0:
				require.NoError(t, store.Delete(old))
				if rng.IntN(2) == 0 {
					f.c.runEvents.OnDelete(cache.DeletedFinalStateUnknown{Key: key, Obj: old})
				} else {
					f.c.runEvents.OnDelete(old)
				}
			case exists:
				require.NoError(t, store.Update(obj))
				f.c.runEvents.OnUpdate(old, obj)
			default:
				require.NoError(t, store.Add(obj))
				f.c.runEvents.OnAdd(obj, false)
			}

			var runs []runcache.HistoryRun
			var serving int32
			for _, o := range store.List() {
				if _, in, _ := runstore.EntryOf(o).Instance(); in != "inst" {
					continue
				}
				h, _ := runstore.EntryOf(o).History()
				runs = append(runs, h)
				if h.Phase == v1alpha1.PhaseServing {
					serving++
				}
			}
			tl := f.c.tally.of(runstore.InstanceKey(testNS, "inst"))
			at := fmt.Sprintf("round %d step %d", round, step)
			require.Equal(t, runcache.Count(runs), tl.Counts, at)
			require.Equal(t, serving, tl.Serving, at)
			x := runcache.Expire(runs, inst, now)
			if len(x.Delete) > 0 || x.RequeueAfter > 0 {
				require.True(t, tl.historyDue(inst), "%s: Expire has work the tally does not see: %+v", at, x)
			}
		}
	}
}
