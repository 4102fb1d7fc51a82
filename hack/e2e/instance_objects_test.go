package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
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
	for _, s := range []string{"tg-token", "tg-token-2"} {
		e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\nstringData: {TELEGRAM_BOT_TOKEN: \"123:abc\"}\n", s, ns))
	}

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
// controller, the objects its instance reconciler created (written out in
// original_instance_objects_test.go as its code builds them, not with this
// controller's builders) are taken over, not created again: the same UIDs,
// one of each, this controller's hash annotation, the memories kept. And
// there is no fight: once adopted, a controller started afresh syncs the
// instance and writes none of them.
func TestInstanceAdoptsTheOriginalsObjects(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	spec := instanceBase + "  skills: [{skillPackRef: web-endpoint, params: {rate_limit_rpm: \"30\"}}, {skillPackRef: memory}]\n" +
		"  memory: {enabled: true}\n  channels: [{type: whatsapp}, {type: telegram, configRef: {secret: tg-token}}]\n"
	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: tg-token, namespace: %s}\nstringData: {TELEGRAM_BOT_TOKEN: \"123:abc\"}\n", ns))
	e.apply(t, instanceYAML(ns, "inst", spec))
	inst, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
	require.NoError(t, err)

	const memories = "# Agent Memory\n\n- the user prefers short answers\n"
	_, err = e.kube.CoreV1().ConfigMaps(ns).Create(ctx, originalMemoryConfigMap(inst, memories), metav1.CreateOptions{})
	require.NoError(t, err)
	for _, pvc := range []*corev1.PersistentVolumeClaim{originalMemoryPVC(inst), originalWhatsAppPVC(inst)} {
		_, err = e.kube.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for _, d := range []*appsv1.Deployment{originalMemoryDeployment(inst), originalChannelDeployment(inst, "whatsapp", ""),
		originalChannelDeployment(inst, "telegram", "tg-token")} {
		_, err = e.kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err = e.kube.CoreV1().Services(ns).Create(ctx, originalMemoryService(inst), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = e.client.SympoziumV1alpha1().AgentRuns(ns).Create(ctx,
		originalWebEndpointRun(inst, inst.Spec.Skills[0], "openai"), metav1.CreateOptions{})
	require.NoError(t, err)

	all := []string{"AgentRun/inst-web-endpoint", "ConfigMap/inst-memory", "PersistentVolumeClaim/inst-memory-db",
		"PersistentVolumeClaim/inst-channel-whatsapp-data", "Deployment/inst-memory", "Service/inst-memory",
		"Deployment/inst-channel-whatsapp", "Deployment/inst-channel-telegram"}
	before := e.instanceObjectStates(t, ns)
	require.Equal(t, len(all), len(before), "%v", before)
	for k, st := range before {
		require.Empty(t, st.hash, "%s: no hash before", k)
	}

	first := e.startController(t, ns)
	var after map[string]objectState
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		after = e.instanceObjectStates(t, ns)
		for k, st := range after {
			if st.hash == "" && k != "AgentRun/inst-web-endpoint" {
				return false, nil
			}
		}
		return len(after) == len(all), nil
	})
	require.NoError(t, err, "adopted: %v", after)
	for k, st := range after {
		assert.Equal(t, before[k].uid, st.uid, "%s: the same object, not a new one", k)
		assert.Equal(t, string(inst.UID), st.controller, "%s: controlled by the instance", k)
	}
	// Never two: exactly these objects carry the original's labels.
	e.waitInstanceObjects(t, ns, all...)
	got, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, "inst-memory", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, memories, got.Data["MEMORY.md"], "memories kept")
	pvc, err := e.kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "inst-memory-db", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, resource.MustParse("1Gi"), pvc.Spec.Resources.Requests[corev1.ResourceStorage], "the PVC's spec untouched")
	// The adopted channel Deployments now carry what this controller builds
	// (here the same pod, so no rollout beyond the template's hash).
	tg, err := e.kube.AppsV1().Deployments(ns).Get(ctx, "inst-channel-telegram", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "tg-token", tg.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name)

	// No fight: settled, then a fresh controller syncs the instance (its
	// status counts a run made now, in the same sync that decides the
	// objects) and writes none of them.
	// (The web-endpoint run first ends as it will: its SkillPack is not
	// installed here.)
	e.waitRun(t, ns, "inst-web-endpoint", 60*time.Second, "finished", func(r *v1alpha1.AgentRun) bool {
		return r.Status.Phase == v1alpha1.PhaseFailed || r.Status.Phase == v1alpha1.PhaseServing
	})
	settled := e.instanceObjectStates(t, ns)
	time.Sleep(2 * time.Second)
	require.Equal(t, settled, e.instanceObjectStates(t, ns), "settled after adoption")
	counted := func() int32 {
		i, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
		require.NoError(t, err)
		return i.Status.ActiveRuns + i.Status.WaitingRuns + i.Status.SucceededRuns + i.Status.FailedRuns
	}
	require.Eventually(t, func() bool { return counted() == 1 }, 30*time.Second, 200*time.Millisecond, "the web-endpoint run counted")
	first.stop()
	second := e.startController(t, ns)
	e.apply(t, runYAML(ns, "poke", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "1s"}, ""))
	require.Eventually(t, func() bool { return counted() == 2 }, 60*time.Second, 200*time.Millisecond,
		"the fresh controller synced the instance: its status counts the new run")
	assert.Equal(t, settled, e.instanceObjectStates(t, ns), "a second sync writes nothing")
	assert.NotContains(t, second.log.String(), `"Applied"`, "the fresh controller wrote none of the instance's objects")

	// Deleting the instance removes them with it (the garbage collector, as
	// under the original): nothing of this controller holds them.
	require.NoError(t, e.client.SympoziumV1alpha1().SympoziumInstances(ns).Delete(ctx, "inst", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		_, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 30*time.Second, 200*time.Millisecond)
}

// objectState is what an adoption may change of an object, and what a
// fight would: identity, controller, hash annotation, and the rest of
// what the controller writes (labels, annotations, spec or data, as
// JSON), but not the status others write.
type objectState struct {
	uid, controller, hash, written string
}

// instanceObjectStates reads the instance objects of ns by "Kind/name".
func (e *env) instanceObjectStates(t *testing.T, ns string) map[string]objectState {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: instancephase.ChildSelector}
	out := map[string]objectState{}
	put := func(kind string, o metav1.Object, content any) {
		st := objectState{uid: string(o.GetUID()), hash: o.GetAnnotations()[instancephase.AnnotationConfigHash]}
		if c := metav1.GetControllerOf(o); c != nil {
			st.controller = string(c.UID)
		}
		b, err := json.Marshal([]any{o.GetLabels(), o.GetAnnotations(), o.GetOwnerReferences(), content})
		require.NoError(t, err)
		st.written = string(b)
		out[kind+"/"+o.GetName()] = st
	}
	cms, err := e.kube.CoreV1().ConfigMaps(ns).List(ctx, sel)
	require.NoError(t, err)
	for i := range cms.Items {
		put("ConfigMap", &cms.Items[i], cms.Items[i].Data)
	}
	deps, err := e.kube.AppsV1().Deployments(ns).List(ctx, sel)
	require.NoError(t, err)
	for i := range deps.Items {
		put("Deployment", &deps.Items[i], deps.Items[i].Spec)
	}
	svcs, err := e.kube.CoreV1().Services(ns).List(ctx, sel)
	require.NoError(t, err)
	for i := range svcs.Items {
		put("Service", &svcs.Items[i], svcs.Items[i].Spec)
	}
	pvcs, err := e.kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
	require.NoError(t, err)
	for i := range pvcs.Items {
		put("PersistentVolumeClaim", &pvcs.Items[i], pvcs.Items[i].Spec)
	}
	runs, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelComponent + "=" + instancephase.ComponentWebEndpoint})
	require.NoError(t, err)
	for i := range runs.Items {
		put("AgentRun", &runs.Items[i], runs.Items[i].Spec)
	}
	return out
}

// TestInstanceMemoryReachesAgentPods: a run of an instance that lists the
// memory skill and has memory.enabled gets, on the real API server and in
// a namespace enforcing Pod Security "restricted", the agent pod the
// original builds for it (agentrun_controller.go:1428-1474, :1895-1909 at
// 25c0bb2): MEMORY_SERVER_URL naming the memory Service this controller
// runs for the instance, the wait-for-memory init container, and the memory
// ConfigMap at /memory with MEMORY_ENABLED. A run of an instance without
// memory gets none of it.
func TestInstanceMemoryReachesAgentPods(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	ctx := context.Background()
	e.startController(t, ns)
	e.createShippedSkillPack(t, ns, "memory")
	e.apply(t, instanceYAML(ns, "inst", instanceBase+"  skills: [{skillPackRef: memory}]\n  memory: {enabled: true}\n"))
	e.apply(t, instanceYAML(ns, "plain", instanceBase))
	e.waitInstanceObjects(t, ns, "ConfigMap/inst-memory", "PersistentVolumeClaim/inst-memory-db", "Deployment/inst-memory", "Service/inst-memory")
	e.apply(t, runYAML(ns, "remember", "inst", map[string]string{"SIM_DURATION": "1h"}, ""))
	e.apply(t, runYAML(ns, "forget", "plain", map[string]string{"SIM_DURATION": "1h"}, ""))

	pod := e.agentPod(t, ns, "remember")
	svc, err := e.kube.CoreV1().Services(ns).Get(ctx, "inst-memory", metav1.GetOptions{})
	require.NoError(t, err)
	url := fmt.Sprintf("http://%s.%s.svc:%d", svc.Name, ns, svc.Spec.Ports[0].Port)
	agent := pod.Spec.Containers[0]
	require.Equal(t, v1alpha1.AgentContainerName, agent.Name)
	env := map[string]string{}
	for _, v := range agent.Env {
		env[v.Name] = v.Value
	}
	assert.Equal(t, url, env["MEMORY_SERVER_URL"], "the memory Service this controller runs")
	assert.Equal(t, "http://inst-memory."+ns+".svc:8080", env["MEMORY_SERVER_URL"])
	assert.Equal(t, "true", env["MEMORY_ENABLED"])
	require.Len(t, pod.Spec.InitContainers, 1)
	init := pod.Spec.InitContainers[0]
	assert.Equal(t, "wait-for-memory", init.Name)
	assert.Equal(t, "busybox:1.36", init.Image)
	require.Len(t, init.Command, 3)
	assert.Equal(t, []string{"sh", "-c"}, init.Command[:2])
	assert.Contains(t, init.Command[2], "wget -q --spider --timeout=2 "+url+"/health")
	assert.Contains(t, init.Command[2], "if [ $elapsed -ge 60 ]")
	assert.Contains(t, agent.VolumeMounts, corev1.VolumeMount{Name: "memory", MountPath: "/memory", ReadOnly: true})
	var cm string
	for _, v := range pod.Spec.Volumes {
		if v.Name == "memory" && v.ConfigMap != nil {
			cm = v.ConfigMap.Name
		}
	}
	assert.Equal(t, "inst-memory", cm)

	plain := e.agentPod(t, ns, "forget")
	assert.Empty(t, plain.Spec.InitContainers)
	for _, v := range plain.Spec.Containers[0].Env {
		assert.NotContains(t, []string{"MEMORY_SERVER_URL", "MEMORY_ENABLED"}, v.Name)
	}
}

// TestInstanceChannelSecretMissing: a channel whose Secret is missing is
// reported, as a user expects and as sympozium did (status Error, `secret
// "<s>" not found`, sympoziuminstance_controller.go:147-160 at 25c0bb2),
// plus the ChannelsReady condition and a Warning Event, and gets no
// Deployment whose pod could only wait for it. Creating the Secret creates
// the Deployment.
func TestInstanceChannelSecretMissing(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", instanceBase+"  channels: [{type: slack, configRef: {secret: slack-tokens}}]\n"))
	var inst *v1alpha1.SympoziumInstance
	require.Eventually(t, func() bool {
		var err error
		inst, err = e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
		return err == nil && len(inst.Status.Channels) == 1 && inst.Status.Channels[0].Status == "Error"
	}, 30*time.Second, 200*time.Millisecond, "channel status Error")
	assert.Equal(t, `secret "slack-tokens" not found`, inst.Status.Channels[0].Message)
	var cond *metav1.Condition
	for i := range inst.Status.Conditions {
		if inst.Status.Conditions[i].Type == "ChannelsReady" {
			cond = &inst.Status.Conditions[i]
		}
	}
	require.NotNil(t, cond, "ChannelsReady: %v", inst.Status.Conditions)
	assert.Equal(t, metav1.ConditionFalse, cond.Status)
	assert.Equal(t, "SecretNotFound", cond.Reason)
	assert.Equal(t, `slack: secret "slack-tokens" not found`, cond.Message)
	require.Eventually(t, func() bool {
		evs, err := e.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=inst,reason=SecretNotFound"})
		return err == nil && len(evs.Items) == 1 && evs.Items[0].Type == "Warning" &&
			evs.Items[0].Message == `channel slack: secret "slack-tokens" not found`
	}, 30*time.Second, 200*time.Millisecond, "the Warning Event")
	e.waitInstanceObjects(t, ns) // no Deployment

	e.apply(t, fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: slack-tokens, namespace: %s}\nstringData: {SLACK_BOT_TOKEN: \"xoxb-1\", SLACK_APP_TOKEN: \"xapp-1\"}\n", ns))
	e.waitInstanceObjects(t, ns, "Deployment/inst-channel-slack")
	require.Eventually(t, func() bool {
		i, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, "inst", metav1.GetOptions{})
		return err == nil && len(i.Status.Channels) == 1 && i.Status.Channels[0].Status != "Error"
	}, 30*time.Second, 200*time.Millisecond, "the channel out of Error")
}
