package runcache

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func TestExpire(t *testing.T) {
	ttl := func(s int32) func(*v1alpha1.AgentRun) {
		return func(r *v1alpha1.AgentRun) { r.Spec.TTLSecondsAfterFinished = new(s) }
	}
	with := func(r *v1alpha1.AgentRun, opts ...func(*v1alpha1.AgentRun)) *v1alpha1.AgentRun {
		for _, o := range opts {
			o(r)
		}
		return r
	}
	inst := func(opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
		return newInstance(opts...)
	}
	limits := func(ok, failed *int32) func(*v1alpha1.SympoziumInstance) {
		return func(i *v1alpha1.SympoziumInstance) {
			i.Spec.SuccessfulRunsHistoryLimit, i.Spec.FailedRunsHistoryLimit = ok, failed
		}
	}
	instTTL := func(s int32) func(*v1alpha1.SympoziumInstance) {
		return func(i *v1alpha1.SympoziumInstance) { i.Spec.RunTTLSecondsAfterFinished = new(s) }
	}
	at := t0.Add(time.Hour) // "now" of every case
	cases := map[string]struct {
		runs    []*v1alpha1.AgentRun
		inst    *v1alpha1.SympoziumInstance
		del     []string
		requeue time.Duration
	}{
		"nothing set: only runHistoryLimit (50), as before": {
			runs: []*v1alpha1.AgentRun{historyRun(1, v1alpha1.PhaseSucceeded, time.Minute), historyRun(2, v1alpha1.PhaseFailed, time.Minute)},
			inst: inst(),
		},
		"run TTL expired and not yet": {
			runs: []*v1alpha1.AgentRun{
				with(historyRun(1, v1alpha1.PhaseSucceeded, 10*time.Minute), ttl(60)),  // expired at t0+11m
				with(historyRun(2, v1alpha1.PhaseFailed, 59*time.Minute), ttl(300)),    // expires at t0+64m
				with(historyRun(3, v1alpha1.PhaseSucceeded, 59*time.Minute), ttl(120)), // expires at t0+61m
			},
			inst: inst(), del: []string{"r01"}, requeue: time.Minute,
		},
		"TTL 0 deletes at once": {
			runs: []*v1alpha1.AgentRun{with(historyRun(1, v1alpha1.PhaseFailed, 60*time.Minute), ttl(0))},
			inst: inst(), del: []string{"r01"},
		},
		"instance TTL is the default, the run's wins": {
			runs: []*v1alpha1.AgentRun{
				historyRun(1, v1alpha1.PhaseSucceeded, 30*time.Minute),                  // instance 600s: expired
				with(historyRun(2, v1alpha1.PhaseSucceeded, 30*time.Minute), ttl(7200)), // run: kept till t0+150m
			},
			inst: inst(instTTL(600)), del: []string{"r01"}, requeue: 90 * time.Minute,
		},
		"a TTL never touches a live run": {
			runs: []*v1alpha1.AgentRun{with(historyRun(1, v1alpha1.PhaseRunning, 0), ttl(0))},
			inst: inst(instTTL(0)),
		},
		"a TTL never deletes the finished parent of a live child": {
			runs: []*v1alpha1.AgentRun{
				with(historyRun(1, v1alpha1.PhaseSucceeded, time.Minute), ttl(0)),
				with(historyRun(2, v1alpha1.PhaseRunning, 0), func(r *v1alpha1.AgentRun) {
					r.Spec.Parent = &v1alpha1.ParentRef{RunName: "r01", SpawnDepth: 1}
				}),
			},
			inst: inst(),
		},
		"separate limits: keep 1 succeeded, 2 failed, oldest finished go": {
			runs: []*v1alpha1.AgentRun{
				historyRun(1, v1alpha1.PhaseSucceeded, 1*time.Minute),
				historyRun(2, v1alpha1.PhaseSucceeded, 2*time.Minute),
				historyRun(3, v1alpha1.PhaseFailed, 3*time.Minute),
				historyRun(4, v1alpha1.PhaseFailed, 4*time.Minute),
				historyRun(5, v1alpha1.PhaseFailed, 5*time.Minute),
				historyRun(6, v1alpha1.PhaseRunning, 0),
			},
			inst: inst(limits(new(int32(1)), new(int32(2)))), del: []string{"r01", "r03"},
		},
		"only the failed limit set: succeeded runs keep runHistoryLimit": {
			runs: []*v1alpha1.AgentRun{
				historyRun(1, v1alpha1.PhaseSucceeded, 1*time.Minute),
				historyRun(2, v1alpha1.PhaseFailed, 2*time.Minute),
			},
			inst: inst(limits(nil, new(int32(0)))), del: []string{"r02"},
		},
		"overall limit and a per-outcome limit choose the same run once": {
			runs: []*v1alpha1.AgentRun{
				historyRun(1, v1alpha1.PhaseFailed, 1*time.Minute),
				historyRun(2, v1alpha1.PhaseFailed, 2*time.Minute),
			},
			inst: inst(limits(nil, new(int32(1))), func(i *v1alpha1.SympoziumInstance) { i.Spec.RunHistoryLimit = new(int32(1)) }),
			del:  []string{"r01"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var before []*v1alpha1.AgentRun
			for _, r := range tc.runs {
				before = append(before, r.DeepCopy())
			}
			x := Expire(histories(tc.runs), tc.inst, at)
			assert.Equal(t, tc.del, names(x.Delete))
			assert.Equal(t, tc.requeue, x.RequeueAfter)
			assert.Equal(t, before, tc.runs, "Expire mutated its input")
			// Idempotent: with the chosen runs gone, nothing more goes.
			var kept []*v1alpha1.AgentRun
			for _, r := range tc.runs {
				if !slices.Contains(names(x.Delete), r.Name) {
					kept = append(kept, r)
				}
			}
			again := Expire(histories(kept), tc.inst, at)
			assert.Empty(t, again.Delete, "a second pass deletes more")
			assert.Equal(t, tc.requeue, again.RequeueAfter)
		})
	}
}
