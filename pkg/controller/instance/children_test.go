package instance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestSyncRunsTheInstancesObjects: the sync reads the instance's objects
// from the caches, decides once and applies: a web-endpoint run, a channel
// Deployment, and the channel's health in status; a channel Deployment
// removed from the spec is deleted.
func TestSyncRunsTheInstancesObjects(t *testing.T) {
	f := newFixture(t)
	kube := k8sfake.NewClientset()
	kf := informers.NewSharedInformerFactory(kube, 0)
	ch := Children{Kube: kube, ConfigMaps: kf.Core().V1().ConfigMaps(), Deployments: kf.Apps().V1().Deployments(),
		Services: kf.Core().V1().Services(), PVCs: kf.Core().V1().PersistentVolumeClaims(), Config: instancephase.Config{ImageTag: "v1"}}
	require.NoError(t, f.c.ManageChildren(ch))
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

// TestFinishedWebEndpointRunIsNotUpdated: a web-endpoint run that ended
// (here: its skill ConfigMaps never came) is held by the run store as a
// trimmed record; a later change of the instance's model must not send
// that record back as an update (the API server refused it, spec.task
// empty, and the instance's sync failed on every retry).
func TestFinishedWebEndpointRunIsNotUpdated(t *testing.T) {
	f := newFixture(t)
	kube := k8sfake.NewClientset()
	kf := informers.NewSharedInformerFactory(kube, 0)
	ch := Children{Kube: kube, ConfigMaps: kf.Core().V1().ConfigMaps(), Deployments: kf.Apps().V1().Deployments(),
		Services: kf.Core().V1().Services(), PVCs: kf.Core().V1().PersistentVolumeClaims(), Config: instancephase.Config{ImageTag: "v1"}}
	require.NoError(t, f.c.ManageChildren(ch))
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
