package runstore

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func run(name string, opts ...func(*v1alpha1.AgentRun)) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), ResourceVersion: "1",
			CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst", Mode: v1alpha1.ModeTask},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func admitted(r *v1alpha1.AgentRun) { r.Status.Phase, r.Status.JobName = v1alpha1.PhasePending, r.Name }
func finished(reason string) func(*v1alpha1.AgentRun) {
	return func(r *v1alpha1.AgentRun) {
		r.Status.Phase = v1alpha1.PhaseFailed
		r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: reason}}
	}
}
func childOf(parent string) func(*v1alpha1.AgentRun) {
	return func(r *v1alpha1.AgentRun) { r.Spec.Parent = &v1alpha1.ParentRef{RunName: parent, SpawnDepth: 1} }
}
func instance(name string) func(*v1alpha1.AgentRun) {
	return func(r *v1alpha1.AgentRun) { r.Spec.InstanceRef = name }
}

// newStore is a store over a never-started informer holding runs as the
// informer's transform keeps them: finished ones as records.
func newStore(t *testing.T, runs ...*v1alpha1.AgentRun) (*Store, cache.Indexer) {
	t.Helper()
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &v1alpha1.AgentRun{}, 0, cache.Indexers{})
	s, err := New(inf)
	require.NoError(t, err)
	again, err := New(inf)
	require.NoError(t, err, "New is idempotent")
	require.Equal(t, s.indexer, again.indexer)
	for _, r := range runs {
		obj, err := runcache.TrimForCache(r.DeepCopy())
		require.NoError(t, err)
		require.NoError(t, inf.GetIndexer().Add(obj))
	}
	return s, inf.GetIndexer()
}

func names(runs []*v1alpha1.AgentRun) []string {
	out := []string{}
	for _, r := range runs {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out
}

// indexed are the names of the runs under key of the index name, whatever
// their shape: what a question reads before it filters.
func indexed(t *testing.T, idx cache.Indexer, name, key string) []string {
	t.Helper()
	objs, err := idx.ByIndex(name, key)
	require.NoError(t, err)
	out := []string{}
	for _, o := range objs {
		k, err := cache.MetaNamespaceKeyFunc(o)
		require.NoError(t, err)
		_, n, _ := cache.SplitMetaNamespaceKey(k)
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Every question reads both shapes of a run, and the indexes hold only the
// runs their question is about.
func TestStoreQuestions(t *testing.T) {
	s, idx := newStore(t,
		run("waiting"),
		run("admitted", admitted),
		run("done", finished(v1alpha1.ReasonTimeout)),
		run("elsewhere", instance("other")),
		run("child", childOf("admitted"), admitted),
		run("waiting-child", childOf("admitted")),
		run("done-child", childOf("admitted"), finished(v1alpha1.ReasonTooManyChildren)),
	)
	require.IsType(t, &runcache.FinishedRun{}, func() any { o, _, _ := idx.GetByKey("ns/done"); return o }())

	got, err := s.Get("ns", "done")
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.PhaseFailed, got.Status.Phase, "a record is rebuilt")
	_, err = s.Get("ns", "missing")
	assert.True(t, apierrors.IsNotFound(err))

	assert.True(t, s.FinishedAtRest(cache.ObjectName{Namespace: "ns", Name: "done"}))
	assert.False(t, s.FinishedAtRest(cache.ObjectName{Namespace: "ns", Name: "admitted"}))
	assert.False(t, s.FinishedAtRest(cache.ObjectName{Namespace: "ns", Name: "missing"}))

	assert.Equal(t, []string{"admitted", "child", "elsewhere", "waiting", "waiting-child"}, names(s.Live()))
	assert.Equal(t, []string{"admitted", "child", "waiting", "waiting-child"}, names(s.LiveOfInstance("ns", "inst")))
	assert.Equal(t, []string{"child", "waiting-child"}, names(s.LiveSubagents("ns", "inst")))
	assert.Equal(t, []string{"child", "waiting-child"}, names(s.LiveChildren("ns", "admitted")))
	assert.Equal(t, []string{"child", "done-child", "waiting-child"}, names(s.Children("ns", "admitted")), "finished children too")
	assert.Equal(t, []string{"waiting", "waiting-child"}, names(s.Waiting(InstanceKey("ns", "inst"))))
	waitingAt := s.WaitingInstances()
	sort.Strings(waitingAt)
	assert.Equal(t, []string{"ns/inst", "ns/other"}, waitingAt)

	h, err := s.Histories("ns", "inst")
	require.NoError(t, err)
	var hist []string
	for _, r := range h {
		hist = append(hist, r.Name)
	}
	sort.Strings(hist)
	assert.Equal(t, []string{"admitted", "child", "done", "done-child", "waiting", "waiting-child"}, hist)

	type pr struct {
		phase  v1alpha1.AgentRunPhase
		reason string
	}
	counts := map[pr]int{}
	for _, sum := range s.Summaries() {
		if sum.Phase.IsTerminal() {
			counts[pr{sum.Phase, sum.Reason}]++
		} else {
			counts[pr{phase: sum.Phase}]++
		}
	}
	assert.Equal(t, map[pr]int{
		{phase: ""}:                    3,
		{phase: v1alpha1.PhasePending}: 2,
		{v1alpha1.PhaseFailed, v1alpha1.ReasonTimeout}:         1,
		{v1alpha1.PhaseFailed, v1alpha1.ReasonTooManyChildren}: 1,
	}, counts, "every run summarised, a record without being rebuilt")

	// The indexes hold only what their question is about: a wake reads
	// the waiting runs, not every run of a busy instance.
	assert.Equal(t, []string{"waiting", "waiting-child"}, indexed(t, idx, waitingRunsByInstance, "ns/inst"))
	assert.Equal(t, []string{"admitted", "child", "waiting", "waiting-child"}, indexed(t, idx, liveRunsByInstance, "ns/inst"))
	cur := run("waiting", admitted)
	require.NoError(t, idx.Update(cur))
	assert.Equal(t, []string{"waiting-child"}, indexed(t, idx, waitingRunsByInstance, "ns/inst"), "an admitted run leaves the index")
}

// An entry reads a run, a record and their tombstones alike.
func TestEntries(t *testing.T) {
	live := run("live", admitted)
	rec, err := runcache.TrimForCache(run("done", finished(v1alpha1.ReasonTimeout)))
	require.NoError(t, err)
	for name, obj := range map[string]any{
		"run": live, "record": rec,
		"run tombstone":    cache.DeletedFinalStateUnknown{Key: "ns/live", Obj: live},
		"record tombstone": cache.DeletedFinalStateUnknown{Key: "ns/done", Obj: rec},
	} {
		t.Run(name, func(t *testing.T) {
			e := EntryOf(obj)
			key, ok := e.Key()
			require.True(t, ok)
			r, ok := e.Run()
			require.True(t, ok)
			assert.Equal(t, key.Name, r.Name)
			h, ok := e.History()
			require.True(t, ok)
			assert.Equal(t, r.Status.Phase, h.Phase)
			ns, inst, ok := e.Instance()
			assert.True(t, ok)
			assert.Equal(t, "ns/inst", InstanceKey(ns, inst))
			assert.Equal(t, r.Status.Phase.IsTerminal(), e.FinishedAtRest())
		})
	}
	_, ok := EntryOf("not a run").Run()
	assert.False(t, ok)

	again, err := runcache.TrimForCache(run("done", finished(v1alpha1.ReasonTimeout)))
	require.NoError(t, err)
	assert.True(t, FinishedResync(EntryOf(rec), EntryOf(again)))
	newer := run("done", finished(v1alpha1.ReasonTimeout))
	newer.ResourceVersion = "2"
	assert.False(t, FinishedResync(EntryOf(rec), EntryOf(newer)))
	assert.False(t, FinishedResync(EntryOf(live), EntryOf(live)), "a live run's resync is no finished resync")
}
