package worker

import (
	"time"

	"k8s.io/client-go/tools/cache"
)

// timedKey is a key with a time: an entry of a keyHeap, alone (Timers) or
// embedded (FrontQueue).
type timedKey struct {
	key   cache.ObjectName
	at    time.Time
	index int // in its heap; -1 when in none
}

func (t *timedKey) timed() *timedKey { return t }

// keyHeap is a container/heap of timed keys, earliest first, then by
// namespace and name, so that keys of one time come out in a stable order.
type keyHeap[E interface{ timed() *timedKey }] []E

func (h keyHeap[E]) Len() int { return len(h) }

func (h keyHeap[E]) Less(i, j int) bool {
	a, b := h[i].timed(), h[j].timed()
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	if a.key.Namespace != b.key.Namespace {
		return a.key.Namespace < b.key.Namespace
	}
	return a.key.Name < b.key.Name
}

func (h keyHeap[E]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].timed().index, h[j].timed().index = i, j
}

func (h *keyHeap[E]) Push(x any) {
	e := x.(E)
	e.timed().index = len(*h)
	*h = append(*h, e)
}

func (h *keyHeap[E]) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	var none E
	old[n-1] = none
	*h = old[:n-1]
	e.timed().index = -1
	return e
}
