package worker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	testingclock "k8s.io/utils/clock/testing"
)

var tq = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ranks is a Rank over a map: keys with a time are front keys, created
// then; the others (a deleted run) are not.
type ranks struct {
	mu sync.Mutex
	at map[string]time.Time
}

func newRanks() *ranks { return &ranks{at: map[string]time.Time{}} }

func (r *ranks) set(key string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at[key] = at
}

func (r *ranks) drop(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.at, key)
}

func (r *ranks) rank(k cache.ObjectName) (bool, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.at[k.String()]
	return ok, at
}

func key(s string) cache.ObjectName {
	k, err := cache.ParseObjectName(s)
	if err != nil {
		panic(err)
	}
	return k
}

func popAll(q *FrontQueue) []string {
	var out []string
	for q.Len() > 0 {
		out = append(out, q.Pop().String())
	}
	return out
}

func TestFrontQueueServesFrontKeysOldestFirstThenTheRestInOrder(t *testing.T) {
	r := newRanks()
	r.set("ns/new", tq.Add(2*time.Second))
	r.set("ns/old", tq)
	r.set("b/same", tq.Add(time.Second))
	r.set("a/same", tq.Add(time.Second))
	r.set("a/earlier", tq.Add(time.Second))
	q := NewFrontQueue(r.rank)
	for _, k := range []string{"ns/status-1", "ns/new", "ns/status-2", "b/same", "a/same", "ns/gone", "a/earlier", "ns/old", "ns/status-3"} {
		q.Push(key(k))
	}
	assert.Equal(t, 9, q.Len())
	assert.Equal(t, 5, q.FrontLen())
	assert.Equal(t, []string{
		"ns/old", "a/earlier", "a/same", "b/same", "ns/new", // creation time, then namespace, then name
		"ns/status-1", "ns/status-2", "ns/gone", "ns/status-3", // as they came
	}, popAll(q))
	assert.Empty(t, q.queued)
}

func TestFrontQueueTouchRanksAgain(t *testing.T) {
	r := newRanks()
	q := NewFrontQueue(r.rank)
	r.set("ns/a", tq)
	r.set("ns/b", tq.Add(time.Second))
	for _, k := range []string{"ns/x", "ns/a", "ns/y", "ns/b", "ns/z"} {
		q.Push(key(k))
	}

	// A front key that is not one any more (admitted meanwhile, or
	// deleted) goes behind the others.
	r.drop("ns/a")
	q.Touch(key("ns/a"))
	// One of the others that became a front key (recreated under the
	// same name) goes in front, by its time.
	r.set("ns/y", tq.Add(500*time.Millisecond))
	q.Touch(key("ns/y"))
	// A key that stays among the others keeps its place.
	q.Touch(key("ns/x"))
	// A front key whose time changed (deleted and created again) moves.
	r.set("ns/b", tq)
	q.Touch(key("ns/b"))
	// A key that is not queued is ignored.
	q.Touch(key("ns/unknown"))

	assert.Equal(t, []string{"ns/b", "ns/y", "ns/x", "ns/z", "ns/a"}, popAll(q))
}

func TestFrontQueueDoesNotStarveTheRest(t *testing.T) {
	r := newRanks()
	q := NewFrontQueue(r.rank)
	q.MaxStreak = 3
	// Three keys of the rest wait while front keys keep coming, each older
	// than all the rest (a worst case: they always sort first).
	for _, k := range []string{"ns/status-1", "ns/status-2", "ns/status-3"} {
		q.Push(key(k))
	}
	served := map[string]int{}
	next := 0
	push := func() {
		k := fmt.Sprintf("ns/new-%03d", next)
		r.set(k, tq.Add(-time.Duration(next)*time.Second))
		q.Push(key(k))
		next++
	}
	for range 5 {
		push()
	}
	for pop := 1; pop <= 40; pop++ {
		served[q.Pop().String()] = pop
		push()
	}
	// The n-th of the rest is served within n×(MaxStreak+1) pops.
	assert.Equal(t, 4, served["ns/status-1"])
	assert.Equal(t, 8, served["ns/status-2"])
	assert.Equal(t, 12, served["ns/status-3"])

	// Once the rest is empty, front keys are served without a bound, and a
	// key of the rest that arrives then waits at most MaxStreak pops.
	for range 10 {
		require.Equal(t, "ns/new-", q.Pop().String()[:7])
		push()
	}
	q.Push(key("ns/status-4"))
	var order []string
	for range 4 {
		order = append(order, q.Pop().String())
	}
	assert.Equal(t, "ns/status-4", order[3], "after MaxStreak front keys: %v", order)
}

// TestFrontQueueInTheWorkqueue checks what FrontQueue relies on in
// client-go's workqueue: Push for a new key, Touch for a key added again
// while it is queued, Push again (ranked anew) for a key added while it is
// processed, once it is done; delays and rate limits go through it too.
func TestFrontQueueInTheWorkqueue(t *testing.T) {
	r := newRanks()
	clk := testingclock.NewFakeClock(tq)
	front := NewFrontQueue(r.rank)
	w := NewWithQueue("test", nil, clk, front, nil)
	q := w.Queue
	defer q.ShutDown()

	r.set("ns/fresh", tq)
	q.Add(key("ns/status"))
	q.Add(key("ns/fresh"))
	assert.Equal(t, 1, front.FrontLen())
	// Added again while queued: Touch ranks it again, no duplicate.
	r.drop("ns/fresh")
	q.Add(key("ns/fresh"))
	assert.Equal(t, 2, q.Len())
	assert.Equal(t, 0, front.FrontLen(), "touched: not a front key any more")
	r.set("ns/fresh", tq)
	q.Add(key("ns/fresh"))
	assert.Equal(t, 1, front.FrontLen(), "touched: a front key again")

	k, _ := q.Get()
	assert.Equal(t, "ns/fresh", k.String())
	// Added while processing: no Push until Done, then ranked anew.
	q.Add(k)
	assert.Equal(t, 1, q.Len())
	r.drop("ns/fresh")
	q.Done(k)
	assert.Equal(t, 2, q.Len())
	assert.Equal(t, 0, front.FrontLen())
	for _, want := range []string{"ns/status", "ns/fresh"} {
		k, _ := q.Get()
		assert.Equal(t, want, k.String())
		q.Done(k)
	}

	// A delayed key is pushed when its time comes.
	r.set("ns/later", tq)
	q.Add(key("ns/status"))
	q.AddAfter(key("ns/later"), time.Second)
	require.Eventually(t, func() bool { clk.Step(100 * time.Millisecond); return q.Len() == 2 }, 5*time.Second, time.Millisecond)
	k, _ = q.Get()
	assert.Equal(t, "ns/later", k.String())
	q.Done(k)
}

// TestQueueMetrics: a Worker's queue over a FrontQueue reports its depth,
// adds and retries under its name, as the plain FIFO queue does.
func TestQueueMetrics(t *testing.T) {
	for name, q := range map[string]workqueue.Queue[cache.ObjectName]{
		"fifo":  nil,
		"front": NewFrontQueue(func(cache.ObjectName) (bool, time.Time) { return true, tq }),
	} {
		t.Run(name, func(t *testing.T) {
			m := newFakeMetrics()
			clk := testingclock.NewFakeClock(tq)
			queue := newQueue("agentrun", nil, clk, q, m)
			defer queue.ShutDown()
			queue.Add(key("ns/a"))
			queue.Add(key("ns/b"))
			queue.Add(key("ns/a"))
			assert.Equal(t, 2.0, m.get("depth/agentrun"))
			assert.Equal(t, 2.0, m.get("adds/agentrun"))
			k, _ := queue.Get()
			assert.Equal(t, 1.0, m.get("depth/agentrun"))
			queue.AddRateLimited(k)
			queue.Done(k)
			assert.Equal(t, 1.0, m.get("retries/agentrun"))
		})
	}
}

func TestWorkerSyncsInTheQueuesOrder(t *testing.T) {
	r := newRanks()
	r.set("ns/new-2", tq.Add(time.Second))
	r.set("ns/new-1", tq)
	var got []string
	w := NewWithQueue("test", nil, nil, NewFrontQueue(r.rank), func(_ context.Context, k cache.ObjectName) error {
		got = append(got, k.String())
		return nil
	})
	defer w.Queue.ShutDown()
	for _, k := range []string{"ns/status-1", "ns/status-2", "ns/new-2", "ns/new-1"} {
		w.Queue.Add(key(k))
	}
	for range 4 {
		require.True(t, w.ProcessNextWorkItem(context.Background()))
	}
	assert.Equal(t, []string{"ns/new-1", "ns/new-2", "ns/status-1", "ns/status-2"}, got)
}

// fakeMetrics is a workqueue.MetricsProvider that keeps gauges and
// counters by "<metric>/<queue name>".
type fakeMetrics struct {
	mu sync.Mutex
	v  map[string]float64
}

func newFakeMetrics() *fakeMetrics { return &fakeMetrics{v: map[string]float64{}} }

func (m *fakeMetrics) get(k string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v[k]
}

type fakeMetric struct {
	m *fakeMetrics
	k string
}

func (f fakeMetric) add(d float64) { f.m.mu.Lock(); f.m.v[f.k] += d; f.m.mu.Unlock() }
func (f fakeMetric) Inc()          { f.add(1) }
func (f fakeMetric) Dec()          { f.add(-1) }
func (f fakeMetric) Set(v float64) { f.m.mu.Lock(); f.m.v[f.k] = v; f.m.mu.Unlock() }
func (f fakeMetric) Observe(float64) {
}

func (m *fakeMetrics) NewDepthMetric(n string) workqueue.GaugeMetric {
	return fakeMetric{m, "depth/" + n}
}
func (m *fakeMetrics) NewAddsMetric(n string) workqueue.CounterMetric {
	return fakeMetric{m, "adds/" + n}
}
func (m *fakeMetrics) NewLatencyMetric(n string) workqueue.HistogramMetric {
	return fakeMetric{m, "latency/" + n}
}
func (m *fakeMetrics) NewWorkDurationMetric(n string) workqueue.HistogramMetric {
	return fakeMetric{m, "work/" + n}
}
func (m *fakeMetrics) NewUnfinishedWorkSecondsMetric(n string) workqueue.SettableGaugeMetric {
	return fakeMetric{m, "unfinished/" + n}
}
func (m *fakeMetrics) NewLongestRunningProcessorSecondsMetric(n string) workqueue.SettableGaugeMetric {
	return fakeMetric{m, "longest/" + n}
}
func (m *fakeMetrics) NewRetriesMetric(n string) workqueue.CounterMetric {
	return fakeMetric{m, "retries/" + n}
}
