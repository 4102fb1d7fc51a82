package worker

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// clockSlack is how far the clock may move between reading it and arming
// the timer before Timers reads it again and arms the timer anew: a fake
// clock stepped in that window would otherwise leave the timer late by the
// step (a real clock moves microseconds there, so it rarely loops).
const clockSlack = time.Millisecond

// Timers holds at most one pending time per key and, while Run runs,
// hands each key to a function once its time has come. Unlike a delaying
// workqueue (AddAfter), a key's time can be taken back (Cancel): nothing is
// kept for a key that no longer needs waking.
//
// Schedule keeps the earliest time of a key, as AddAfter does for a key
// already waiting: an earlier time wins, a later one is ignored. Keys that
// are due are handed over in order of their time, then of namespace and
// name.
type Timers struct {
	clock clock.Clock

	mu      sync.Mutex
	pending keyHeap[*timedKey]
	byKey   map[cache.ObjectName]*timedKey
	down    bool

	// earlier tells Run that the earliest pending time moved earlier (one
	// signal is enough: Run reads the heap again).
	earlier chan struct{}
	// done is closed by ShutDown.
	done chan struct{}
}

// NewTimers returns an empty set on clk (nil: the real clock).
func NewTimers(clk clock.Clock) *Timers {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Timers{
		clock:   clk,
		byKey:   map[cache.ObjectName]*timedKey{},
		earlier: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// Schedule has key handed over at at, unless it is pending for an earlier
// time already. A time that has passed is handed over at once. Ignored
// after ShutDown.
func (t *Timers) Schedule(key cache.ObjectName, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return
	}
	e, ok := t.byKey[key]
	switch {
	case !ok:
		e = &timedKey{key: key, at: at}
		heap.Push(&t.pending, e)
		t.byKey[key] = e
	case at.Before(e.at):
		e.at = at
		heap.Fix(&t.pending, e.index)
	default:
		return
	}
	if e.index == 0 {
		select {
		case t.earlier <- struct{}{}:
		default:
		}
	}
}

// Cancel drops key's pending time; it reports whether there was one. A key
// already handed over (or being handed over) is not taken back.
func (t *Timers) Cancel(key cache.ObjectName) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[key]
	if !ok {
		return false
	}
	heap.Remove(&t.pending, e.index)
	delete(t.byKey, key)
	t.releaseIfEmpty()
	return true
}

// releaseAbove is the number of keys a set must have held for its storage
// to be given back when it empties: a Go map keeps its peak size, and the
// heap its peak capacity (a burst of 10,000 keys, all cancelled, left
// 390 kB behind).
const releaseAbove = 1024

func (t *Timers) releaseIfEmpty() {
	if len(t.pending) == 0 && cap(t.pending) > releaseAbove {
		t.pending, t.byKey = nil, map[cache.ObjectName]*timedKey{}
	}
}

// Len is the number of keys pending.
func (t *Timers) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// ShutDown drops every pending key, ignores later Schedules and makes Run
// return. It may be called more than once.
func (t *Timers) ShutDown() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.down {
		return
	}
	t.down = true
	t.pending, t.byKey = nil, map[cache.ObjectName]*timedKey{}
	close(t.done)
}

// Run calls fire with each key whose time has come, one at a time, until
// ctx is done or ShutDown is called; then it shuts the set down. fire runs
// without the set's lock held: it may Schedule or Cancel.
func (t *Timers) Run(ctx context.Context, fire func(cache.ObjectName)) {
	defer t.ShutDown()
	var timer clock.Timer
	stop := func() {
		if timer != nil && !timer.Stop() {
			// Fired and not read (a fake clock's timer channel is
			// buffered and its next send would block).
			select {
			case <-timer.C():
			default:
			}
		}
	}
	defer stop()
	for {
		key, now, wait, due, armed := t.next()
		if due {
			fire(key)
			continue
		}
		var fired <-chan time.Time
		if armed {
			if timer == nil {
				timer = t.clock.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			if t.clock.Since(now) > clockSlack {
				stop()
				continue
			}
			fired = timer.C()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.done:
			return
		case <-t.earlier:
		case <-fired:
		}
		stop()
	}
}

// next pops the earliest key if it is due at now; else it says how long
// from now until the earliest time (armed false: nothing is pending).
func (t *Timers) next() (key cache.ObjectName, now time.Time, wait time.Duration, due, armed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now = t.clock.Now()
	if len(t.pending) == 0 {
		return key, now, 0, false, false
	}
	if wait = t.pending[0].at.Sub(now); wait > 0 {
		return key, now, wait, false, true
	}
	e := heap.Pop(&t.pending).(*timedKey)
	delete(t.byKey, e.key)
	t.releaseIfEmpty()
	return e.key, now, 0, true, false
}
