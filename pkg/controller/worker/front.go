package worker

import (
	"container/heap"
	"container/list"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Rank places a key in a FrontQueue: front keys are served before the
// others, older at first (then by namespace and name); the others keep the
// order they came in. It is asked when a key is pushed (added, or added
// again after it was processed) and when a queued key is added again, so a
// key moves when what it stands for changed. It runs under the queue's lock:
// it must be quick and must not call the queue.
type Rank func(key cache.ObjectName) (front bool, at time.Time)

// DefaultMaxStreak is how many front keys FrontQueue serves in a row while
// other keys wait.
const DefaultMaxStreak = 8

// FrontQueue is a workqueue.Queue that serves the keys its Rank puts in
// front first, oldest first, and every other key in FIFO order behind
// them. The others cannot starve: after MaxStreak front keys in a row
// while one of them waits, the next Pop serves the oldest of them, so a
// key that is n-th among them is served within n×(MaxStreak+1) pops.
//
// As every workqueue.Queue it is only called with the workqueue's lock held
// (Touch only for keys it holds).
type FrontQueue struct {
	rank Rank
	// MaxStreak bounds the front keys served in a row while others wait.
	MaxStreak int

	front  keyHeap[*frontEntry]
	rest   *list.List // of *frontEntry
	queued map[cache.ObjectName]*frontEntry
	streak int
}

var _ workqueue.Queue[cache.ObjectName] = (*FrontQueue)(nil)

type frontEntry struct {
	timedKey               // index: in front; -1 when in rest
	elem     *list.Element // in rest; nil when in front
}

// NewFrontQueue returns an empty FrontQueue ordered by rank.
func NewFrontQueue(rank Rank) *FrontQueue {
	return &FrontQueue{rank: rank, MaxStreak: DefaultMaxStreak, rest: list.New(), queued: map[cache.ObjectName]*frontEntry{}}
}

// Push adds a key that is not queued.
func (q *FrontQueue) Push(key cache.ObjectName) {
	e := &frontEntry{timedKey: timedKey{key: key, index: -1}}
	q.queued[key] = e
	q.place(e)
}

// Touch ranks a queued key again: it moves to the front or to the back of
// the others when its rank changed. A key that stays among the others
// keeps its place.
func (q *FrontQueue) Touch(key cache.ObjectName) {
	e, ok := q.queued[key]
	if !ok {
		return
	}
	front, at := q.rank(key)
	switch {
	case front && e.elem == nil:
		if !e.at.Equal(at) {
			e.at = at
			heap.Fix(&q.front, e.index)
		}
	case !front && e.elem != nil:
	default:
		q.unlink(e)
		q.insert(e, front, at)
	}
}

// Len is the number of queued keys.
func (q *FrontQueue) Len() int { return q.front.Len() + q.rest.Len() }

// Pop removes and returns the next key; the queue must not be empty.
func (q *FrontQueue) Pop() cache.ObjectName {
	var e *frontEntry
	switch {
	case q.rest.Len() == 0:
		q.streak = 0
		e = heap.Pop(&q.front).(*frontEntry)
	case q.front.Len() > 0 && q.streak < q.MaxStreak:
		q.streak++
		e = heap.Pop(&q.front).(*frontEntry)
	default:
		q.streak = 0
		e = q.rest.Remove(q.rest.Front()).(*frontEntry)
		e.elem = nil
	}
	delete(q.queued, e.key)
	return e.key
}

// FrontLen is the number of queued front keys.
func (q *FrontQueue) FrontLen() int { return q.front.Len() }

func (q *FrontQueue) place(e *frontEntry) {
	front, at := q.rank(e.key)
	q.insert(e, front, at)
}

func (q *FrontQueue) insert(e *frontEntry, front bool, at time.Time) {
	if front {
		e.at = at
		heap.Push(&q.front, e)
		return
	}
	e.at, e.index = time.Time{}, -1
	e.elem = q.rest.PushBack(e)
}

func (q *FrontQueue) unlink(e *frontEntry) {
	if e.elem != nil {
		q.rest.Remove(e.elem)
		e.elem = nil
		return
	}
	heap.Remove(&q.front, e.index)
	e.index = -1
}
