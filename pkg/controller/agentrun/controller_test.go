package agentrun

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/worker"
)

// countingLimiter is a fast exponential limiter that counts requeues.
type countingLimiter struct {
	workqueue.TypedRateLimiter[cache.ObjectName]
	mu    sync.Mutex
	whens int
}

func newCountingLimiter() *countingLimiter {
	return &countingLimiter{TypedRateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](time.Microsecond, time.Millisecond)}
}

func (l *countingLimiter) When(k cache.ObjectName) time.Duration {
	l.mu.Lock()
	l.whens++
	l.mu.Unlock()
	return l.TypedRateLimiter.When(k)
}

func (l *countingLimiter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.whens
}

// processNext runs one ProcessNextWorkItem, failing the test rather than
// hanging when no key arrives. The queue's delays run on the fixture's
// clock, which it moves on while it waits: a rate-limited key comes back
// only because the injected clock advanced.
func processNext(t *testing.T, f *fixture) {
	t.Helper()
	done := make(chan bool, 1)
	go func() { done <- f.c.worker.ProcessNextWorkItem(f.ctx) }()
	timeout := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ok := <-done:
			require.True(t, ok, "the queue was shut down")
			return
		case <-tick.C:
			f.clk.Step(time.Millisecond)
		case <-timeout:
			f.c.queue.ShutDown()
			t.Fatal("no key was processed")
		}
	}
}

type syncRecorder struct {
	mu   sync.Mutex
	keys []cache.ObjectName
	errs []error // returned in turn; the last one repeats
}

func (s *syncRecorder) sync(_ context.Context, key cache.ObjectName) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, key)
	return s.errs[min(len(s.keys), len(s.errs))-1]
}

func (s *syncRecorder) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

func TestWorkerRequeuesOnErrorAndForgetsOnSuccess(t *testing.T) {
	rl := newCountingLimiter()
	type outcome struct {
		queue string
		err   error
	}
	var outcomes []outcome
	f := newFixture(t, func(o *Options) {
		o.RateLimiter = rl
		o.OnSync = func(q string, err error, _ time.Duration) { outcomes = append(outcomes, outcome{q, err}) }
	})
	boom := errors.New("boom")
	s := &syncRecorder{errs: []error{boom, nil}}
	f.c.worker.Sync = s.sync
	key := f.key("run")

	f.c.queue.Add(key)
	processNext(t, f)
	assert.Equal(t, 1, f.c.queue.NumRequeues(key), "requeued with backoff after an error")
	assert.Equal(t, 1, rl.count())

	processNext(t, f) // the rate-limited key comes back
	assert.Equal(t, 0, f.c.queue.NumRequeues(key), "forgotten after a success")
	assert.Equal(t, []cache.ObjectName{key, key}, s.keys)
	assert.Equal(t, 1, rl.count(), "no requeue after a success")
	assert.Equal(t, 0, f.c.queue.Len())
	assert.Equal(t, []outcome{{"agentrun", boom}, {"agentrun", nil}}, outcomes)
}

func TestWorkerDropsKeyAfterMaxRetries(t *testing.T) {
	rl := newCountingLimiter()
	f := newFixture(t, func(o *Options) { o.RateLimiter = rl })
	s := &syncRecorder{errs: []error{errors.New("always")}}
	f.c.worker.Sync = s.sync
	key := f.key("run")

	f.c.queue.Add(key)
	for range worker.MaxRetries + 1 {
		processNext(t, f)
	}
	assert.Equal(t, worker.MaxRetries+1, s.calls(), "the first try and MaxRetries retries")
	assert.Equal(t, worker.MaxRetries, rl.count(), "requeued MaxRetries times, then dropped")
	assert.Equal(t, 0, f.c.queue.NumRequeues(key), "the dropped key's backoff is forgotten")
	assert.Equal(t, 0, f.c.queue.Len())
}

func TestWorkerRequeuesConflicts(t *testing.T) {
	rl := newCountingLimiter()
	f := newFixture(t, func(o *Options) { o.RateLimiter = rl })
	conflict := apierrors.NewConflict(agentrunsGVR.GroupResource(), "run", errors.New("modified"))
	s := &syncRecorder{errs: []error{conflict, nil}}
	f.c.worker.Sync = s.sync
	key := f.key("run")

	f.c.queue.Add(key)
	processNext(t, f)
	assert.Equal(t, 1, f.c.queue.NumRequeues(key))
	processNext(t, f)
	assert.Equal(t, 0, f.c.queue.NumRequeues(key))
	assert.Equal(t, 2, s.calls())
}

func TestWorkerRunsTheRealSync(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"), newRun("run"))
	f.c.queue.Add(f.key("run"))
	processNext(t, f)
	assert.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()))
	assert.Equal(t, 0, f.c.queue.NumRequeues(f.key("run")))
}

func TestJobHandlers(t *testing.T) {
	run := newRun("run")
	job := jobOf(run, "job-uid")
	job.ResourceVersion = "1"
	bumped := job.DeepCopy()
	bumped.ResourceVersion = "2"

	t.Run("update with a new resourceVersion enqueues the owner run", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(run)
		f.c.expectations.expectWorkload(run.UID)
		require.Len(t, f.handlers[phase.KindJob], 1)
		f.handler(phase.KindJob).OnUpdate(job, bumped)
		assert.Equal(t, []string{"ns/run"}, f.queued())
		assert.False(t, f.c.expectations.workloadExpected(run.UID), "the expectation is observed")
	})
	t.Run("update with the same resourceVersion (resync) enqueues nothing", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(run)
		f.c.expectations.expectWorkload(run.UID)
		f.handler(phase.KindJob).OnUpdate(job, job.DeepCopy())
		assert.Empty(t, f.queued())
		assert.True(t, f.c.expectations.workloadExpected(run.UID))
	})
	t.Run("add and delete enqueue the owner run", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(run)
		f.handler(phase.KindJob).OnAdd(job, false)
		assert.Equal(t, []string{"ns/run"}, f.queued())
		f.handler(phase.KindJob).OnDelete(job)
		assert.Equal(t, []string{"ns/run"}, f.queued())
		f.handler(phase.KindJob).OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/run"})
		assert.Empty(t, f.queued(), "a tombstone without an object is ignored")
		f.c.expectations.deletedChild(job.UID)
		f.handler(phase.KindJob).OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/run", Obj: job})
		assert.Equal(t, []string{"ns/run"}, f.queued(), "a tombstone with its object enqueues the owner")
		assert.False(t, f.c.expectations.deleting(job.UID), "and observes the delete")
	})
	t.Run("Job not controlled by an AgentRun enqueues nothing", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(run)
		other := job.DeepCopy()
		other.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "run", UID: "run-uid", Controller: new(true)}}
		f.handler(phase.KindJob).OnAdd(other, false)
		unowned := job.DeepCopy()
		unowned.OwnerReferences = nil
		f.handler(phase.KindJob).OnAdd(unowned, false)
		notController := job.DeepCopy()
		notController.OwnerReferences[0].Controller = nil
		f.handler(phase.KindJob).OnAdd(notController, false)
		assert.Empty(t, f.queued())
	})
	t.Run("Job of an earlier run of the same name enqueues nothing", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(newRun("run", func(r *v1alpha1.AgentRun) { r.UID = "new-uid" }))
		f.handler(phase.KindJob).OnAdd(job, false)
		assert.Empty(t, f.queued())
	})
}

func TestPodHandlers(t *testing.T) {
	run := newRun("run")
	job := jobOf(run, "job-uid")
	pod := podOf(job, "run-pod")
	pod.ResourceVersion = "1"
	bumped := pod.DeepCopy()
	bumped.ResourceVersion = "2"

	t.Run("update enqueues the run that owns the pod's Job", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(run, job)
		require.Len(t, f.handlers[phase.KindPod], 1)
		f.handler(phase.KindPod).OnUpdate(pod, bumped)
		assert.Equal(t, []string{"ns/run"}, f.queued())
		f.handler(phase.KindPod).OnUpdate(pod, pod.DeepCopy())
		assert.Empty(t, f.queued(), "a resync of the pod enqueues nothing")
		f.handler(phase.KindPod).OnDelete(pod)
		assert.Equal(t, []string{"ns/run"}, f.queued())
	})
	t.Run("pod of an unknown or replaced Job enqueues nothing", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(run)
		f.handler(phase.KindPod).OnAdd(pod, false) // Job not cached
		replaced := jobOf(run, "other-job-uid")
		f.addToCache(replaced)
		f.handler(phase.KindPod).OnAdd(pod, false) // Job UID differs
		assert.Empty(t, f.queued())
	})
}

func TestRunHandlers(t *testing.T) {
	waiting := newRun("waiting")
	capacity := newRun("capacity", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending,
		Conditions: []metav1.Condition{cond(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity, "m", t0)}}))
	admitted := newRun("admitted", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, JobName: "admitted"}))
	done := newRun("done", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseFailed}))
	elsewhere := newRun("elsewhere", withInstance("other"))
	runningRun := newRun("finishing", withStatus(runningStatus("finishing", "finishing-pod")))
	finished := runningRun.DeepCopy()
	finished.Status.Phase = v1alpha1.PhaseSucceeded

	setup := func(t *testing.T) *fixture {
		f := newFixture(t)
		f.addToCache(waiting, capacity, admitted, done, elsewhere, runningRun)
		require.Len(t, f.handlers[kindRun], 1)
		return f
	}

	t.Run("a run that turns terminal wakes the instance's waiting runs", func(t *testing.T) {
		f := setup(t)
		f.c.admissions.admitted(runstore.InstanceKey(testNS, "inst"), runningRun.UID, true)
		f.handler(kindRun).OnUpdate(runningRun, finished)
		assert.Equal(t, []string{"ns/capacity", "ns/finishing", "ns/waiting"}, f.queued())
		assert.Empty(t, f.c.admissions.unseen(runstore.InstanceKey(testNS, "inst"), ""), "the admission is observed")
	})
	t.Run("a plain update enqueues only the run", func(t *testing.T) {
		f := setup(t)
		cur := runningRun.DeepCopy()
		cur.ResourceVersion = "2"
		f.handler(kindRun).OnUpdate(runningRun, cur)
		assert.Equal(t, []string{"ns/finishing"}, f.queued())
	})
	t.Run("a run admitted leaves the waiting line", func(t *testing.T) {
		f := setup(t)
		cur := capacity.DeepCopy()
		cur.Status.JobName = "capacity"
		f.handler(kindRun).OnUpdate(capacity, cur)
		assert.Equal(t, []string{"ns/capacity", "ns/waiting"}, f.queued())
	})
	t.Run("a deleted run wakes the waiting runs", func(t *testing.T) {
		f := setup(t)
		f.c.expectations.expectWorkload(runningRun.UID)
		f.handler(kindRun).OnDelete(runningRun)
		assert.Equal(t, []string{"ns/capacity", "ns/finishing", "ns/waiting"}, f.queued())
		assert.False(t, f.c.expectations.workloadExpected(runningRun.UID))
	})
	t.Run("a new instance wakes its waiting runs", func(t *testing.T) {
		f := setup(t)
		require.Len(t, f.handlers[kindInstance], 1)
		f.handler(kindInstance).OnAdd(newInstance("inst"), false)
		assert.Equal(t, []string{"ns/capacity", "ns/waiting"}, f.queued())
		f.handler(kindInstance).OnUpdate(newInstance("inst"), newInstance("inst"))
		assert.Empty(t, f.queued(), "a status-only instance update wakes nobody")
		changed := newInstance("inst")
		changed.Generation = 2
		f.handler(kindInstance).OnUpdate(newInstance("inst"), changed)
		assert.Equal(t, []string{"ns/capacity", "ns/waiting"}, f.queued())
	})
	t.Run("only waiting runs are read when waking", func(t *testing.T) {
		f := setup(t)
		child := newRun("child", withParent(admitted, 1), withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, JobName: "child"}))
		f.addToCache(child)
		names := func(runs []*v1alpha1.AgentRun) []string {
			var out []string
			for _, r := range runs {
				out = append(out, r.Name)
			}
			sort.Strings(out)
			return out
		}
		key := runstore.InstanceKey(testNS, "inst")
		assert.Equal(t, []string{"capacity", "waiting"}, names(f.c.runs.Waiting(key)))
		assert.Equal(t, []string{"elsewhere"}, names(f.c.runs.Waiting(runstore.InstanceKey(testNS, "other"))))
		assert.Equal(t, []string{"child"}, names(f.c.runs.LiveSubagents(testNS, "inst")))

		cur := capacity.DeepCopy()
		cur.Status.JobName = "capacity"
		require.NoError(t, f.inf.Runs.Informer().GetIndexer().Update(cur))
		assert.Equal(t, []string{"waiting"}, names(f.c.runs.Waiting(key)), "an admitted run leaves the index")
		f.handler(kindRun).OnUpdate(runningRun, finished)
		assert.Equal(t, []string{"ns/finishing", "ns/waiting"}, f.queued())
	})
	t.Run("a new ConfigMap wakes the namespace's waiting runs", func(t *testing.T) {
		f := setup(t)
		require.Len(t, f.handlers[phase.KindConfigMap], 1)
		f.handler(phase.KindConfigMap).OnAdd(partial(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "skills", Namespace: testNS}}), false)
		assert.Equal(t, []string{"ns/capacity", "ns/elsewhere", "ns/waiting"}, f.queued())
		f.handler(phase.KindConfigMap).OnAdd(partial(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "skills", Namespace: "other-ns"}}), false)
		assert.Empty(t, f.queued())
	})
}

func TestLastBytes(t *testing.T) {
	long := strings.Repeat("x", 100000) + "__SYMPOZIUM_RESULT__{}__SYMPOZIUM_END__"
	got, err := lastBytes(strings.NewReader(long), 64)
	require.NoError(t, err)
	assert.Equal(t, long[len(long)-64:], got)
	got, err = lastBytes(strings.NewReader("short"), 64)
	require.NoError(t, err)
	assert.Equal(t, "short", got)
}

// An instance's admission lock excludes a second holder, and the lock map
// keeps only the locks in use.
func TestAdmissionLocksAreExclusiveAndDropped(t *testing.T) {
	a := newAdmissions(clock.RealClock{})
	unlock := a.lock("ns/a")
	got := make(chan struct{})
	go func() {
		release := a.lock("ns/a")
		close(got)
		release()
	}()
	select {
	case <-got:
		t.Fatal("a second worker took a held admission lock")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting worker never got the lock")
	}
	locks := func() int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.locks)
	}
	require.Eventually(t, func() bool { return locks() == 0 }, 10*time.Second, time.Millisecond)
	for i := range 100 {
		a.lock(fmt.Sprintf("ns/inst-%d", i))()
	}
	assert.Zero(t, locks(), "locks of instances nobody admits to are dropped")
}

// A restart or a resync syncs only the runs that have something to do: a
// finished run is not enqueued when listed or resynced (its children and
// grants, if any remain, enqueue it through their own informers), but is
// when it changes or is being deleted.
func TestFinishedRunsNotSyncedOnListOrResync(t *testing.T) {
	f := newFixture(t)
	h := f.c.runHandlers()
	done := newRun("done", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded}))
	done.ResourceVersion = "10"
	live := newRun("live")
	deleting := done.DeepCopy()
	deleting.Name, deleting.DeletionTimestamp = "deleting", new(metav1.NewTime(t0))
	changed := done.DeepCopy()
	changed.ResourceVersion = "11"

	steps := []struct {
		what string
		do   func()
		want int
	}{
		{"a finished run listed", func() { h.AddFunc(done) }, 0},
		{"a finished run resynced", func() { h.UpdateFunc(done, done) }, 0},
		{"a live run listed", func() { h.AddFunc(live) }, 1},
		{"a finished run being deleted listed", func() { h.AddFunc(deleting) }, 1},
		{"a finished run changed", func() { h.UpdateFunc(done, changed) }, 1},
	}
	for _, s := range steps {
		s.do()
		assert.Equal(t, s.want, f.c.queue.Len(), s.what)
		for f.c.queue.Len() > 0 {
			k, _ := f.c.queue.Get()
			f.c.queue.Done(k)
		}
	}
}

// TestNewRunsAreSyncedBeforeQueuedStatusWork: under a burst, the runs
// whose admission is undecided are synced (their Jobs created) before the
// work queued ahead of them: runs whose agent finished, a run woken while it
// waits for a slot, a deleted run. Those follow in the order they came.
func TestNewRunsAreSyncedBeforeQueuedStatusWork(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"))
	require.Len(t, f.handlers[phase.KindPod], 1)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("done-%d", i)
		r := newRun(name, withStatus(runningStatus(name, name+"-pod")))
		job := jobOf(r, types.UID(name+"-job-uid"))
		pod := podOf(job, name+"-pod", agentExited(0, ""))
		pod.ResourceVersion = "2"
		f.add(r, job, pod)
		before := pod.DeepCopy()
		before.ResourceVersion = "1"
		f.handler(phase.KindPod).OnUpdate(before, pod) // the agent terminated
	}
	waiting := newRun("waiting", withCreated(t0.Add(-time.Hour)), withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending,
		Conditions: []metav1.Condition{cond(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity, "m", t0)}}))
	f.add(waiting)
	f.c.wakeWaiting(testNS, "inst")
	f.handler(kindRun).OnDelete(newRun("gone"))
	for _, r := range []*v1alpha1.AgentRun{newRun("new-b", withCreated(t0.Add(2*time.Second))), newRun("new-a", withCreated(t0.Add(time.Second)))} {
		f.add(r)
		f.handler(kindRun).OnAdd(r, false)
	}

	var order []string
	f.c.worker.Sync = func(ctx context.Context, key cache.ObjectName) error {
		order = append(order, key.Name)
		return f.c.sync(ctx, key)
	}
	for range 7 {
		processNext(t, f)
	}
	assert.Equal(t, []string{"new-a", "new-b", "done-1", "done-2", "done-3", "waiting", "gone"}, order)
	for _, name := range []string{"new-a", "new-b"} {
		_, err := f.trackedJob(name)
		require.NoError(t, err, "Job of %s", name)
	}
	for _, name := range []string{"done-1", "done-2", "done-3"} {
		assert.Equal(t, v1alpha1.PhaseSucceeded, f.trackedRun(name).Status.Phase, name)
	}
}

// TestAdmissionRank: what puts a key in front of the queue.
func TestAdmissionRank(t *testing.T) {
	f := newFixture(t)
	created := t0.Add(3 * time.Second)
	f.addToCache(
		newRun("new", withCreated(created)),
		newRun("admitted", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, JobName: "admitted"})),
		newRun("capacity", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending,
			Conditions: []metav1.Condition{cond(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity, "m", t0)}})),
	)
	front, at := f.c.admissionRank(f.key("new"))
	assert.True(t, front)
	assert.Equal(t, created, at)
	for _, name := range []string{"admitted", "capacity", "gone"} {
		front, _ := f.c.admissionRank(f.key(name))
		assert.False(t, front, name)
	}

	// Admitted by this controller, the cache not caught up yet: its Job's
	// event does not put it in front again.
	stale := newRun("stale")
	stale.ResourceVersion = "10"
	f.addToCache(stale)
	f.c.writes.wrote(stale.UID, "11")
	front, _ = f.c.admissionRank(f.key("stale"))
	assert.False(t, front, "cached copy older than the admission written")
	stale.ResourceVersion = "11"
	f.addToCache(stale)
	front, _ = f.c.admissionRank(f.key("stale"))
	assert.True(t, front, "caught up (and still undecided: the write was lost)")
}

// A child whose run the cache does not hold (yet: at a start the Jobs may
// be listed before the runs) enqueues its run by name; a child of another
// run of the same name (another UID) does not.
func TestChildEnqueuesRunNotCachedYet(t *testing.T) {
	f := newFixture(t)
	run := newRun("done", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded}))
	job := jobOf(run, "job-uid")
	f.c.enqueueOwner(job)
	assert.Equal(t, 1, f.c.queue.Len(), "enqueued though the run is not cached")
	k, _ := f.c.queue.Get()
	f.c.queue.Done(k)
	assert.Equal(t, cache.ObjectName{Namespace: testNS, Name: "done"}, k)

	other := newRun("done")
	other.UID = "another-uid"
	f.addToCache(other)
	f.c.enqueueOwner(job)
	assert.Equal(t, 0, f.c.queue.Len(), "a child of an earlier run of that name")
}

// A wake-up a live run's decision asked for (here its deadline) that comes
// due after the run finished syncs nothing: the finished run is not queued
// again. Before, every run was synced once more at its deadline, up to its
// timeout after it finished, and a history of runs kept the queue busy that
// long after the last one (the memory benchmark never came to rest). A run
// still live at its deadline is woken as before.
func TestDeadlineWakeOfAFinishedRunIsDropped(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"), newRun("done"), newRun("live"))
	require.NoError(t, f.sync("done")) // admitted: woken at its deadline
	f.clk.Step(time.Second)
	require.NoError(t, f.sync("live")) // admitted: woken a second later
	f.refresh()
	done := f.trackedRun("done")
	done.Status.Phase = v1alpha1.PhaseSucceeded
	f.update(done)
	require.Empty(t, f.queued(), "nothing ready before the deadlines")

	ctx, cancel := context.WithCancel(f.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { f.c.Run(ctx, 0) }) // no workers: the queue is read below
	t.Cleanup(func() { cancel(); wg.Wait() })
	f.clk.Step(testPhaseConfig.Workload.DefaultTimeout + time.Minute)
	require.Eventually(t, func() bool { return f.c.queue.Len() > 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{testNS + "/live"}, f.queued(), "the finished run's deadline is not synced")
}

// finishingRunFixture holds a run whose agent exited, with its Job and pod.
func finishingRunFixture(t *testing.T) (*fixture, *batchv1.Job, *corev1.Pod) {
	f := newFixture(t)
	r := newRun("run", withStatus(runningStatus("run", "run-pod")))
	job := jobOf(r, "run-job-uid")
	pod := podOf(job, "run-pod", agentExited(0, ""))
	f.add(r, job, pod)
	return f, job, pod
}

// A child this controller deleted or retired is remembered until its
// informer delivers its departure, and forgotten then: for every kind, pods
// included (they were not, and every kept run left its pod's UID behind, a
// few megabytes over 50,000 runs).
func TestDepartedChildrenForgotten(t *testing.T) {
	f, job, pod := finishingRunFixture(t)
	for _, uid := range []types.UID{job.UID, pod.UID} {
		f.c.expectations.deletedChild(uid)
		require.True(t, f.c.expectations.deleting(uid))
	}
	f.handler(phase.KindJob).OnDelete(job)
	f.handler(phase.KindPod).OnDelete(pod)
	f.c.expectations.mu.Lock()
	defer f.c.expectations.mu.Unlock()
	assert.Empty(t, f.c.expectations.deleted, "departed children still remembered")
}

// The informer may deliver a departure before the write that caused it
// returns: the deletion is remembered before the write, so that the event
// forgets it (remembered after, it stayed for good, about half the kept
// runs' Jobs and pods in the memory benchmark). A failed write forgets it.
func TestDepartureDeliveredDuringTheWrite(t *testing.T) {
	f, job, pod := finishingRunFixture(t)
	for _, res := range []string{"jobs", "pods"} {
		f.kube.PrependReactor("patch", res, func(a core.Action) (bool, runtime.Object, error) {
			// The informer's delete handler, run before the patch returns.
			name := a.(core.PatchAction).GetName()
			if name == job.Name && res == "jobs" {
				f.handler(phase.KindJob).OnDelete(job)
			} else {
				f.handler(phase.KindPod).OnDelete(pod)
			}
			return false, nil, nil
		})
	}
	d := phase.Decision{Actions: []phase.Action{
		{Verb: phase.Retire, Kind: phase.KindJob, Object: job},
		{Verb: phase.Retire, Kind: phase.KindPod, Object: pod},
	}}
	require.NoError(t, f.c.deleteChildren(f.ctx, d))
	assert.False(t, f.c.expectations.deleting(job.UID))
	assert.False(t, f.c.expectations.deleting(pod.UID))

	f.kube.PrependReactor("delete", "jobs", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("down")
	})
	require.Error(t, f.c.deleteChildren(f.ctx, phase.Decision{Actions: []phase.Action{{Verb: phase.Delete, Kind: phase.KindJob, Object: job}}}))
	assert.False(t, f.c.expectations.deleting(job.UID), "a failed delete is not expected")
}

// Expectations whose event never comes, of runs never synced again, are
// swept once they are past their TTL.
func TestStaleExpectationsSwept(t *testing.T) {
	f := newFixture(t)
	e := f.c.expectations
	e.deletedChild("missed-departure")
	e.expectWorkload("missed-create")
	f.clk.Step(expectationTTL + time.Second)
	e.deletedChild("recent")
	e.mu.Lock()
	defer e.mu.Unlock()
	assert.Equal(t, []types.UID{"recent"}, slices.Collect(maps.Keys(e.deleted)))
	assert.Empty(t, e.pending)
}

// A live run's deadline wake is kept in memory until it comes due; the run
// handlers take it back when the run finishes or is deleted, so the wakes
// held are those of live runs only. Before, every run finished within the
// last timeout (10 minutes by default) kept its entry in a delaying queue
// that could not drop it: 1.5 MB after 10,000 runs in 9 minutes.
func TestFinishedRunsWakeIsCancelled(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"), newRun("done"), newRun("gone"), newRun("live"), newRun("late"))
	for _, name := range []string{"done", "gone", "live", "late"} {
		require.NoError(t, f.sync(name)) // admitted: woken at its deadline
	}
	f.refresh()
	require.Equal(t, 4, f.c.wakes.Len(), "one wake per live run")
	cached := func(name string) any {
		obj, ok, err := f.inf.Runs.Informer().GetIndexer().GetByKey(f.key(name).String())
		require.NoError(t, err)
		require.True(t, ok)
		return obj
	}

	// The update that finishes a run, as the informer delivers it: the
	// finished run as a record.
	before := cached("done")
	done := f.trackedRun("done")
	done.Status.Phase = v1alpha1.PhaseSucceeded
	f.update(done)
	require.IsType(t, &runcache.FinishedRun{}, cached("done"))
	f.handler(kindRun).OnUpdate(before, cached("done"))
	assert.Equal(t, 3, f.c.wakes.Len(), "the finished run's wake is gone")

	f.handler(kindRun).OnDelete(cached("gone"))
	assert.Equal(t, 2, f.c.wakes.Len(), "the deleted run's wake is gone")

	live := f.trackedRun("live")
	live.Labels = map[string]string{"touched": "yes"}
	before = cached("live")
	f.update(live)
	f.handler(kindRun).OnUpdate(before, cached("live"))
	assert.Equal(t, 2, f.c.wakes.Len(), "a live run's update keeps its wake")

	// A sync that read the run live sets its wake after the handler saw
	// the finish: the wake is cancelled at once.
	late := f.trackedRun("late")
	late.Status.Phase = v1alpha1.PhaseFailed
	before = cached("late")
	f.update(late)
	f.handler(kindRun).OnUpdate(before, cached("late"))
	f.c.wakeAfter(f.key("late"), time.Minute)
	assert.Equal(t, 1, f.c.wakes.Len(), "a wake set after the finish was seen")

	// The live run's wake comes due on the controller's clock and is
	// handed to the queue.
	ctx, cancel := context.WithCancel(f.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { f.c.Run(ctx, 0) }) // no workers: the queue is read below
	t.Cleanup(func() { cancel(); wg.Wait() })
	f.queued()
	f.clk.Step(testPhaseConfig.Workload.DefaultTimeout + time.Minute)
	require.Eventually(t, func() bool { return f.c.queue.Len() > 0 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{testNS + "/live"}, f.queued())
	assert.Zero(t, f.c.wakes.Len())
}
