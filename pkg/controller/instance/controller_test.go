package instance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	sfake "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/fake"
	sympoziuminformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
	sv1alpha1 "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
)

const testNS = "ns"

var (
	t0           = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	agentrunsGVR = v1alpha1.SchemeGroupVersion.WithResource("agentruns")
	instancesGVR = v1alpha1.SchemeGroupVersion.WithResource("sympoziuminstances")
)

// fixture is the instance controller over a fake clientset and informers
// that are never started.
type fixture struct {
	t         *testing.T
	ctx       context.Context
	client    *sfake.Clientset
	runs      cache.Indexer
	instances cache.Indexer
	c         *Controller
	clock     *clocktesting.FakeClock
}

func newFixture(t *testing.T) *fixture {
	_, ctx := ktesting.NewTestContext(t)
	f := &fixture{t: t, ctx: ctx, client: sfake.NewSimpleClientset()}
	sf := sympoziuminformers.NewSharedInformerFactory(f.client, 0)
	kf := informers.NewSharedInformerFactory(k8sfake.NewClientset(), 0)
	sv := sf.Sympozium().V1alpha1()
	runs := sv1alpha1.ToTypedAgentRunInformer(sv.AgentRuns())
	instances := sv1alpha1.ToTypedSympoziumInstanceInformer(sv.SympoziumInstances())
	f.clock = clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	c, err := NewController(ctx, f.client, instances, runs, kf.Core().V1().Pods().Informer(), nil, f.clock)
	require.NoError(t, err)
	t.Cleanup(c.queue.ShutDown)
	f.c = c
	f.runs = runs.Informer().GetIndexer()
	f.instances = instances.Informer().GetIndexer()
	return f
}

func (f *fixture) add(objs ...runtime.Object) {
	for _, o := range objs {
		require.NoError(f.t, f.client.Tracker().Add(o))
		switch o.(type) {
		case *v1alpha1.AgentRun:
			obj := cached(f.t, o)
			require.NoError(f.t, f.runs.Add(obj))
			f.c.tally.add(runstore.EntryOf(obj), +1) // what the run handler does with the event
		case *v1alpha1.SympoziumInstance:
			require.NoError(f.t, f.instances.Add(o.DeepCopyObject()))
		}
	}
}

// refresh copies the tracker's objects into the indexers.
func (f *fixture) refresh() {
	for gvr, idx := range map[string]cache.Indexer{"AgentRun": f.runs, "SympoziumInstance": f.instances} {
		res := agentrunsGVR
		if gvr == "SympoziumInstance" {
			res = instancesGVR
		}
		l, err := f.client.Tracker().List(res, v1alpha1.SchemeGroupVersion.WithKind(gvr), "")
		require.NoError(f.t, err)
		items, err := meta.ExtractList(l)
		require.NoError(f.t, err)
		objs := make([]any, 0, len(items))
		for _, it := range items {
			objs = append(objs, cached(f.t, it))
		}
		if idx == f.runs {
			// The events the informer would deliver, as the tally sees
			// them: every old run out, every current one in.
			for _, old := range f.runs.List() {
				f.c.tally.add(runstore.EntryOf(old), -1)
			}
			for _, o := range objs {
				f.c.tally.add(runstore.EntryOf(o), +1)
			}
		}
		require.NoError(f.t, idx.Replace(objs, ""))
	}
}

// cached is o as the informers' transform keeps it (runcache.TrimForCache): a
// finished run as a *runcache.FinishedRun record.
func cached(t *testing.T, o runtime.Object) any {
	t.Helper()
	out, err := runcache.TrimForCache(o.DeepCopyObject())
	require.NoError(t, err)
	return out
}

func (f *fixture) sync(name string) error {
	return f.c.sync(f.ctx, cache.ObjectName{Namespace: testNS, Name: name})
}

func writes(actions []core.Action) []core.Action {
	var out []core.Action
	for _, a := range actions {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		out = append(out, a)
	}
	return out
}

func newInstance(opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
	i := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: testNS, UID: "inst-uid", Generation: 3}}
	for _, o := range opts {
		o(i)
	}
	return i
}

func newRun(name string, created time.Time, ph v1alpha1.AgentRunPhase, completed *time.Time) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID(name + "-uid"), CreationTimestamp: metav1.NewTime(created)},
		Spec:       v1alpha1.AgentRunSpec{InstanceRef: "inst", AgentID: "default", SessionKey: "s", Task: "t"},
		Status:     v1alpha1.AgentRunStatus{Phase: ph},
	}
	if completed != nil {
		r.Status.CompletedAt = new(metav1.NewTime(*completed))
	}
	return r
}

type deleted struct {
	name   string
	uid    types.UID
	policy metav1.DeletionPropagation
}

func deletes(t *testing.T, actions []core.Action) []deleted {
	var out []deleted
	for _, a := range actions {
		if a.GetVerb() != "delete" {
			continue
		}
		d := a.(core.DeleteActionImpl)
		require.Equal(t, "agentruns", d.GetResource().Resource)
		require.Equal(t, testNS, d.GetNamespace())
		opts := d.GetDeleteOptions()
		require.NotNil(t, opts.Preconditions, "delete of %s without preconditions", d.GetName())
		require.NotNil(t, opts.Preconditions.UID, "delete of %s without a UID precondition", d.GetName())
		require.NotNil(t, opts.PropagationPolicy)
		out = append(out, deleted{d.GetName(), *opts.Preconditions.UID, *opts.PropagationPolicy})
	}
	return out
}

func TestSyncPrunesOldestFinishedRuns(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance())
	// Live runs, older than every finished one: never pruned.
	f.add(newRun("live-running", t0.Add(-time.Hour), v1alpha1.PhaseRunning, nil),
		newRun("live-pending", t0.Add(-time.Hour), v1alpha1.PhasePending, nil))
	// 55 finished runs; done-00 finished first. Creation order is the
	// reverse of completion order, so sorting by creation would be wrong.
	for i := range 55 {
		ph := v1alpha1.PhaseSucceeded
		if i%2 == 1 {
			ph = v1alpha1.PhaseFailed
		}
		done := t0.Add(time.Duration(i) * time.Minute)
		f.add(newRun(fmt.Sprintf("done-%02d", i), t0.Add(-time.Duration(i)*time.Second), ph, &done))
	}

	require.NoError(t, f.sync("inst"))

	acts := writes(f.client.Actions())
	require.Len(t, acts, 6, "5 deletes and 1 status update")
	want := make([]deleted, 0, 5)
	for i := range 5 {
		n := fmt.Sprintf("done-%02d", i)
		want = append(want, deleted{n, types.UID(n + "-uid"), metav1.DeletePropagationBackground})
	}
	assert.Equal(t, want, deletes(t, acts[:5]), "the 5 oldest finished runs, oldest first")
	upd := acts[5]
	require.Equal(t, "update", upd.GetVerb())
	require.Equal(t, "sympoziuminstances", upd.GetResource().Resource)
	require.Equal(t, "status", upd.GetSubresource())
	// done-05..done-54: 25 even (Succeeded), 25 odd (Failed).
	assert.Equal(t, v1alpha1.SympoziumInstanceStatus{ObservedGeneration: 3, ActiveRuns: 1, Phase: "Running", ActiveAgentPods: 1, WaitingRuns: 1, SucceededRuns: 25, FailedRuns: 25},
		upd.(core.UpdateAction).GetObject().(*v1alpha1.SympoziumInstance).Status)

	// The cache catches up: nothing more to do.
	f.refresh()
	f.client.ClearActions()
	require.NoError(t, f.sync("inst"))
	assert.Empty(t, writes(f.client.Actions()))
}

func TestSyncKeepsTheFinishedParentOfALiveRun(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.RunHistoryLimit = ptr.To[int32](1) }))
	parentDone, otherDone := t0, t0.Add(time.Minute)
	child := newRun("child", t0, v1alpha1.PhaseRunning, nil)
	child.Spec.Parent = &v1alpha1.ParentRef{RunName: "parent", SpawnDepth: 1}
	f.add(newRun("parent", t0, v1alpha1.PhaseSucceeded, &parentDone), newRun("other", t0, v1alpha1.PhaseSucceeded, &otherDone), child)

	require.NoError(t, f.sync("inst"))

	acts := writes(f.client.Actions())
	assert.Equal(t, []deleted{{"other", "other-uid", metav1.DeletePropagationBackground}}, deletes(t, acts),
		"deleting the parent would garbage-collect its live child")
	require.Len(t, acts, 2)
	assert.Equal(t, v1alpha1.SympoziumInstanceStatus{ObservedGeneration: 3, ActiveRuns: 1, Phase: "Running", ActiveAgentPods: 1, SucceededRuns: 1},
		acts[1].(core.UpdateAction).GetObject().(*v1alpha1.SympoziumInstance).Status)
}

func TestSyncUnderTheLimitOnlyCounts(t *testing.T) {
	f := newFixture(t)
	done := t0
	f.add(newInstance(), newRun("a", t0, v1alpha1.PhaseSucceeded, &done), newRun("b", t0, v1alpha1.PhasePending, nil))
	other := newRun("c", t0, v1alpha1.PhaseFailed, &done)
	other.Spec.InstanceRef = "other"
	f.add(other)

	require.NoError(t, f.sync("inst"))

	acts := writes(f.client.Actions())
	require.Len(t, acts, 1)
	assert.Equal(t, "update", acts[0].GetVerb())
	assert.Equal(t, v1alpha1.SympoziumInstanceStatus{ObservedGeneration: 3, Phase: "Running", WaitingRuns: 1, SucceededRuns: 1},
		acts[0].(core.UpdateAction).GetObject().(*v1alpha1.SympoziumInstance).Status, "runs of other instances are not counted")
}

func TestSyncDeleteError(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.RunHistoryLimit = ptr.To[int32](1) }))
	d0, d1, d2 := t0, t0.Add(time.Minute), t0.Add(2*time.Minute)
	f.add(newRun("a", t0, v1alpha1.PhaseSucceeded, &d0), newRun("b", t0, v1alpha1.PhaseSucceeded, &d1), newRun("c", t0, v1alpha1.PhaseSucceeded, &d2))
	f.client.PrependReactor("delete", "agentruns", func(a core.Action) (bool, runtime.Object, error) {
		if a.(core.DeleteAction).GetName() == "a" {
			return true, nil, apierrors.NewInternalError(errors.New("injected"))
		}
		return false, nil, nil
	})

	err := f.sync("inst")
	require.Error(t, err)
	assert.True(t, apierrors.IsInternalError(err))
	acts := writes(f.client.Actions())
	assert.Equal(t, []deleted{{"a", "a-uid", metav1.DeletePropagationBackground}, {"b", "b-uid", metav1.DeletePropagationBackground}},
		deletes(t, acts), "one failed delete does not stop the others")
	require.Len(t, acts, 3)
	assert.Equal(t, v1alpha1.SympoziumInstanceStatus{ObservedGeneration: 3, Phase: "Running", SucceededRuns: 2},
		acts[2].(core.UpdateAction).GetObject().(*v1alpha1.SympoziumInstance).Status, "the run not deleted is still counted")
}

func TestSyncNotFoundAndConflictOnDeleteAreNotErrors(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.RunHistoryLimit = ptr.To[int32](0) }))
	d0 := t0
	f.add(newRun("a", t0, v1alpha1.PhaseSucceeded, &d0))
	// The run was deleted and recreated under the same name: the UID
	// precondition fails with a Conflict.
	f.client.PrependReactor("delete", "agentruns", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(agentrunsGVR.GroupResource(), "a", errors.New("precondition failed: UID"))
	})
	require.NoError(t, f.sync("inst"))
}

func TestSyncDeletedInstance(t *testing.T) {
	f := newFixture(t)
	done := t0
	f.add(newRun("a", t0, v1alpha1.PhaseSucceeded, &done))
	require.NoError(t, f.sync("inst"))
	assert.Empty(t, f.client.Actions())
}

// The controller's own status write comes back as an update event; it must
// not trigger another sync at once (a write loop during a burst of runs),
// while a spec change does.
func TestStatusOnlyUpdateIsCoalesced(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := sfake.NewSimpleClientset(newInstance())
	sf := sympoziuminformers.NewSharedInformerFactory(client, 0)
	sv := sf.Sympozium().V1alpha1()
	c, err := NewController(ctx, client, sv1alpha1.ToTypedSympoziumInstanceInformer(sv.SympoziumInstances()),
		sv1alpha1.ToTypedAgentRunInformer(sv.AgentRuns()), informers.NewSharedInformerFactory(k8sfake.NewClientset(), 0).Core().V1().Pods().Informer(), nil, nil)
	require.NoError(t, err)
	defer c.queue.ShutDown()
	c.coalesce = time.Hour
	sf.Start(ctx.Done())
	require.True(t, cache.WaitForCacheSync(ctx.Done(), c.HasSynced))
	key := cache.ObjectName{Namespace: testNS, Name: "inst"}
	take := func() {
		t.Helper()
		require.Eventually(t, func() bool { return c.queue.Len() == 1 }, 10*time.Second, 10*time.Millisecond)
		got, _ := c.queue.Get()
		assert.Equal(t, key, got)
		c.queue.Done(got)
	}
	take() // the add

	inst, err := client.SympoziumV1alpha1().SympoziumInstances(testNS).Get(ctx, "inst", metav1.GetOptions{})
	require.NoError(t, err)
	inst.ResourceVersion = "2"
	inst.Status.ActiveRuns = 7
	_, err = client.SympoziumV1alpha1().SympoziumInstances(testNS).UpdateStatus(ctx, inst, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		i, err := sv.SympoziumInstances().Lister().SympoziumInstances(testNS).Get("inst")
		return err == nil && i.Status.ActiveRuns == 7
	}, 10*time.Second, 10*time.Millisecond)
	// A barrier, not a sleep: the informer hands its events to the handler
	// in order, so once the add of another instance, made after the status
	// update, is queued, the update has been handled; had it queued inst at
	// once, inst would be served first.
	other := newInstance(func(i *v1alpha1.SympoziumInstance) { i.Name, i.UID = "other", "other-uid" })
	_, err = client.SympoziumV1alpha1().SympoziumInstances(testNS).Create(ctx, other, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.queue.Len() > 0 }, 10*time.Second, 10*time.Millisecond)
	got, _ := c.queue.Get()
	c.queue.Done(got)
	assert.Equal(t, cache.ObjectName{Namespace: testNS, Name: "other"}, got, "a status-only update waits for the coalescing period")
	assert.Zero(t, c.queue.Len(), "a status-only update waits for the coalescing period")

	inst.ResourceVersion = "3"
	inst.Generation++
	inst.Spec.RunHistoryLimit = ptr.To[int32](5)
	_, err = client.SympoziumV1alpha1().SympoziumInstances(testNS).Update(ctx, inst, metav1.UpdateOptions{})
	require.NoError(t, err)
	take() // a spec change goes in at once
}
