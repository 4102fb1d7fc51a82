package instance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// manageChildren has f's controller run the instances' objects on a fake
// clientset whose informers are never started (the tests fill their stores).
func manageChildren(t *testing.T, f *fixture) (*k8sfake.Clientset, informers.SharedInformerFactory, cache.Indexer, *record.FakeRecorder) {
	t.Helper()
	kube := k8sfake.NewClientset()
	kf := informers.NewSharedInformerFactory(kube, 0)
	rec := record.NewFakeRecorder(10)
	persona := informers.NewSharedInformerFactory(kube, 0).Core().V1().ConfigMaps()
	ch := Children{Kube: kube, ConfigMaps: kf.Core().V1().ConfigMaps(), Deployments: kf.Apps().V1().Deployments(),
		Services: kf.Core().V1().Services(), PVCs: kf.Core().V1().PersistentVolumeClaims(),
		PersonaMemory: persona, Secrets: kf.Core().V1().Secrets().Informer(),
		Recorder: rec, Config: instancephase.Config{ImageTag: "v1"}}
	require.NoError(t, f.c.ManageChildren(ch))
	return kube, kf, persona.Informer().GetIndexer(), rec
}

// TestSyncRunsTheInstancesObjects: the sync reads the instance's objects
// from the caches, decides once and applies: a web-endpoint run, a channel
// Deployment, and the channel's health in status; a channel Deployment
// removed from the spec is deleted.
func TestSyncRunsTheInstancesObjects(t *testing.T) {
	f := newFixture(t)
	kube, kf, _, _ := manageChildren(t, f)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "slack", Namespace: testNS}}
	require.NoError(t, kf.Core().V1().Secrets().Informer().GetIndexer().Add(secret))
	inst := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: testNS, UID: "uid-inst"},
		Spec: v1alpha1.SympoziumInstanceSpec{
			Agents:   v1alpha1.AgentsSpec{Default: v1alpha1.AgentConfig{Model: "gpt-4o"}},
			Skills:   []v1alpha1.SkillRef{{SkillPackRef: "web-endpoint"}},
			Channels: []v1alpha1.ChannelSpec{{Type: "slack", ConfigRef: v1alpha1.ChannelConfigRef{Secret: "slack"}}},
		}}
	f.add(inst)
	// A channel Deployment of a channel since removed (the original left it).
	gone := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "inst-channel-discord", Namespace: testNS, UID: "uid-d",
		Labels:          map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/component": "channel", "sympozium.ai/channel": "discord"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "SympoziumInstance", Name: "inst", UID: "uid-inst", Controller: new(true)}}}}
	require.NoError(t, kube.Tracker().Add(gone))
	require.NoError(t, kf.Apps().V1().Deployments().Informer().GetIndexer().Add(gone))

	require.NoError(t, f.c.sync(f.ctx, cache.ObjectName{Namespace: testNS, Name: "inst"}))

	run, err := f.client.SympoziumV1alpha1().AgentRuns(testNS).Get(f.ctx, "inst-web-endpoint", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.ModeServer, run.Spec.Mode)
	dep, err := kube.AppsV1().Deployments(testNS).Get(f.ctx, "inst-channel-slack", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "ghcr.io/sympozium-ai/sympozium/channel-slack:v1", dep.Spec.Template.Spec.Containers[0].Image)
	_, err = kube.AppsV1().Deployments(testNS).Get(f.ctx, "inst-channel-discord", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the removed channel's Deployment is deleted: %v", err)
	got, err := f.client.SympoziumV1alpha1().SympoziumInstances(testNS).Get(f.ctx, "inst", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, got.Status.Channels, 1)
	assert.Equal(t, "Pending", got.Status.Channels[0].Status)
	assert.Equal(t, "creating Deployment inst-channel-slack", got.Status.Channels[0].Message)

	// A child's event wakes its instance.
	f.c.childChanged(dep)
	assert.Equal(t, 1, f.c.queue.Len())
}

// TestPersonaPackMemoryLeftAloneWithoutRequests: the memory ConfigMap
// sympozium's PersonaPack controller seeds under the instance's memory
// ConfigMap name (labels persona-pack, persona, sympozium.ai/memory=true; no
// instance label, no owner: personapack_controller.go:555-581 at 25c0bb2) is
// in the PersonaMemory cache: the sync leaves it alone and sends nothing for
// it, where it used to try a create (AlreadyExists) at every sync. Its
// event wakes the instance of its name.
func TestPersonaPackMemoryLeftAloneWithoutRequests(t *testing.T) {
	f := newFixture(t)
	kube, _, persona, _ := manageChildren(t, f)
	seeded := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inst-memory", Namespace: testNS,
		Labels: map[string]string{"sympozium.ai/persona-pack": "pack", "sympozium.ai/persona": "inst", "sympozium.ai/memory": "true"}},
		Data: map[string]string{"MEMORY.md": "# Memory\n\n- seed\n"}}
	require.NoError(t, kube.Tracker().Add(seeded))
	require.NoError(t, persona.Add(seeded))
	inst := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: testNS, UID: "uid-inst"},
		Spec: v1alpha1.SympoziumInstanceSpec{Memory: &v1alpha1.MemorySpec{Enabled: true}}}
	f.add(inst)
	for range 3 {
		require.NoError(t, f.c.sync(f.ctx, cache.ObjectName{Namespace: testNS, Name: "inst"}))
	}
	assert.Empty(t, kube.Actions(), "no request for the PersonaPack's ConfigMap")
	got, err := kube.CoreV1().ConfigMaps(testNS).Get(f.ctx, "inst-memory", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, seeded.Data, got.Data, "the seeds kept")

	f.c.personaMemoryChanged(seeded)
	key, _ := f.c.queue.Get()
	assert.Equal(t, cache.ObjectName{Namespace: testNS, Name: "inst"}, key)
}

// TestChannelSecretMissingInStatus: a channel whose Secret does not exist
// gets no Deployment; its status entry says so (as sympozium's did), the
// ChannelsReady condition is False with reason SecretNotFound and a Warning
// Event is recorded once. The Secret's creation wakes the instance, whose
// next sync creates the Deployment.
func TestChannelSecretMissingInStatus(t *testing.T) {
	f := newFixture(t)
	kube, kf, _, rec := manageChildren(t, f)
	inst := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: testNS, UID: "uid-inst"},
		Spec: v1alpha1.SympoziumInstanceSpec{Channels: []v1alpha1.ChannelSpec{{Type: "telegram", ConfigRef: v1alpha1.ChannelConfigRef{Secret: "tg-token"}}}}}
	f.add(inst)
	key := cache.ObjectName{Namespace: testNS, Name: "inst"}
	require.NoError(t, f.c.sync(f.ctx, key))
	assert.Empty(t, kube.Actions(), "no Deployment without its Secret")
	got, err := f.client.SympoziumV1alpha1().SympoziumInstances(testNS).Get(f.ctx, "inst", metav1.GetOptions{})
	require.NoError(t, err)
	require.Len(t, got.Status.Channels, 1)
	assert.Equal(t, "Error", got.Status.Channels[0].Status)
	assert.Equal(t, `secret "tg-token" not found`, got.Status.Channels[0].Message)
	require.Len(t, got.Status.Conditions, 1)
	assert.Equal(t, "ChannelsReady", got.Status.Conditions[0].Type)
	assert.Equal(t, metav1.ConditionFalse, got.Status.Conditions[0].Status)
	assert.Equal(t, "SecretNotFound", got.Status.Conditions[0].Reason)
	assert.Equal(t, `Warning SecretNotFound channel telegram: secret "tg-token" not found`, <-rec.Events)

	// The status recorded, the same error makes no second Event.
	require.NoError(t, f.instances.Update(got))
	require.NoError(t, f.c.sync(f.ctx, key))
	assert.Empty(t, rec.Events)

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tg-token", Namespace: testNS}}
	require.NoError(t, kf.Core().V1().Secrets().Informer().GetIndexer().Add(secret))
	f.c.secretChanged(secret)
	woken, _ := f.c.queue.Get()
	assert.Equal(t, key, woken)
	require.NoError(t, f.c.sync(f.ctx, key))
	_, err = kube.AppsV1().Deployments(testNS).Get(f.ctx, "inst-channel-telegram", metav1.GetOptions{})
	assert.NoError(t, err, "created once the Secret exists")
}

// TestFinishedWebEndpointRunIsNotUpdated: a web-endpoint run that ended
// (here: its skill ConfigMaps never came) is held by the run store as a
// trimmed record; a later change of the instance's model must not send
// that record back as an update (the API server refused it, spec.task
// empty, and the instance's sync failed on every retry).
func TestFinishedWebEndpointRunIsNotUpdated(t *testing.T) {
	f := newFixture(t)
	manageChildren(t, f)
	inst := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: testNS, UID: "uid-inst"},
		Spec: v1alpha1.SympoziumInstanceSpec{
			Agents: v1alpha1.AgentsSpec{Default: v1alpha1.AgentConfig{Model: "gpt-5"}},
			Skills: []v1alpha1.SkillRef{{SkillPackRef: "web-endpoint"}},
		}}
	run := instancephase.WebEndpointRun(inst, inst.Spec.Skills[0])
	run.UID = "uid-run"
	run.Spec.Model.Model = "gpt-4o"
	run.OwnerReferences = []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "SympoziumInstance", Name: "inst", UID: "uid-inst", Controller: new(true)}}
	run.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseFailed, Error: "ConfigError: ConfigMap [web-endpoint] not found",
		CompletedAt: new(metav1.NewTime(f.clock.Now()))}
	f.add(inst, run)
	f.client.ClearActions()

	require.NoError(t, f.c.sync(f.ctx, cache.ObjectName{Namespace: testNS, Name: "inst"}))

	for _, a := range f.client.Actions() {
		assert.False(t, a.GetResource().Resource == "agentruns" && a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch",
			"the finished run is left alone: %s %s", a.GetVerb(), a.GetResource().Resource)
	}
	got, err := f.client.SympoziumV1alpha1().AgentRuns(testNS).Get(f.ctx, "inst-web-endpoint", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "gpt-4o", got.Spec.Model.Model)
	assert.Equal(t, v1alpha1.PhaseFailed, got.Status.Phase)
}
