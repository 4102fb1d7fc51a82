package schedule

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	sfake "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/fake"
	sympoziuminformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
	sv1alpha1 "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/schedule"
)

const ns = "ns"

// fixture is the controller over fake clientsets and informers that are
// never started: the test fills their caches.
type fixture struct {
	t         *testing.T
	ctx       context.Context
	client    *sfake.Clientset
	kube      *k8sfake.Clientset
	runs      cache.Indexer
	instances cache.Indexer
	schedules cache.Indexer
	events    *record.FakeRecorder
	clock     *clocktesting.FakeClock
	c         *Controller
}

func newFixture(t *testing.T, now time.Time) *fixture {
	_, ctx := ktesting.NewTestContext(t)
	f := &fixture{t: t, ctx: ctx, client: sfake.NewSimpleClientset(), kube: k8sfake.NewClientset(),
		events: record.NewFakeRecorder(100), clock: clocktesting.NewFakeClock(now)}
	sf := sympoziuminformers.NewSharedInformerFactory(f.client, 0)
	sv := sf.Sympozium().V1alpha1()
	runs := sv1alpha1.ToTypedAgentRunInformer(sv.AgentRuns())
	instances := sv1alpha1.ToTypedSympoziumInstanceInformer(sv.SympoziumInstances())
	schedules := sv1alpha1.ToTypedSympoziumScheduleInformer(sv.SympoziumSchedules())
	c, err := NewController(ctx, f.client, f.kube, schedules, instances, runs, f.events, nil, f.clock)
	require.NoError(t, err)
	t.Cleanup(c.queue.ShutDown)
	t.Cleanup(c.wakes.ShutDown)
	f.c = c
	f.runs, f.instances, f.schedules = runs.Informer().GetIndexer(), instances.Informer().GetIndexer(), schedules.Informer().GetIndexer()
	return f
}

// add puts objects in the API server and in the caches.
func (f *fixture) add(objs ...runtime.Object) {
	for _, o := range objs {
		require.NoError(f.t, f.client.Tracker().Add(o))
		switch o.(type) {
		case *v1alpha1.AgentRun:
			obj, err := runcache.TrimForCache(o.DeepCopyObject())
			require.NoError(f.t, err)
			require.NoError(f.t, f.runs.Add(obj))
		case *v1alpha1.SympoziumInstance:
			require.NoError(f.t, f.instances.Add(o.DeepCopyObject()))
		case *v1alpha1.SympoziumSchedule:
			require.NoError(f.t, f.schedules.Add(o.DeepCopyObject()))
		}
	}
}

// refresh copies the API server's schedule and runs into the caches, as
// their watch events would.
func (f *fixture) refresh(name string) {
	s, err := f.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(f.ctx, name, metav1.GetOptions{})
	require.NoError(f.t, err)
	require.NoError(f.t, f.schedules.Update(s))
	l, err := f.client.SympoziumV1alpha1().AgentRuns(ns).List(f.ctx, metav1.ListOptions{})
	require.NoError(f.t, err)
	for i := range l.Items {
		obj, err := runcache.TrimForCache(l.Items[i].DeepCopy())
		require.NoError(f.t, err)
		require.NoError(f.t, f.runs.Update(obj))
	}
}

func (f *fixture) sync(name string) error {
	f.client.ClearActions()
	f.kube.ClearActions()
	return f.c.sync(f.ctx, cache.ObjectName{Namespace: ns, Name: name})
}

// requests are every request both clientsets were sent.
func (f *fixture) requests() []string {
	var out []string
	for _, a := range append(f.client.Actions(), f.kube.Actions()...) {
		r := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			r += "/" + a.GetSubresource()
		}
		out = append(out, r)
	}
	return out
}

func (f *fixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func newSchedule(mods ...func(*v1alpha1.SympoziumSchedule)) *v1alpha1.SympoziumSchedule {
	s := &v1alpha1.SympoziumSchedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hb", UID: "sched-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(t0.Add(-90 * time.Minute))},
		Spec: v1alpha1.SympoziumScheduleSpec{InstanceRef: "inst", Schedule: "0 * * * *", Task: "check in",
			Type: "heartbeat", ConcurrencyPolicy: "Forbid", IncludeMemory: new(true)},
		Status: v1alpha1.SympoziumScheduleStatus{Phase: "Active", LastRunTime: mtime(t0.Add(-time.Hour)),
			LastScheduleTime: mtime(t0.Add(-time.Hour)), LastRunName: "hb-1", TotalRuns: 1, NextRunTime: mtime(t0),
			Conditions: []metav1.Condition{{Type: schedule.ConditionReady, Status: metav1.ConditionTrue, Reason: schedule.ReasonScheduled,
				ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0.Add(-90 * time.Minute))}}},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func newInstance() *v1alpha1.SympoziumInstance {
	return &v1alpha1.SympoziumInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "inst", UID: "inst-uid"},
		Spec: v1alpha1.SympoziumInstanceSpec{Agents: v1alpha1.AgentsSpec{Default: v1alpha1.AgentConfig{Model: "gpt-4o"}},
			AuthRefs: []v1alpha1.AuthRef{{Provider: "openai", Secret: "key"}}},
	}
}

func scheduledRun(name string, tick time.Time, phase v1alpha1.AgentRunPhase) *v1alpha1.AgentRun {
	return &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(tick),
			Labels:      map[string]string{v1alpha1.LabelInstance: "inst", schedule.LabelSchedule: "hb", schedule.LabelType: "heartbeat"},
			Annotations: map[string]string{schedule.AnnotationScheduledAt: tick.Format(time.RFC3339), schedule.AnnotationScheduleUID: "sched-uid"}},
		Spec:   v1alpha1.AgentRunSpec{InstanceRef: "inst", AgentID: "schedule-hb", Task: "check in", Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}},
		Status: v1alpha1.AgentRunStatus{Phase: phase},
	}
}

func mtime(t time.Time) *metav1.Time {
	m := metav1.NewTime(t)
	return &m
}

func TestTickCreatesTheRunThenRests(t *testing.T) {
	f := newFixture(t, t0.Add(2*time.Second))
	f.add(newSchedule(), newInstance(), scheduledRun("hb-1", t0.Add(-time.Hour), v1alpha1.PhaseSucceeded))
	require.NoError(t, f.kube.Tracker().Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "inst-memory"},
		Data: map[string]string{"MEMORY.md": "- the user likes tea"}}))
	require.NoError(t, f.sync("hb"))
	// (The sympozium clientset's requests, then Kubernetes': the memory is
	// read before the create.)
	assert.Equal(t, []string{"create agentruns", "update sympoziumschedules/status", "get configmaps"}, f.requests())
	run, err := f.client.SympoziumV1alpha1().AgentRuns(ns).Get(f.ctx, "hb-2", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "## Memory Context\n- the user likes tea\n\n## Task\ncheck in", run.Spec.Task)
	assert.Equal(t, "2026-03-01T10:00:00Z", run.Annotations[schedule.AnnotationScheduledAt])
	s, err := f.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(f.ctx, "hb", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "hb-2", s.Status.LastRunName)
	assert.Equal(t, int64(2), s.Status.TotalRuns)
	assert.True(t, s.Status.NextRunTime.Equal(mtime(t0.Add(time.Hour))))
	assert.Equal(t, []string{"Normal RunCreated Created run hb-2 for the tick of 2026-03-01T10:00:00Z"}, f.drainEvents())
	assert.Equal(t, 1, f.c.Pending(), "woken at the next tick")

	// Its own status event and the run's arrive: the sync sends nothing.
	f.refresh("hb")
	f.clock.Step(30 * time.Minute)
	require.NoError(t, f.sync("hb"))
	assert.Empty(t, f.requests(), "0 requests between ticks")
	assert.Empty(t, f.drainEvents())
}

func TestTimerWakesAtTheNextTick(t *testing.T) {
	f := newFixture(t, t0.Add(-time.Minute))
	f.add(newSchedule(), newInstance())
	require.NoError(t, f.sync("hb"))
	assert.Empty(t, f.requests(), "nothing due, nothing written")
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	go f.c.wakes.Run(ctx, func(key cache.ObjectName) { f.c.queue.Add(key) })
	f.clock.Step(59 * time.Second)
	assert.Equal(t, 0, f.c.queue.Len())
	f.clock.Step(time.Second)
	require.Eventually(t, func() bool { return f.c.queue.Len() == 1 }, 10*time.Second, time.Millisecond)
	key, _ := f.c.queue.Get()
	assert.Equal(t, cache.ObjectName{Namespace: ns, Name: "hb"}, key)
}

func TestLegacyFinalizerRemoved(t *testing.T) {
	f := newFixture(t, t0.Add(-time.Minute))
	f.add(newSchedule(func(s *v1alpha1.SympoziumSchedule) {
		s.Finalizers = []string{"sympozium.ai/schedule-finalizer"}
		s.DeletionTimestamp = mtime(t0.Add(-time.Minute))
	}), newInstance())
	require.NoError(t, f.sync("hb"))
	require.Equal(t, []string{"patch sympoziumschedules"}, f.requests())
	p := f.client.Actions()[0].(core.PatchAction)
	assert.JSONEq(t, `[{"op":"test","path":"/metadata/finalizers/0","value":"sympozium.ai/schedule-finalizer"},{"op":"remove","path":"/metadata/finalizers/0"}]`, string(p.GetPatch()))
}

func TestDeletingScheduleDoesNothing(t *testing.T) {
	f := newFixture(t, t0.Add(time.Minute))
	f.add(newSchedule(func(s *v1alpha1.SympoziumSchedule) {
		s.Finalizers = []string{"someone.else/keep"}
		s.DeletionTimestamp = mtime(t0)
	}), newInstance())
	require.NoError(t, f.sync("hb"))
	assert.Empty(t, f.requests())
	assert.Equal(t, 0, f.c.Pending())
}

func TestReplaceCancelsThenCreates(t *testing.T) {
	f := newFixture(t, t0.Add(time.Second))
	f.add(newSchedule(func(s *v1alpha1.SympoziumSchedule) {
		s.Spec.ConcurrencyPolicy = "Replace"
		s.Spec.IncludeMemory = new(false)
	}), newInstance(), scheduledRun("hb-1", t0.Add(-time.Hour), v1alpha1.PhaseRunning))
	require.NoError(t, f.sync("hb"))
	assert.Equal(t, []string{"patch agentruns", "create agentruns", "update sympoziumschedules/status"}, f.requests())
	old, err := f.client.SympoziumV1alpha1().AgentRuns(ns).Get(f.ctx, "hb-1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.True(t, old.Spec.Cancel)
	assert.Equal(t, "SympoziumSchedule hb (concurrencyPolicy Replace)", old.Annotations[v1alpha1.AnnotationCancelledBy])
	_, err = f.client.SympoziumV1alpha1().AgentRuns(ns).Get(f.ctx, "hb-2", metav1.GetOptions{})
	require.NoError(t, err)
}

func TestForbidSkipsWithAnEvent(t *testing.T) {
	f := newFixture(t, t0.Add(time.Second))
	f.add(newSchedule(), newInstance(), scheduledRun("hb-1", t0.Add(-time.Hour), v1alpha1.PhasePending))
	require.NoError(t, f.sync("hb"))
	assert.Equal(t, []string{"update sympoziumschedules/status"}, f.requests(), "lastScheduleTime only")
	assert.Equal(t, []string{"Normal SkippedForbid Skipped the tick of 2026-03-01T10:00:00Z: hb-1 still unfinished (concurrencyPolicy Forbid)"}, f.drainEvents())
}

// A run the API server has for the tick but the cache does not yet hold
// (the status write after its create was lost, and the sync came before
// the run's event): AlreadyExists is retried, never counted nor passed
// over; once the cache holds it, the tick counts as fired.
func TestAlreadyExistsWaitsForTheCache(t *testing.T) {
	f := newFixture(t, t0.Add(time.Second))
	f.add(newSchedule(func(s *v1alpha1.SympoziumSchedule) { s.Spec.IncludeMemory = new(false) }), newInstance())
	require.NoError(t, f.client.Tracker().Add(scheduledRun("hb-2", t0, v1alpha1.PhasePending)))
	err := f.sync("hb")
	require.True(t, apierrors.IsAlreadyExists(err), "%v", err)
	assert.Equal(t, []string{"create agentruns"}, f.requests())
	f.refresh("hb")
	require.NoError(t, f.sync("hb"))
	assert.Equal(t, []string{"update sympoziumschedules/status"}, f.requests())
	s, err := f.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(f.ctx, "hb", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "hb-2", s.Status.LastRunName)
	assert.Equal(t, int64(2), s.Status.TotalRuns)
	l, err := f.client.SympoziumV1alpha1().AgentRuns(ns).List(f.ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, l.Items, 1, "no second run for the tick")
}

func TestRejectedRunIsAConditionAndAnEvent(t *testing.T) {
	f := newFixture(t, t0.Add(time.Second))
	f.add(newSchedule(func(s *v1alpha1.SympoziumSchedule) { s.Spec.IncludeMemory = new(false) }), newInstance())
	f.client.PrependReactor("create", "agentruns", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(v1alpha1.SchemeGroupVersion.WithKind("AgentRun").GroupKind(), "hb-2",
			field.ErrorList{field.Required(field.NewPath("spec", "model", "model"), "")})
	})
	require.NoError(t, f.sync("hb"))
	s, err := f.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(f.ctx, "hb", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), s.Status.TotalRuns)
	assert.True(t, s.Status.LastScheduleTime.Equal(mtime(t0)))
	require.Len(t, s.Status.Conditions, 1)
	assert.Equal(t, schedule.ReasonCreateFailed, s.Status.Conditions[0].Reason)
	ev := f.drainEvents()
	require.Len(t, ev, 1)
	assert.Contains(t, ev[0], "Warning CreateFailed Could not create run hb-2 for the tick of 2026-03-01T10:00:00Z")
	assert.Contains(t, ev[0], "spec.model.model: Required value")
}

func TestMissingInstanceIsNotPolled(t *testing.T) {
	f := newFixture(t, t0.Add(time.Second))
	f.add(newSchedule())
	require.NoError(t, f.sync("hb"))
	assert.Equal(t, []string{"update sympoziumschedules/status"}, f.requests())
	assert.Equal(t, 0, f.c.Pending(), "no timer while the instance is missing")
	f.refresh("hb")
	require.NoError(t, f.sync("hb"))
	assert.Empty(t, f.requests())
	// The instance's creation wakes the schedule.
	require.NoError(t, f.instances.Add(newInstance()))
	f.c.wakeSchedulesOf(cache.ObjectName{Namespace: ns, Name: "inst"})
	assert.Equal(t, 1, f.c.queue.Len())
}
