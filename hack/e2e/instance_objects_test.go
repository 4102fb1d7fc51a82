package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// instanceObjects lists the objects an instance runs (the original's
// component labels), as "Kind/name", sorted.
func (e *env) instanceObjects(t *testing.T, ns string) []string {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: instancephase.ChildSelector}
	var out []string
	cms, err := e.kube.CoreV1().ConfigMaps(ns).List(ctx, sel)
	require.NoError(t, err)
	for _, o := range cms.Items {
		out = append(out, "ConfigMap/"+o.Name)
	}
	deps, err := e.kube.AppsV1().Deployments(ns).List(ctx, sel)
	require.NoError(t, err)
	for _, o := range deps.Items {
		out = append(out, "Deployment/"+o.Name)
	}
	svcs, err := e.kube.CoreV1().Services(ns).List(ctx, sel)
	require.NoError(t, err)
	for _, o := range svcs.Items {
		out = append(out, "Service/"+o.Name)
	}
	pvcs, err := e.kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
	require.NoError(t, err)
	for _, o := range pvcs.Items {
		out = append(out, "PersistentVolumeClaim/"+o.Name)
	}
	runs, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelComponent + "=" + instancephase.ComponentWebEndpoint})
	require.NoError(t, err)
	for _, o := range runs.Items {
		if o.DeletionTimestamp == nil {
			out = append(out, "AgentRun/"+o.Name)
		}
	}
	sort.Strings(out)
	return out
}

// waitInstanceObjects waits until the instance's objects are exactly want.
func (e *env) waitInstanceObjects(t *testing.T, ns string, want ...string) {
	t.Helper()
	sort.Strings(want)
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = e.instanceObjects(t, ns)
		return slices.Equal(got, want), nil
	})
	require.NoError(t, err, "objects: got %v, want %v", got, want)
}

const instanceBase = "  agents: {default: {model: gpt-4o}}\n  authRefs: [{secret: inst-openai-key}]\n"

// TestInstanceObjectsFollowTheSpec: turning the web endpoint, memory and a
// channel on for a live instance creates exactly the objects sympozium's
// instance controller creates (same names, owned by the instance); changing
// the model updates the web-endpoint run; turning them off removes exactly
// them (the data PVCs kept), where the original left them running.
func TestInstanceObjectsFollowTheSpec(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	// The skills' ConfigMaps exist, so the web-endpoint run starts and
	// stays live for the model change below (without them it fails after
	// the grace period, and a finished run is left as it is).
	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-endpoint, namespace: %[1]s}\n---\n"+
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: memory, namespace: %[1]s}\n", ns))
	e.apply(t, instanceYAML(ns, "inst", instanceBase))
	e.waitInstanceObjects(t, ns)

	on := "  skills: [{skillPackRef: web-endpoint}, {skillPackRef: memory}]\n  memory: {enabled: true}\n" +
		"  channels: [{type: telegram, configRef: {secret: tg-token}}]\n"
	e.apply(t, instanceYAML(ns, "inst", instanceBase+on))
	e.waitInstanceObjects(t, ns, "AgentRun/inst-web-endpoint", "ConfigMap/inst-memory", "PersistentVolumeClaim/inst-memory-db",
		"Deployment/inst-memory", "Service/inst-memory", "Deployment/inst-channel-telegram")
	inst, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(context.Background(), "inst", metav1.GetOptions{})
	require.NoError(t, err)
	run := e.getRun(t, ns, "inst-web-endpoint")
	assert.Equal(t, v1alpha1.ModeServer, run.Spec.Mode)
	assert.Equal(t, "web-endpoint", run.Spec.AgentID)
	assert.Equal(t, "inst-openai-key", run.Spec.Model.AuthSecretRef)
	assert.Equal(t, inst.UID, metav1.GetControllerOf(run).UID)
	dep, err := e.kube.AppsV1().Deployments(ns).Get(context.Background(), "inst-channel-telegram", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, inst.UID, metav1.GetControllerOf(dep).UID)
	assert.Equal(t, "ghcr.io/sympozium-ai/sympozium/channel-telegram:latest", dep.Spec.Template.Spec.Containers[0].Image)
	assert.Equal(t, "tg-token", dep.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name)
	// The channel's health is in status.
	require.Eventually(t, func() bool {
		i, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(context.Background(), "inst", metav1.GetOptions{})
		return err == nil && len(i.Status.Channels) == 1 && i.Status.Channels[0].Type == "telegram" &&
			i.Status.Channels[0].Status != "" && i.Status.Channels[0].Message != instanceChannelMessage && i.Status.Channels[0].LastHealthCheck != nil
	}, 30*time.Second, 200*time.Millisecond, "status.channels")

	// A new model and channel Secret reach the run and the Deployment.
	e.apply(t, instanceYAML(ns, "inst", "  agents: {default: {model: gpt-5}}\n  authRefs: [{secret: inst-openai-key}]\n"+
		"  skills: [{skillPackRef: web-endpoint}, {skillPackRef: memory}]\n  memory: {enabled: true}\n"+
		"  channels: [{type: telegram, configRef: {secret: tg-token-2}}]\n"))
	e.waitRun(t, ns, "inst-web-endpoint", 30*time.Second, "model gpt-5", func(r *v1alpha1.AgentRun) bool { return r.Spec.Model.Model == "gpt-5" })
	require.Eventually(t, func() bool {
		d, err := e.kube.AppsV1().Deployments(ns).Get(context.Background(), "inst-channel-telegram", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name == "tg-token-2"
	}, 30*time.Second, 200*time.Millisecond, "the new Secret")

	// Off: exactly those objects go; the memory database's PVC is kept.
	e.apply(t, instanceYAML(ns, "inst", instanceBase))
	e.waitInstanceObjects(t, ns, "PersistentVolumeClaim/inst-memory-db")
}

// instanceChannelMessage is the status message when the controller runs no
// channel gateway.
const instanceChannelMessage = "channel gateways are not run by sympozium-controller"

// TestInstanceAdoptsTheOriginalsObjects: switching from sympozium's
// controller, the objects it created for an instance (its names, labels
// and controller reference to the instance) are taken over, not created
// again: same UIDs, one of each, and this controller's hash annotation.
func TestInstanceAdoptsTheOriginalsObjects(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	spec := instanceBase + "  skills: [{skillPackRef: web-endpoint}, {skillPackRef: memory}]\n  memory: {enabled: true}\n" +
		"  channels: [{type: whatsapp}]\n"
	e.apply(t, instanceYAML(ns, "inst", spec))
	inst, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
	require.NoError(t, err)

	// What the original's reconciler creates (sympoziuminstance_controller.go
	// at 25c0bb2): its controller reference (SetControllerReference), its
	// labels, no annotation.
	owner := []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "SympoziumInstance", Name: "inst", UID: inst.UID,
		Controller: new(true), BlockOwnerDeletion: new(true)}}
	cm := `apiVersion: v1
kind: ConfigMap
metadata:
  name: inst-memory
  namespace: %[1]s
  labels: {sympozium.ai/instance: inst, sympozium.ai/component: memory}
  ownerReferences: [{apiVersion: sympozium.ai/v1alpha1, kind: SympoziumInstance, name: inst, uid: %[2]s, controller: true, blockOwnerDeletion: true}]
data:
  MEMORY.md: "- the user prefers short answers\n"
`
	e.apply(t, fmt.Sprintf(cm, ns, inst.UID))
	pvc := instancephase.MemoryPVC(inst)
	pvc.OwnerReferences = owner
	_, err = e.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	require.NoError(t, err)
	wpvc := instancephase.WhatsAppPVC(inst)
	wpvc.OwnerReferences = owner
	_, err = e.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, wpvc, metav1.CreateOptions{})
	require.NoError(t, err)
	md := instancephase.MemoryDeployment(inst, instancephase.Config{})
	md.OwnerReferences = owner
	_, err = e.kube.AppsV1().Deployments(ns).Create(ctx, md, metav1.CreateOptions{})
	require.NoError(t, err)
	ms := instancephase.MemoryService(inst)
	ms.OwnerReferences = owner
	_, err = e.kube.CoreV1().Services(ns).Create(ctx, ms, metav1.CreateOptions{})
	require.NoError(t, err)
	wd := instancephase.ChannelDeployment(inst, v1alpha1.ChannelSpec{Type: "whatsapp"}, instancephase.Config{})
	wd.OwnerReferences = owner
	_, err = e.kube.AppsV1().Deployments(ns).Create(ctx, wd, metav1.CreateOptions{})
	require.NoError(t, err)
	run := instancephase.WebEndpointRun(inst, v1alpha1.SkillRef{SkillPackRef: "web-endpoint"})
	run.OwnerReferences = owner
	_, err = e.client.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, run, metav1.CreateOptions{})
	require.NoError(t, err)
	before := map[string]string{}
	uids := func() map[string]string {
		m := map[string]string{}
		if o, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, "inst-memory", metav1.GetOptions{}); err == nil {
			m["ConfigMap/inst-memory"] = string(o.UID) + " " + o.Annotations[instancephase.AnnotationConfigHash]
		}
		for _, n := range []string{"inst-memory-db", "inst-channel-whatsapp-data"} {
			if o, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, n, metav1.GetOptions{}); err == nil {
				m["PersistentVolumeClaim/"+n] = string(o.UID) + " " + o.Annotations[instancephase.AnnotationConfigHash]
			}
		}
		for _, n := range []string{"inst-memory", "inst-channel-whatsapp"} {
			if o, err := e.kube.AppsV1().Deployments(ns).Get(ctx, n, metav1.GetOptions{}); err == nil {
				m["Deployment/"+n] = string(o.UID) + " " + o.Annotations[instancephase.AnnotationConfigHash]
			}
		}
		if o, err := e.kube.CoreV1().Services(ns).Get(ctx, "inst-memory", metav1.GetOptions{}); err == nil {
			m["Service/inst-memory"] = string(o.UID) + " " + o.Annotations[instancephase.AnnotationConfigHash]
		}
		return m
	}
	for k, v := range uids() {
		before[k] = v
		require.Equal(t, " ", v[len(v)-1:], "%s: no hash before", k)
	}
	require.Len(t, before, 6)
	runUID := e.getRun(t, ns, "inst-web-endpoint").UID

	e.startController(t, ns)
	var after map[string]string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		after = uids()
		for k, v := range after {
			if v[len(v)-1:] == " " {
				return false, nil
			}
			_ = k
		}
		return len(after) == 6, nil
	})
	require.NoError(t, err, "adopted: %v", after)
	for k, v := range after {
		assert.Equal(t, before[k][:len(before[k])-1], v[:len(before[k])-1], "%s: the same object, not a new one", k)
	}
	e.waitInstanceObjects(t, ns, "AgentRun/inst-web-endpoint", "ConfigMap/inst-memory", "PersistentVolumeClaim/inst-memory-db",
		"PersistentVolumeClaim/inst-channel-whatsapp-data", "Deployment/inst-memory", "Service/inst-memory", "Deployment/inst-channel-whatsapp")
	assert.Equal(t, runUID, e.getRun(t, ns, "inst-web-endpoint").UID, "the web-endpoint run is the original's")
	got, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, "inst-memory", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "- the user prefers short answers\n", got.Data["MEMORY.md"], "memories kept")

	// Deleting the instance removes them with it (the garbage collector, as
	// under the original): nothing of this controller holds them.
	require.NoError(t, e.client.SympoziumV1alpha1().SympoziumInstances(ns).Delete(ctx, "inst", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		_, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 30*time.Second, 200*time.Millisecond)
}
