package agentrun

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/metadata/metadatainformer"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2/ktesting"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	sfake "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/fake"
	sympoziuminformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
	sv1alpha1 "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
)

const testNS = "ns"

var (
	// t0 is the creation time of every run unless a test says otherwise;
	// the fixture's clock starts one minute later.
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	agentrunsGVR   = v1alpha1.SchemeGroupVersion.WithResource("agentruns")
	instancesGVR   = v1alpha1.SchemeGroupVersion.WithResource("sympoziuminstances")
	skillpacksGVR  = v1alpha1.SchemeGroupVersion.WithResource("skillpacks")
	jobsGVR        = batchv1.SchemeGroupVersion.WithResource("jobs")
	deploymentsGVR = appsv1.SchemeGroupVersion.WithResource("deployments")
	servicesGVR    = corev1.SchemeGroupVersion.WithResource("services")
	podsGVR        = corev1.SchemeGroupVersion.WithResource("pods")
	configMapsGVR  = corev1.SchemeGroupVersion.WithResource("configmaps")

	testPhaseConfig = phase.Config{
		Workload: workload.Config{AgentImage: "agent:test", SandboxImage: "sandbox:test", DefaultTimeout: 10 * time.Minute, DeadlineSlack: 15 * time.Second},
		Grace:    30 * time.Second,
	}
)

// fixture is a Controller over fake clientsets and informers that are never
// started: tests fill the trackers and the indexers themselves, call sync
// and read the actions the controller made.
type fixture struct {
	t   testing.TB
	ctx context.Context

	client   *sfake.Clientset
	kube     *k8sfake.Clientset
	meta     *metadatafake.FakeMetadataClient
	inf      Informers
	kf       informers.SharedInformerFactory
	recorder *record.FakeRecorder
	c        *Controller
	handlers map[phase.Kind][]cache.ResourceEventHandler

	clk *testingclock.FakeClock
}

// The kinds of the informers the fixture captures handlers of besides the
// children's (f.handlers).
const (
	kindRun       phase.Kind = "AgentRun"
	kindInstance  phase.Kind = "SympoziumInstance"
	kindSkillPack phase.Kind = "SkillPack"
)

// handler returns the one event handler NewController registered on the
// informer of kind, captured so that tests can call it directly (Job
// controller style). Typed handlers are captured as client-go adapts them:
// they take the untyped calls an informer makes (OnDelete with the object,
// or a cache.DeletedFinalStateUnknown).
func (f *fixture) handler(kind phase.Kind) cache.ResourceEventHandler {
	f.t.Helper()
	require.Len(f.t, f.handlers[kind], 1, "handlers of %s", kind)
	return f.handlers[kind][0]
}

type fixtureOption func(*Options)

func withLogs(l LogReader) fixtureOption { return func(o *Options) { o.Logs = l } }

func newFixture(t testing.TB, opts ...fixtureOption) *fixture {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	f := &fixture{t: t, ctx: ctx, clk: testingclock.NewFakeClock(t0.Add(time.Minute)), handlers: map[phase.Kind][]cache.ResourceEventHandler{}}
	f.client = sfake.NewSimpleClientset()
	f.kube = k8sfake.NewClientset()
	scheme := metadatafake.NewTestScheme()
	require.NoError(t, metav1.AddMetaToScheme(scheme))
	require.NoError(t, corev1.AddToScheme(scheme))
	f.meta = metadatafake.NewSimpleMetadataClient(scheme)

	sf := sympoziuminformers.NewSharedInformerFactory(f.client, 0)
	f.kf = informers.NewSharedInformerFactory(f.kube, 0)
	mf := metadatainformer.NewSharedInformerFactory(f.meta, 0)
	sv := sf.Sympozium().V1alpha1()
	f.inf = Informers{
		Runs:       sv1alpha1.ToTypedAgentRunInformer(sv.AgentRuns()),
		Instances:  sv1alpha1.ToTypedSympoziumInstanceInformer(sv.SympoziumInstances()),
		SkillPacks: sv1alpha1.ToTypedSkillPackInformer(sv.SkillPacks()),
		Children:   ChildFactory(f.kf),
		ConfigMaps: mf.ForResource(configMapsGVR),
	}
	o := Options{Phase: testPhaseConfig, Clock: f.clk}
	for _, fn := range opts {
		fn(&o)
	}
	f.recorder = record.NewFakeRecorder(100)
	c, err := NewController(ctx, f.client, f.kube, f.capturing(f.inf), f.recorder, o)
	require.NoError(t, err)
	f.c = c
	t.Cleanup(c.queue.ShutDown)
	t.Cleanup(c.wakes.ShutDown)
	return f
}

func (f *fixture) clock() time.Time { return f.clk.Now() }

func (f *fixture) setNow(t time.Time) { f.clk.SetTime(t) }

func (f *fixture) key(name string) cache.ObjectName {
	return cache.ObjectName{Namespace: testNS, Name: name}
}

// indexers returns every indexer the controller reads, by resource: the
// children's are the registered childCache kinds'.
func (f *fixture) indexers() map[schema.GroupVersionResource]cache.Indexer {
	out := map[schema.GroupVersionResource]cache.Indexer{
		agentrunsGVR:  f.inf.Runs.Informer().GetIndexer(),
		instancesGVR:  f.inf.Instances.Informer().GetIndexer(),
		skillpacksGVR: f.inf.SkillPacks.Informer().GetIndexer(),
		configMapsGVR: f.inf.ConfigMaps.Informer().GetIndexer(),
	}
	for _, k := range cachedChildKinds() {
		gi, err := f.kf.ForResource(k.resource)
		require.NoError(f.t, err)
		out[k.resource] = gi.Informer().GetIndexer()
	}
	return out
}

// cachedChildKinds are the registered kinds the child informers cache.
func cachedChildKinds() []childKind {
	var out []childKind
	for _, r := range registrations {
		for _, k := range r.kinds {
			if k.cache == childCache {
				out = append(out, k)
			}
		}
	}
	return out
}

// childResource is the resource of o, a child of a registered childCache
// kind.
func (f *fixture) childResource(o runtime.Object) schema.GroupVersionResource {
	f.t.Helper()
	gvks, _, err := kubescheme.Scheme.ObjectKinds(o)
	require.NoError(f.t, err)
	for _, k := range cachedChildKinds() {
		if k.resource.GroupVersion().WithKind(string(k.kind)) == gvks[0] {
			return k.resource
		}
	}
	f.t.Fatalf("%T is no cached kind of child", o)
	return schema.GroupVersionResource{}
}

// add puts objects in their fake clientset and in the informer cache.
func (f *fixture) add(objs ...runtime.Object) {
	f.t.Helper()
	f.addToTracker(objs...)
	f.addToCache(objs...)
}

// addToTracker puts objects in their fake clientset only (the API server
// has them, the cache does not yet).
func (f *fixture) addToTracker(objs ...runtime.Object) {
	f.t.Helper()
	for _, o := range objs {
		switch o.(type) {
		case *v1alpha1.AgentRun, *v1alpha1.SympoziumInstance, *v1alpha1.SkillPack:
			require.NoError(f.t, f.client.Tracker().Add(o))
		default:
			require.NoError(f.t, f.kube.Tracker().Add(o))
		}
	}
}

// addToCache puts objects in the informer cache only.
func (f *fixture) addToCache(objs ...runtime.Object) {
	f.t.Helper()
	idx := f.indexers()
	for _, o := range objs {
		o = o.DeepCopyObject()
		var gvr schema.GroupVersionResource
		var cached any = o
		switch obj := o.(type) {
		case *v1alpha1.AgentRun:
			// As the informer's transform keeps it: a finished run as a
			// record.
			gvr, cached = agentrunsGVR, asCached(f.t, obj)
		case *v1alpha1.SympoziumInstance:
			gvr = instancesGVR
		case *v1alpha1.SkillPack:
			gvr = skillpacksGVR
		case *corev1.ConfigMap:
			gvr, o = configMapsGVR, partial(obj)
		default:
			gvr = f.childResource(o)
		}
		if gvr != agentrunsGVR {
			cached = o
		}
		require.NoError(f.t, idx[gvr].Add(cached))
	}
}

// asCached is run as the run informer's store holds it (runcache.TrimForCache):
// a finished run as a *runcache.FinishedRun record.
func asCached(t testing.TB, run *v1alpha1.AgentRun) any {
	t.Helper()
	out, err := runcache.TrimForCache(run.DeepCopy())
	require.NoError(t, err)
	return out
}

func partial(cm *corev1.ConfigMap) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: *cm.ObjectMeta.DeepCopy()}
}

// update replaces objects in their fake clientset and in the cache.
func (f *fixture) update(objs ...runtime.Object) {
	f.t.Helper()
	for _, o := range objs {
		m, err := meta.Accessor(o)
		require.NoError(f.t, err)
		switch o.(type) {
		case *v1alpha1.AgentRun:
			require.NoError(f.t, f.client.Tracker().Update(agentrunsGVR, o, m.GetNamespace()))
		default:
			require.NoError(f.t, f.kube.Tracker().Update(f.childResource(o), o, m.GetNamespace(), metav1.UpdateOptions{FieldManager: "test"}))
		}
	}
	f.refresh()
}

// refresh copies the trackers' current objects into the indexers, as the
// informers would once the watch events arrived.
func (f *fixture) refresh() {
	f.t.Helper()
	idx := f.indexers()
	list := func(tr core.ObjectTracker, gvr schema.GroupVersionResource, gvk schema.GroupVersionKind) []runtime.Object {
		l, err := tr.List(gvr, gvk, "")
		require.NoError(f.t, err)
		items, err := meta.ExtractList(l)
		require.NoError(f.t, err)
		return items
	}
	replace := func(gvr schema.GroupVersionResource, items []runtime.Object, conv func(runtime.Object) any) {
		objs := make([]any, 0, len(items))
		for _, it := range items {
			objs = append(objs, conv(it))
		}
		require.NoError(f.t, idx[gvr].Replace(objs, ""))
	}
	same := func(o runtime.Object) any { return o }
	sgv := v1alpha1.SchemeGroupVersion
	replace(agentrunsGVR, list(f.client.Tracker(), agentrunsGVR, sgv.WithKind("AgentRun")),
		func(o runtime.Object) any { return asCached(f.t, o.(*v1alpha1.AgentRun)) })
	replace(instancesGVR, list(f.client.Tracker(), instancesGVR, sgv.WithKind("SympoziumInstance")), same)
	replace(skillpacksGVR, list(f.client.Tracker(), skillpacksGVR, sgv.WithKind("SkillPack")), same)
	for _, k := range cachedChildKinds() {
		replace(k.resource, list(f.kube.Tracker(), k.resource, k.resource.GroupVersion().WithKind(string(k.kind))), same)
	}
	replace(configMapsGVR, list(f.kube.Tracker(), configMapsGVR, corev1.SchemeGroupVersion.WithKind("ConfigMap")),
		func(o runtime.Object) any { return partial(o.(*corev1.ConfigMap)) })
}

// sync runs one sync of the named run. It also checks that the sync left
// the informer cache exactly as it was: cached objects are read-only.
func (f *fixture) sync(name string) error {
	f.t.Helper()
	before := f.snapshot()
	err := f.c.sync(f.ctx, f.key(name))
	require.True(f.t, apiequality.Semantic.DeepEqual(before, f.snapshot()), "sync of %s mutated the informer cache", name)
	return err
}

func (f *fixture) snapshot() map[schema.GroupVersionResource][]runtime.Object {
	out := map[schema.GroupVersionResource][]runtime.Object{}
	for gvr, idx := range f.indexers() {
		objs := idx.List()
		sort.Slice(objs, func(i, j int) bool {
			a, _ := cache.MetaNamespaceKeyFunc(objs[i])
			b, _ := cache.MetaNamespaceKeyFunc(objs[j])
			return a < b
		})
		for _, o := range objs {
			if r, ok := o.(*runcache.FinishedRun); ok {
				o = r.AgentRun() // its content, maps and pointers included
			}
			out[gvr] = append(out[gvr], o.(runtime.Object).DeepCopyObject())
		}
	}
	return out
}

// clientWrites and kubeWrites are the actions on each clientset that are
// not reads (the listers are used for reads, so none are expected anyway).
func (f *fixture) clientWrites() []core.Action { return writeActions(f.client.Actions()) }
func (f *fixture) kubeWrites() []core.Action   { return writeActions(f.kube.Actions()) }

func writeActions(actions []core.Action) []core.Action {
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

func (f *fixture) clearActions() {
	f.client.ClearActions()
	f.kube.ClearActions()
}

// converge runs up to rounds passes of: sync, copy the trackers into the
// indexers, clear the actions. It fails unless a pass makes no write and
// returns no error, and returns the number of passes.
func (f *fixture) converge(name string, rounds int) int {
	f.t.Helper()
	for i := 1; i <= rounds; i++ {
		f.clearActions()
		err := f.sync(name)
		w := append(f.clientWrites(), f.kubeWrites()...)
		f.refresh()
		if err == nil && len(w) == 0 {
			f.clearActions()
			return i
		}
		f.t.Logf("convergence pass %d: err=%v writes=%v", i, err, describe(w))
	}
	f.t.Fatalf("%s did not converge in %d passes", name, rounds)
	return 0
}

// trackedRun returns the run as the fake API server has it.
func (f *fixture) trackedRun(name string) *v1alpha1.AgentRun {
	f.t.Helper()
	o, err := f.client.Tracker().Get(agentrunsGVR, testNS, name)
	require.NoError(f.t, err)
	return o.(*v1alpha1.AgentRun)
}

func (f *fixture) trackedJob(name string) (*batchv1.Job, error) {
	o, err := f.kube.Tracker().Get(jobsGVR, testNS, name)
	if err != nil {
		return nil, err
	}
	return o.(*batchv1.Job), nil
}

// events drains the fake recorder.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// queued drains the keys that are ready in the queue (not the delayed ones).
func (f *fixture) queued() []string {
	var out []string
	for f.c.queue.Len() > 0 {
		k, _ := f.c.queue.Get()
		f.c.queue.Done(k)
		f.c.queue.Forget(k)
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

// describe renders actions as "verb resource[/subresource] namespace/name".
func describe(actions []core.Action) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		res := a.GetResource().Resource
		if s := a.GetSubresource(); s != "" {
			res += "/" + s
		}
		name := ""
		switch act := a.(type) {
		case core.CreateAction:
			m, _ := meta.Accessor(act.GetObject())
			name = m.GetName()
		case core.UpdateAction:
			m, _ := meta.Accessor(act.GetObject())
			name = m.GetName()
		case core.DeleteAction:
			name = act.GetName()
		case core.PatchAction:
			name = act.GetName()
		case core.GetAction:
			name = act.GetName()
		}
		out = append(out, fmt.Sprintf("%s %s %s/%s", a.GetVerb(), res, a.GetNamespace(), name))
	}
	return out
}

// object returns the object of a create or update action.
func object[T runtime.Object](t *testing.T, a core.Action) T {
	t.Helper()
	var o runtime.Object
	switch act := a.(type) {
	case core.CreateAction:
		o = act.GetObject()
	case core.UpdateAction:
		o = act.GetObject()
	default:
		t.Fatalf("%s has no object", describe([]core.Action{a}))
	}
	v, ok := o.(T)
	require.True(t, ok, "object of %s is %T", describe([]core.Action{a}), o)
	return v
}

// injectError makes every call of verb on resource (and subresource) fail
// until the returned func is called.
func injectError(fk *core.Fake, verb, resource, subresource string) (remove func()) {
	fk.PrependReactor(verb, resource, func(a core.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != subresource {
			return false, nil, nil
		}
		return true, nil, apierrors.NewInternalError(errors.New("injected " + verb + " " + resource))
	})
	return func() {
		fk.Lock()
		defer fk.Unlock()
		fk.ReactionChain = fk.ReactionChain[1:]
	}
}

// capturing wraps the informers so that the handlers NewController
// registers are kept in f.handlers, by kind.
func (f *fixture) capturing(inf Informers) Informers {
	inf.Runs = runInformer{inf.Runs, f.capture(kindRun)}
	inf.Instances = instanceInformer{inf.Instances, f.capture(kindInstance)}
	inf.SkillPacks = skillPackInformer{inf.SkillPacks, f.capture(kindSkillPack)}
	inf.Children = childInformers{inf.Children, f}
	inf.ConfigMaps = genericInformer{inf.ConfigMaps, f.capture(phase.KindConfigMap)}
	return inf
}

// capture returns the function that keeps a handler of kind.
func (f *fixture) capture(kind phase.Kind) func(cache.ResourceEventHandler) {
	return func(h cache.ResourceEventHandler) { f.handlers[kind] = append(f.handlers[kind], h) }
}

// untypedCapture keeps the handlers added to an informer.
type untypedCapture struct {
	cache.SharedIndexInformer
	got func(cache.ResourceEventHandler)
}

func (c untypedCapture) AddEventHandlerWithOptions(h cache.ResourceEventHandler, o cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	c.got(h)
	return c.SharedIndexInformer.AddEventHandlerWithOptions(h, o)
}

// typedCapture keeps the handlers added to a typed informer, as client-go
// adapts them to the untyped informer underneath.
type typedCapture[T cache.Object] struct {
	cache.TypedSharedIndexInformer[T]
	got func(cache.ResourceEventHandler)
}

func (c typedCapture[T]) AddTypedEventHandler(h cache.TypedResourceEventHandler[T], o ...cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	return cache.NewTypedSharedIndexInformer[T](untypedCapture{c.TypedSharedIndexInformer, c.got}).AddTypedEventHandler(h, o...)
}

// childInformers captures the handlers of the children's informers, by the
// kind registered for their resource.
type childInformers struct {
	ChildInformers
	f *fixture
}

func (i childInformers) ChildInformer(kind phase.Kind) (cache.SharedIndexInformer, error) {
	inf, err := i.ChildInformers.ChildInformer(kind)
	if err != nil {
		return nil, err
	}
	return untypedCapture{inf, i.f.capture(kind)}, nil
}

type genericInformer struct {
	informers.GenericInformer
	got func(cache.ResourceEventHandler)
}

func (i genericInformer) Informer() cache.SharedIndexInformer {
	return untypedCapture{i.GenericInformer.Informer(), i.got}
}

// runInformer captures untyped handlers: the run store holds finished runs
// as records (runcache.FinishedRun), so the run handlers are untyped.
type runInformer struct {
	sv1alpha1.TypedAgentRunInformer
	got func(cache.ResourceEventHandler)
}

func (i runInformer) Informer() cache.SharedIndexInformer {
	return untypedCapture{i.TypedAgentRunInformer.Informer(), i.got}
}

type instanceInformer struct {
	sv1alpha1.TypedSympoziumInstanceInformer
	got func(cache.ResourceEventHandler)
}

func (i instanceInformer) TypedInformer() sv1alpha1.SympoziumInstanceIndexInformer {
	return typedCapture[*v1alpha1.SympoziumInstance]{i.TypedSympoziumInstanceInformer.TypedInformer(), i.got}
}

type skillPackInformer struct {
	sv1alpha1.TypedSkillPackInformer
	got func(cache.ResourceEventHandler)
}

func (i skillPackInformer) TypedInformer() sv1alpha1.SkillPackIndexInformer {
	return typedCapture[*v1alpha1.SkillPack]{i.TypedSkillPackInformer.TypedInformer(), i.got}
}

// fakeLogs is a LogReader that returns a fixed tail and records its calls.
type fakeLogs struct {
	mu    sync.Mutex
	tail  string
	err   error
	calls []string
}

func (l *fakeLogs) TailLog(_ context.Context, namespace, pod, container string, limitBytes int64) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, fmt.Sprintf("%s/%s/%s/%d", namespace, pod, container, limitBytes))
	return l.tail, l.err
}

// Object builders.

type runOpt func(*v1alpha1.AgentRun)

func newRun(name string, opts ...runOpt) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID(name + "-uid"), Generation: 1,
			CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst", AgentID: "default", SessionKey: "s", Task: "do it",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt"}, Mode: v1alpha1.ModeTask, Cleanup: v1alpha1.CleanupDelete},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withCreated(t time.Time) runOpt {
	return func(r *v1alpha1.AgentRun) { r.CreationTimestamp = metav1.NewTime(t) }
}

func withCleanup(c v1alpha1.CleanupPolicy) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.Cleanup = c }
}

func withInstance(name string) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.InstanceRef = name }
}

func withParent(p *v1alpha1.AgentRun, depth int32) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.Parent = &v1alpha1.ParentRef{RunName: p.Name, SessionKey: p.Spec.SessionKey, SpawnDepth: depth}
	}
}

func withOwner(p *v1alpha1.AgentRun) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.OwnerReferences = append(r.OwnerReferences, metav1.OwnerReference{APIVersion: v1alpha1.SchemeGroupVersion.String(),
			Kind: "AgentRun", Name: p.Name, UID: p.UID})
	}
}

func withStatus(st v1alpha1.AgentRunStatus) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Status = st }
}

func cond(typ string, st metav1.ConditionStatus, reason, msg string, at time.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(at)}
}

// runningStatus is the status of a run whose agent started in pod.
func runningStatus(run, pod string) v1alpha1.AgentRunStatus {
	return v1alpha1.AgentRunStatus{
		ObservedGeneration: 1, Phase: v1alpha1.PhaseRunning, JobName: run, PodName: pod,
		StartedAt: new(metav1.NewTime(t0.Add(5 * time.Second))),
		Conditions: []metav1.Condition{
			cond(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, "Job "+run+" created", t0),
			cond(v1alpha1.ConditionRunning, metav1.ConditionTrue, v1alpha1.ReasonStarted, "agent container started in pod "+pod, t0.Add(5*time.Second)),
		},
	}
}

func newInstance(name string, opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
	i := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, UID: types.UID(name + "-uid"), Generation: 1}}
	for _, o := range opts {
		o(i)
	}
	return i
}

func withLimits(depth, concurrent, children int32) func(*v1alpha1.SympoziumInstance) {
	return func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Agents.Default.Subagents = v1alpha1.SubagentLimits{MaxDepth: &depth, MaxConcurrent: &concurrent, MaxChildrenPerAgent: &children}
	}
}

// jobOf is the Job of run as the API server returns it (with a UID).
func jobOf(run *v1alpha1.AgentRun, uid types.UID) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: run.Name, Namespace: run.Namespace, UID: uid,
		Labels:          workload.Labels(run),
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}}}
}

type podOpt func(*corev1.Pod)

// podOf is a pod controlled by job.
func podOf(job *batchv1.Job, name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace, UID: types.UID(name + "-uid"),
		CreationTimestamp: metav1.NewTime(t0.Add(2 * time.Second)), Labels: job.Labels,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func agentRunning(at time.Time) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: v1alpha1.AgentContainerName,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}}}}
	}
}

func agentExited(code int32, msg string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			p.Status.Phase, reason = corev1.PodFailed, "Error"
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: v1alpha1.AgentContainerName,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg,
				StartedAt: metav1.NewTime(t0.Add(5 * time.Second)), FinishedAt: metav1.NewTime(t0.Add(50 * time.Second))}}}}
	}
}

func findCond(st v1alpha1.AgentRunStatus, typ string) *metav1.Condition {
	return meta.FindStatusCondition(st.Conditions, typ)
}
