package skillpack

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/metadata/metadatainformer"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2/ktesting"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
	sfake "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/fake"
	sympoziuminformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
	sv1alpha1 "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
)

const testNS = "ns"

var (
	t0            = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	skillpacksGVR = v1alpha1.SchemeGroupVersion.WithResource("skillpacks")
	configMapsGVR = corev1.SchemeGroupVersion.WithResource("configmaps")
)

// fixture is the SkillPack controller over fake clientsets and informers
// that are never started; ConfigMaps are cached as metadata only.
type fixture struct {
	t          *testing.T
	ctx        context.Context
	client     *sfake.Clientset
	kube       *k8sfake.Clientset
	packs      cache.Indexer
	configMaps cache.Indexer
	c          *Controller
}

func newFixture(t *testing.T) *fixture {
	_, ctx := ktesting.NewTestContext(t)
	f := &fixture{t: t, ctx: ctx, client: sfake.NewSimpleClientset(), kube: k8sfake.NewClientset()}
	scheme := metadatafake.NewTestScheme()
	require.NoError(t, metav1.AddMetaToScheme(scheme))
	require.NoError(t, corev1.AddToScheme(scheme))
	sf := sympoziuminformers.NewSharedInformerFactory(f.client, 0)
	mf := metadatainformer.NewSharedInformerFactory(metadatafake.NewSimpleMetadataClient(scheme), 0)
	packs := sv1alpha1.ToTypedSkillPackInformer(sf.Sympozium().V1alpha1().SkillPacks())
	var cms informers.GenericInformer = mf.ForResource(configMapsGVR)
	c, err := NewController(ctx, f.client, f.kube, packs, cms, nil)
	require.NoError(t, err)
	c.now = func() metav1.Time { return metav1.NewTime(t0) }
	t.Cleanup(c.queue.ShutDown)
	f.c = c
	f.packs = packs.Informer().GetIndexer()
	f.configMaps = cms.Informer().GetIndexer()
	return f
}

func partial(cm *corev1.ConfigMap) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: *cm.ObjectMeta.DeepCopy()}
}

func (f *fixture) add(objs ...runtime.Object) {
	for _, o := range objs {
		switch obj := o.(type) {
		case *v1alpha1.SkillPack:
			require.NoError(f.t, f.client.Tracker().Add(obj))
			require.NoError(f.t, f.packs.Add(obj.DeepCopy()))
		case *corev1.ConfigMap:
			require.NoError(f.t, f.kube.Tracker().Add(obj))
			require.NoError(f.t, f.configMaps.Add(partial(obj)))
		}
	}
}

// refresh copies the trackers' objects into the indexers (ConfigMaps as
// metadata, as the metadata informer holds them).
func (f *fixture) refresh() {
	l, err := f.client.Tracker().List(skillpacksGVR, v1alpha1.SchemeGroupVersion.WithKind("SkillPack"), "")
	require.NoError(f.t, err)
	items, err := meta.ExtractList(l)
	require.NoError(f.t, err)
	packs := make([]any, 0, len(items))
	for _, it := range items {
		packs = append(packs, it)
	}
	require.NoError(f.t, f.packs.Replace(packs, ""))
	l, err = f.kube.Tracker().List(configMapsGVR, corev1.SchemeGroupVersion.WithKind("ConfigMap"), "")
	require.NoError(f.t, err)
	items, err = meta.ExtractList(l)
	require.NoError(f.t, err)
	cms := make([]any, 0, len(items))
	for _, it := range items {
		cms = append(cms, partial(it.(*corev1.ConfigMap)))
	}
	require.NoError(f.t, f.configMaps.Replace(cms, ""))
}

func (f *fixture) sync(name string) error {
	return f.c.sync(f.ctx, cache.ObjectName{Namespace: testNS, Name: name})
}

func (f *fixture) clear() {
	f.client.ClearActions()
	f.kube.ClearActions()
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

func verbs(actions []core.Action) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		r := a.GetResource().Resource
		if s := a.GetSubresource(); s != "" {
			r += "/" + s
		}
		out = append(out, a.GetVerb()+" "+r)
	}
	return out
}

func newPack(skills ...v1alpha1.Skill) *v1alpha1.SkillPack {
	return &v1alpha1.SkillPack{
		ObjectMeta: metav1.ObjectMeta{Name: "k8s", Namespace: testNS, UID: "pack-uid", Generation: 1},
		Spec:       v1alpha1.SkillPackSpec{Skills: skills},
	}
}

var twoSkills = []v1alpha1.Skill{
	{Name: "review", Description: "Reviews code", Content: "Review the diff."},
	{Name: "deploy", Content: "Run kubectl apply."},
}

func TestSyncRendersConfigMap(t *testing.T) {
	f := newFixture(t)
	f.add(newPack(twoSkills...))

	require.NoError(t, f.sync("k8s"))

	kw := writes(f.kube.Actions())
	require.Equal(t, []string{"create configmaps"}, verbs(kw))
	cm := kw[0].(core.CreateAction).GetObject().(*corev1.ConfigMap)
	assert.Equal(t, "k8s", cm.Name)
	assert.Equal(t, testNS, cm.Namespace)
	assert.Equal(t, map[string]string{
		"review.md": "---\nname: review\ndescription: Reviews code\n---\n\nReview the diff.",
		"deploy.md": "Run kubectl apply.",
	}, cm.Data)
	assert.Equal(t, []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "SkillPack", Name: "k8s", UID: "pack-uid",
		Controller: new(true), BlockOwnerDeletion: new(true)}}, cm.OwnerReferences)
	_, hash := Render(newPack(twoSkills...))
	assert.Len(t, hash, 16)
	assert.Equal(t, map[string]string{AnnotationContentHash: hash}, cm.Annotations)
	assert.Equal(t, v1alpha1.ManagedByValue, cm.Labels[v1alpha1.LabelManagedBy])
	assert.Equal(t, "k8s", cm.Labels[v1alpha1.LabelSkillPack])

	cw := writes(f.client.Actions())
	require.Equal(t, []string{"update skillpacks/status"}, verbs(cw))
	st := cw[0].(core.UpdateAction).GetObject().(*v1alpha1.SkillPack).Status
	assert.Equal(t, v1alpha1.SkillPackStatus{Phase: PhaseReady, ObservedGeneration: 1, ConfigMapName: "k8s", SkillCount: 2,
		Conditions: []metav1.Condition{{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Rendered",
			Message: "ConfigMap k8s holds 2 skills", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0)}}}, st)

	// Unchanged pack, ConfigMap cached with the same hash: no writes.
	f.refresh()
	f.clear()
	require.NoError(t, f.sync("k8s"))
	assert.Empty(t, writes(f.kube.Actions()))
	assert.Empty(t, writes(f.client.Actions()))
}

func TestSyncUpdatesChangedContent(t *testing.T) {
	f := newFixture(t)
	f.add(newPack(twoSkills...))
	require.NoError(t, f.sync("k8s"))
	f.refresh()
	f.clear()

	// The pack's content changes.
	o, err := f.client.Tracker().Get(skillpacksGVR, testNS, "k8s")
	require.NoError(t, err)
	pack := o.(*v1alpha1.SkillPack)
	pack.Generation = 2
	pack.Spec.Skills[1].Content = "Run kubectl apply --server-side."
	require.NoError(t, f.client.Tracker().Update(skillpacksGVR, pack, testNS))
	cmObj, err := f.kube.Tracker().Get(configMapsGVR, testNS, "k8s")
	require.NoError(t, err)
	cached := cmObj.(*corev1.ConfigMap).DeepCopy()
	cached.ResourceVersion = "42"
	require.NoError(t, f.kube.Tracker().Update(configMapsGVR, cached, testNS, metav1.UpdateOptions{FieldManager: "test"}))
	f.refresh()
	f.clear()

	require.NoError(t, f.sync("k8s"))

	kw := writes(f.kube.Actions())
	require.Equal(t, []string{"update configmaps"}, verbs(kw))
	cm := kw[0].(core.UpdateAction).GetObject().(*corev1.ConfigMap)
	assert.Equal(t, "Run kubectl apply --server-side.", cm.Data["deploy.md"])
	_, hash := Render(pack)
	assert.Equal(t, hash, cm.Annotations[AnnotationContentHash])
	assert.Equal(t, "42", cm.ResourceVersion, "the update is guarded by the cached resourceVersion")
	cw := writes(f.client.Actions())
	require.Equal(t, []string{"update skillpacks/status"}, verbs(cw))
	st := cw[0].(core.UpdateAction).GetObject().(*v1alpha1.SkillPack).Status
	assert.EqualValues(t, 2, st.ObservedGeneration)
	assert.EqualValues(t, 2, st.Conditions[0].ObservedGeneration)

	f.refresh()
	f.clear()
	require.NoError(t, f.sync("k8s"))
	assert.Empty(t, writes(f.kube.Actions()))
	assert.Empty(t, writes(f.client.Actions()))
}

func TestSyncConfigMapNotOwned(t *testing.T) {
	f := newFixture(t)
	f.add(newPack(twoSkills...), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "k8s", Namespace: testNS,
		Annotations: map[string]string{AnnotationContentHash: "something"}}, Data: map[string]string{"mine": "keep"}})

	require.NoError(t, f.sync("k8s"))

	assert.Empty(t, writes(f.kube.Actions()), "a ConfigMap the pack does not own is never written")
	cw := writes(f.client.Actions())
	require.Equal(t, []string{"update skillpacks/status"}, verbs(cw))
	st := cw[0].(core.UpdateAction).GetObject().(*v1alpha1.SkillPack).Status
	assert.Equal(t, v1alpha1.SkillPackStatus{Phase: PhaseError, ObservedGeneration: 1, SkillCount: 2,
		Conditions: []metav1.Condition{{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "ConfigMapConflict",
			Message: "ConfigMap k8s exists and is not owned by this SkillPack", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0)}}}, st)

	f.refresh()
	f.clear()
	require.NoError(t, f.sync("k8s"))
	assert.Empty(t, writes(f.kube.Actions()))
	assert.Empty(t, writes(f.client.Actions()))
}

func TestSyncStaleCacheConfigMapExists(t *testing.T) {
	f := newFixture(t)
	f.add(newPack(twoSkills...))
	data, hash := Render(newPack(twoSkills...))
	require.NoError(t, f.kube.Tracker().Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "k8s", Namespace: testNS,
		Annotations:     map[string]string{AnnotationContentHash: hash},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(newPack(), v1alpha1.SchemeGroupVersion.WithKind("SkillPack"))}}, Data: data}))

	require.NoError(t, f.sync("k8s"), "AlreadyExists means the cache was stale")
	assert.Equal(t, []string{"create configmaps"}, verbs(writes(f.kube.Actions())))
}

func TestSyncConfigMapWriteError(t *testing.T) {
	f := newFixture(t)
	f.add(newPack(twoSkills...))
	f.kube.PrependReactor("create", "configmaps", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("injected"))
	})

	err := f.sync("k8s")
	require.Error(t, err)
	assert.True(t, apierrors.IsInternalError(err))
	assert.Empty(t, writes(f.client.Actions()), "Ready is not reported before the ConfigMap is written")
}

func TestSyncDeletedPack(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.sync("k8s"))
	assert.Empty(t, f.client.Actions())
	assert.Empty(t, f.kube.Actions())
}

// sympozium's finalizer is removed with a guarded JSON patch and nothing
// else is written in that sync; the next one renders. A pack being deleted
// that held only that finalizer is then let go without rendering.
func TestSyncRemovesSympoziumsFinalizer(t *testing.T) {
	f := newFixture(t)
	p := newPack(twoSkills...)
	p.Finalizers = []string{legacy.FinalizerSkillPack}
	f.add(p)
	require.NoError(t, f.sync("k8s"))
	assert.Equal(t, []string{"patch skillpacks"}, verbs(writes(f.client.Actions())))
	assert.Empty(t, writes(f.kube.Actions()))
	got, err := f.client.SympoziumV1alpha1().SkillPacks(testNS).Get(f.ctx, "k8s", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Empty(t, got.Finalizers)

	f.refresh()
	f.clear()
	require.NoError(t, f.sync("k8s"))
	assert.Equal(t, []string{"create configmaps"}, verbs(writes(f.kube.Actions())))
	assert.Equal(t, []string{"update skillpacks/status"}, verbs(writes(f.client.Actions())))
}

func TestSyncDeletingPackRendersNothing(t *testing.T) {
	f := newFixture(t)
	p := newPack(twoSkills...)
	p.DeletionTimestamp = new(metav1.NewTime(t0))
	p.Finalizers = []string{"example.com/other"}
	f.add(p)
	require.NoError(t, f.sync("k8s"))
	assert.Empty(t, writes(f.kube.Actions()))
	assert.Empty(t, writes(f.client.Actions()))
}
