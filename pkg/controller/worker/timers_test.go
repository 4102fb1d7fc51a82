package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/tools/cache"
	testingclock "k8s.io/utils/clock/testing"
)

func tk(name string) cache.ObjectName { return cache.ObjectName{Namespace: "ns", Name: name} }

// runTimers runs ts on its own goroutine; the keys it hands over come out
// of the returned channel. The run is stopped at the end of the test.
func runTimers(t *testing.T, ts *Timers) <-chan cache.ObjectName {
	t.Helper()
	fired := make(chan cache.ObjectName, 64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { ts.Run(ctx, func(k cache.ObjectName) { fired <- k }) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return fired
}

// receive returns the next n keys handed over.
func receive(t *testing.T, fired <-chan cache.ObjectName, n int) []string {
	t.Helper()
	var out []string
	for range n {
		select {
		case k := <-fired:
			out = append(out, k.Name)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v handed over, %d expected", out, n)
		}
	}
	return out
}

// waitArmed waits until the set, the fake clock's one user, waits on its
// timer: it has handed over what was due and found the rest not due.
func waitArmed(t *testing.T, clk *testingclock.FakeClock) {
	t.Helper()
	require.Eventually(t, clk.HasWaiters, 10*time.Second, time.Millisecond)
}

func TestTimersEarliestTimeWins(t *testing.T) {
	clk := testingclock.NewFakeClock(tq)
	ts := NewTimers(clk)
	at := func(d time.Duration) time.Time { return tq.Add(d * time.Second) }

	ts.Schedule(tk("earlier"), at(10))
	ts.Schedule(tk("earlier"), at(5)) // moves it to 5
	ts.Schedule(tk("later"), at(10))
	ts.Schedule(tk("later"), at(20)) // ignored: stays at 10
	ts.Schedule(tk("s"), at(7))
	ts.Schedule(tk("t"), at(15))
	assert.Equal(t, 4, ts.Len(), "one entry per key")

	fired := runTimers(t, ts)
	clk.Step(20 * time.Second)
	assert.Equal(t, []string{"earlier", "s", "later", "t"}, receive(t, fired, 4))
	assert.Zero(t, ts.Len())
}

func TestTimersFireInOrderOfTimeThenName(t *testing.T) {
	clk := testingclock.NewFakeClock(tq)
	ts := NewTimers(clk)
	ts.Schedule(tk("c"), tq.Add(3*time.Second))
	ts.Schedule(tk("b"), tq.Add(time.Second))
	ts.Schedule(cache.ObjectName{Namespace: "a", Name: "z"}, tq.Add(time.Second))
	ts.Schedule(tk("a"), tq.Add(time.Second))
	fired := runTimers(t, ts)
	clk.Step(3 * time.Second)
	assert.Equal(t, []string{"z", "a", "b", "c"}, receive(t, fired, 4))
}

// A key is not handed over before its time, on the fake clock, and a time
// already passed is handed over at once.
func TestTimersWaitForTheClock(t *testing.T) {
	clk := testingclock.NewFakeClock(tq)
	ts := NewTimers(clk)
	fired := runTimers(t, ts)

	ts.Schedule(tk("past"), tq.Add(-time.Second))
	assert.Equal(t, []string{"past"}, receive(t, fired, 1), "without a step")

	ts.Schedule(tk("k"), tq.Add(5*time.Second))
	ts.Schedule(tk("s"), tq.Add(4*time.Second))
	waitArmed(t, clk)
	clk.Step(4 * time.Second)
	assert.Equal(t, []string{"s"}, receive(t, fired, 1))
	waitArmed(t, clk) // armed for k: found it not due
	assert.Empty(t, fired, "k handed over a second early")
	assert.Equal(t, 1, ts.Len())

	// An earlier time than the one armed is taken up while Run waits.
	ts.Schedule(tk("k"), tq.Add(4500*time.Millisecond))
	clk.Step(500 * time.Millisecond)
	assert.Equal(t, []string{"k"}, receive(t, fired, 1))
	assert.Zero(t, ts.Len())
}

func TestTimersCancel(t *testing.T) {
	clk := testingclock.NewFakeClock(tq)
	ts := NewTimers(clk)
	fired := runTimers(t, ts)
	ts.Schedule(tk("a"), tq.Add(time.Second))
	ts.Schedule(tk("b"), tq.Add(2*time.Second))
	ts.Schedule(tk("c"), tq.Add(3*time.Second))
	waitArmed(t, clk) // armed for a
	assert.True(t, ts.Cancel(tk("a")), "the earliest, armed")
	assert.True(t, ts.Cancel(tk("b")))
	assert.False(t, ts.Cancel(tk("a")), "cancelled already")
	assert.False(t, ts.Cancel(tk("x")), "never scheduled")
	assert.Equal(t, 1, ts.Len())
	clk.Step(3 * time.Second)
	assert.Equal(t, []string{"c"}, receive(t, fired, 1), "a and b would come first")
	assert.Zero(t, ts.Len())

	// A cancelled key scheduled again waits for its new time.
	ts.Schedule(tk("a"), tq.Add(10*time.Second))
	ts.Cancel(tk("a"))
	ts.Schedule(tk("a"), tq.Add(20*time.Second))
	ts.Schedule(tk("s"), tq.Add(15*time.Second))
	clk.Step(12 * time.Second) // to 15s
	assert.Equal(t, []string{"s"}, receive(t, fired, 1))
	waitArmed(t, clk)
	assert.Empty(t, fired)
}

func TestTimersShutDown(t *testing.T) {
	t.Run("ShutDown stops Run and drops every key", func(t *testing.T) {
		clk := testingclock.NewFakeClock(tq)
		ts := NewTimers(clk)
		ts.Schedule(tk("a"), tq.Add(time.Second))
		returned := make(chan struct{})
		go func() {
			ts.Run(context.Background(), func(cache.ObjectName) { t.Error("handed over after ShutDown") })
			close(returned)
		}()
		waitArmed(t, clk)
		ts.ShutDown()
		select {
		case <-returned:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		assert.Zero(t, ts.Len())
		assert.False(t, clk.HasWaiters(), "timer left armed")
		ts.Schedule(tk("b"), tq)
		assert.Zero(t, ts.Len(), "scheduled after ShutDown")
		ts.ShutDown() // twice is fine
		clk.Step(time.Minute)
	})
	t.Run("the end of the context shuts the set down", func(t *testing.T) {
		clk := testingclock.NewFakeClock(tq)
		ts := NewTimers(clk)
		ts.Schedule(tk("a"), tq.Add(time.Second))
		ctx, cancel := context.WithCancel(context.Background())
		returned := make(chan struct{})
		go func() {
			ts.Run(ctx, func(cache.ObjectName) {})
			close(returned)
		}()
		waitArmed(t, clk)
		cancel()
		select {
		case <-returned:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		assert.Zero(t, ts.Len())
		ts.Schedule(tk("b"), tq.Add(time.Second))
		assert.Zero(t, ts.Len(), "scheduled after Run returned")
	})
}

// fire may schedule and cancel: it runs without the set's lock.
func TestTimersFireMayScheduleAgain(t *testing.T) {
	clk := testingclock.NewFakeClock(tq)
	ts := NewTimers(clk)
	fired := make(chan cache.ObjectName, 8)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		ts.Run(ctx, func(k cache.ObjectName) {
			ts.Cancel(tk("other"))
			ts.Schedule(k, clk.Now().Add(time.Second))
			fired <- k
		})
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	ts.Schedule(tk("a"), tq)
	assert.Equal(t, []string{"a"}, receive(t, fired, 1))
	waitArmed(t, clk)
	clk.Step(time.Second)
	assert.Equal(t, []string{"a"}, receive(t, fired, 1))
	assert.Equal(t, 1, ts.Len())
}

// A key's time set again, or a key scheduled and cancelled, allocates at
// most its entry: the set is cheap to keep for every live run.
func TestTimersAllocations(t *testing.T) {
	ts := NewTimers(testingclock.NewFakeClock(tq))
	for i := range 100 {
		ts.Schedule(tk(fmt.Sprint(i)), tq.Add(time.Hour))
	}
	k := tk("50")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		ts.Schedule(k, tq.Add(2*time.Hour))
		ts.Schedule(k, tq.Add(time.Minute))
	}))
	n := tk("new")
	assert.LessOrEqual(t, testing.AllocsPerRun(100, func() {
		ts.Schedule(n, tq.Add(time.Minute))
		ts.Cancel(n)
	}), 1.0)
}

// Schedules and cancels from many goroutines while Run hands keys over on
// the real clock: a key whose Cancel said it was pending is never handed
// over, every other key exactly once (go test -race). Each key is
// scheduled once: scheduled again after it was handed over, it would be
// handed over again.
func TestTimersConcurrent(t *testing.T) {
	ts := NewTimers(nil)
	var mu sync.Mutex
	got := map[cache.ObjectName]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	run.Go(func() {
		ts.Run(ctx, func(k cache.ObjectName) {
			mu.Lock()
			got[k]++
			mu.Unlock()
		})
	})
	const goroutines, perG = 8, 200
	var wg sync.WaitGroup
	cancelled := make([][]cache.ObjectName, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 0))
			for i := range perG {
				k := cache.ObjectName{Namespace: fmt.Sprint(g), Name: fmt.Sprint(i)}
				at := time.Now().Add(time.Duration(r.IntN(20)) * time.Millisecond)
				ts.Schedule(k, at)
				if r.IntN(3) == 0 && ts.Cancel(k) {
					cancelled[g] = append(cancelled[g], k)
				}
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool { return ts.Len() == 0 }, 10*time.Second, time.Millisecond)
	cancel()
	run.Wait()

	want := map[cache.ObjectName]int{}
	for g := range goroutines {
		for i := range perG {
			want[cache.ObjectName{Namespace: fmt.Sprint(g), Name: fmt.Sprint(i)}] = 1
		}
		for _, k := range cancelled[g] {
			delete(want, k)
		}
	}
	assert.NotEmpty(t, cancelled[0], "some keys cancelled")
	assert.Equal(t, want, got)
}

// A set that held many keys gives its storage back once it is empty, by
// cancels or by keys handed over; a small one keeps it for reuse.
func TestTimersReleaseStorageWhenEmpty(t *testing.T) {
	clk := testingclock.NewFakeClock(tq)
	ts := NewTimers(clk)
	for i := range 2 * releaseAbove {
		ts.Schedule(tk(fmt.Sprint(i)), tq.Add(time.Duration(i)*time.Millisecond))
	}
	for i := range 2*releaseAbove - 1 {
		ts.Cancel(tk(fmt.Sprint(i)))
	}
	require.Equal(t, 1, ts.Len())
	assert.Greater(t, cap(ts.pending), releaseAbove, "kept while not empty")
	ts.Cancel(tk(fmt.Sprint(2*releaseAbove - 1)))
	assert.Zero(t, cap(ts.pending), "released by the last cancel")

	for i := range 2 * releaseAbove {
		ts.Schedule(tk(fmt.Sprint(i)), tq)
	}
	fired := runTimers(t, ts)
	receive(t, fired, 2*releaseAbove)
	ts.mu.Lock()
	assert.Zero(t, cap(ts.pending), "released once all were handed over")
	ts.mu.Unlock()

	ts.Schedule(tk("a"), tq.Add(time.Hour))
	ts.Cancel(tk("a"))
	ts.mu.Lock()
	assert.NotZero(t, cap(ts.pending), "a small set keeps its storage")
	ts.mu.Unlock()
}
