package agentrun

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/utils/clock"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/worker"
)

// What the controller process keeps in memory besides the informers'
// caches, in one place: what each store keeps, what bounds it, and the
// event that forgets each entry. Everything the state machine needs to
// survive a restart lives in the API (the run's status); these stores only
// bridge the time between a write and the cache showing it, or time a
// wake-up. A restart empties them all, and the informers list everything
// before the first sync.
//
//	store (declared)              keeps, per entry                 bound                          forgotten when
//	----------------------------  -------------------------------  -----------------------------  ---------------------------------------------
//	expectations.pending          run UID -> when its workload     workloads created in the last   the workload's add/update event
//	  (below)                     was created                      expectationTTL (1m)             (workloadChanged), the run's delete event, a
//	                                                                                               read past expectationTTL, the minutely sweep
//	expectations.deleted          child UID -> when this            deletes made in the last        the child's delete event (childDeleted, the
//	  (below)                     controller deleted or retired it  expectationTTL                  pod and sandbox handlers), a read past
//	                                                                                               expectationTTL, the minutely sweep
//	admissions.locks (below)      instance key (or "*") -> lock    workers holding or waiting      its last holder or waiter unlocks
//	admissions.pending (below)    instance key -> run UID ->       admissions whose status the     the run's update showing it admitted or
//	                              when admitted, sub-agent or not  cache does not show yet         finished, its delete event, a read (unseen,
//	                                                                                               all) past expectationTTL
//	ownWrites.rv (below)          run UID -> resourceVersion of    one per run written since its   the sync that finds the cache caught up
//	                              this controller's last status    last sync                       (stale), the run's delete event
//	                              write
//	stores.wakes (worker.Timers)  run key -> when a live run's     one per live run                coming due (handed to wake), the run's update
//	                              decision asks to be synced                                       to finished at rest (cancelWake), its delete
//	                                                                                               event, wakeAfter on a run cached finished
//	the queue (worker.FrontQueue  run key waiting to be synced,    runs with pending events        a worker takes it (Get/Done); a delayed key
//	  and the rate limiter,       its rank; a key delayed by       (a key is queued once)          when it comes due; its failure count on
//	  Controller.worker)          AddAfter; its failure count                                      success or after maxRetries (Forget)
//	instance tally (instance.     instance key -> run counts       one per instance with runs in   the events of its runs bring every count to
//	  tally, instance/tally.go)   (by state, kept finished, TTLs)  the cache                       zero (the entry goes with its last run)
//	SandboxAPI.infs               resource -> dynamic informer     two (sandboxes, sandboxclaims)  discovery finds the resource gone
//	  (sandboxapi.go)
//
// The informers' caches are bounded by the objects they select: finished
// runs are kept as records (runcache.FinishedRun) read through the run
// store (runstore), and kept children are retired (sympozium.ai/retired)
// out of the child informers' selectors.

// stores are the AgentRun controller's in-memory stores (see the table
// above).
type stores struct {
	expectations *expectations
	admissions   *admissions
	writes       *ownWrites
	// wakes times the wake-ups live runs' decisions ask for (deadlines,
	// grace periods) apart from the queue; see wakeAfter.
	wakes *worker.Timers
}

func newStores(clk clock.WithTicker) stores {
	return stores{expectations: newExpectations(clk), admissions: newAdmissions(clk), writes: newOwnWrites(), wakes: worker.NewTimers(clk)}
}

// expectationTTL bounds how long a write this controller made is assumed to
// be on its way to the cache; past it the cache is trusted again.
const expectationTTL = time.Minute

// expectations remembers the workloads (Job, Deployment, Sandbox,
// SandboxClaim) this controller created that the informers have not
// delivered yet, keyed by the owning run's UID, so that a stale cache is
// not mistaken for a deleted workload. It lives in memory only: after a
// restart the informers list everything before the first sync.
//
// It also remembers the children it deleted (by their UID) until the
// informers deliver the deletion, so that an object still in the cache is
// not deleted twice.
type expectations struct {
	mu      sync.Mutex
	pending map[types.UID]time.Time
	deleted map[types.UID]time.Time
	clock   clock.PassiveClock
	// swept is when sweep last ran.
	swept time.Time
}

func newExpectations(clk clock.PassiveClock) *expectations {
	return &expectations{pending: map[types.UID]time.Time{}, deleted: map[types.UID]time.Time{}, clock: clk}
}

// deletedChild remembers that this controller deleted the child uid.
func (e *expectations) deletedChild(uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	e.sweep(now)
	e.deleted[uid] = now
}

// gone forgets a deleted child once the informer delivered its deletion.
func (e *expectations) gone(uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	drop(&e.deleted, uid)
}

// deleting reports whether this controller deleted the child uid and the
// cache has not caught up yet.
func (e *expectations) deleting(uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fresh(&e.deleted, uid)
}

// fresh reports whether m holds uid from less than expectationTTL ago, and
// forgets an expired entry. The caller holds e.mu.
func (e *expectations) fresh(m *map[types.UID]time.Time, uid types.UID) bool {
	at, ok := (*m)[uid]
	if ok && e.clock.Since(at) > expectationTTL {
		drop(m, uid)
		return false
	}
	return ok
}

// drop forgets uid. A map left empty is replaced: a Go map keeps the room
// of its largest size, and a burst of thousands of runs would otherwise
// hold it after the work is done.
func drop(m *map[types.UID]time.Time, uid types.UID) {
	delete(*m, uid)
	if len(*m) == 0 {
		*m = map[types.UID]time.Time{}
	}
}

// expectWorkload remembers that run's workload was created.
func (e *expectations) expectWorkload(run types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	e.sweep(now)
	e.pending[run] = now
}

// sweep forgets, at most once per expectationTTL, the expectations older
// than expectationTTL. An expectation is otherwise forgotten when its
// event comes or when it is read past its TTL; one whose event was missed
// (a watch that expired and relisted without it) and whose run is never
// synced again (finished) would stay for good. The caller holds e.mu.
func (e *expectations) sweep(now time.Time) {
	if now.Sub(e.swept) < expectationTTL {
		return
	}
	e.swept = now
	for _, m := range []*map[types.UID]time.Time{&e.pending, &e.deleted} {
		for uid, at := range *m {
			if now.Sub(at) > expectationTTL {
				drop(m, uid)
			}
		}
	}
}

func (e *expectations) observed(run types.UID) { e.forget(run) }

func (e *expectations) forget(run types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	drop(&e.pending, run)
}

// workloadExpected reports whether run's workload was created and not seen
// yet.
func (e *expectations) workloadExpected(run types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fresh(&e.pending, run)
}

// admissions serialises the admission of runs a limit concerns (per
// instance, or controller-wide with --max-concurrent-runs) and remembers
// the runs admitted whose admitted status the cache does not show yet, so
// that two workers (or a stale cache) never admit more runs than a limit
// (sub-agents' maxConcurrent, maxConcurrentRuns) allows.
type admissions struct {
	mu sync.Mutex
	// locks holds the admission locks in use (held or waited for); an
	// instance's entry goes with its last user, so the map does not grow
	// with every instance ever seen.
	locks   map[string]*admissionLock
	pending map[string]map[types.UID]admission // instance key -> run UIDs
	clock   clock.PassiveClock
}

// admission is a run admitted in memory: when, and whether it is a
// sub-agent run (it then holds a sub-agent slot too).
type admission struct {
	at       time.Time
	subagent bool
}

type admissionLock struct {
	sync.Mutex
	users int // holders and waiters; guarded by admissions.mu
}

func newAdmissions(clk clock.PassiveClock) *admissions {
	return &admissions{locks: map[string]*admissionLock{}, pending: map[string]map[types.UID]admission{}, clock: clk}
}

// lock takes the instance's admission lock; call the returned func to
// release it.
func (a *admissions) lock(instance string) func() {
	a.mu.Lock()
	l, ok := a.locks[instance]
	if !ok {
		l = &admissionLock{}
		a.locks[instance] = l
	}
	l.users++
	a.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		a.mu.Lock()
		defer a.mu.Unlock()
		if l.users--; l.users == 0 {
			delete(a.locks, instance)
		}
	}
}

func (a *admissions) admitted(instance string, run types.UID, subagent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.pending[instance]
	if !ok {
		m = map[types.UID]admission{}
		a.pending[instance] = m
	}
	m[run] = admission{at: a.clock.Now(), subagent: subagent}
}

// observed drops a run once the cache shows it admitted, finished or gone.
func (a *admissions) observed(run *v1alpha1.AgentRun) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := runstore.InstanceKey(run.Namespace, run.Spec.InstanceRef)
	if m, ok := a.pending[key]; ok {
		delete(m, run.UID)
		if len(m) == 0 {
			delete(a.pending, key)
		}
	}
}

// unseen returns the sub-agent runs of the instance admitted in memory and
// not yet seen admitted in the cache, except skip.
func (a *admissions) unseen(instance string, skip types.UID) map[types.UID]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[types.UID]bool{}
	for uid, ad := range a.pending[instance] {
		if uid == skip {
			continue
		}
		if a.clock.Since(ad.at) > expectationTTL {
			delete(a.pending[instance], uid)
			continue
		}
		if ad.subagent {
			out[uid] = true
		}
	}
	return out
}

// all returns every run admitted in memory and not yet seen admitted in
// the cache, except skip, with its instance key.
func (a *admissions) all(skip types.UID) map[types.UID]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[types.UID]string{}
	for inst, m := range a.pending {
		for uid, ad := range m {
			if uid == skip {
				continue
			}
			if a.clock.Since(ad.at) > expectationTTL {
				delete(m, uid)
				continue
			}
			out[uid] = inst
		}
	}
	return out
}

// ownWrites remembers the resourceVersion of this controller's last write of
// each run, so that a sync does not act on a copy of the run older than what
// it wrote itself (read-your-writes): it waits for the informer to deliver
// the write, whose event enqueues the run again. Without it a burst of child
// events makes the controller decide on stale status and lose the race at
// the API server as a conflict, one wasted write and a backoff each time.
type ownWrites struct {
	mu sync.Mutex
	rv map[types.UID]string
}

func newOwnWrites() *ownWrites { return &ownWrites{rv: map[types.UID]string{}} }

func (w *ownWrites) wrote(uid types.UID, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rv[uid] = rv
}

func (w *ownWrites) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rv, uid)
}

// stale reports whether the cached run is older than the last write.
func (w *ownWrites) stale(run *v1alpha1.AgentRun) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	written, ok := w.rv[run.UID]
	if !ok {
		return false
	}
	cmp, err := resourceversion.CompareResourceVersion(run.ResourceVersion, written)
	if err != nil || cmp >= 0 {
		delete(w.rv, run.UID) // caught up (or not comparable: trust the cache)
		return false
	}
	return true
}
