package agentrun

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var (
	sandboxesGVR = schema.GroupVersionResource{Group: workload.SandboxGroup, Version: "v1beta1", Resource: workload.SandboxResource}
	claimsGVR    = schema.GroupVersionResource{Group: workload.SandboxClaimGroup, Version: "v1beta1", Resource: workload.ClaimResource}
)

// sandboxFixture is a fixture whose controller has an agent-sandbox API
// over a fake discovery (serving what resources lists) and a fake dynamic
// client. Its informers are never started; they count as synced, and
// tests fill their caches.
type sandboxFixture struct {
	*fixture
	dyn  *dynamicfake.FakeDynamicClient
	disc *fakediscovery.FakeDiscovery
}

func servedSandboxAPI() []*metav1.APIResourceList {
	return []*metav1.APIResourceList{
		{GroupVersion: sandboxesGVR.GroupVersion().String(), APIResources: []metav1.APIResource{{Name: "sandboxes", Kind: "Sandbox", Namespaced: true}}},
		{GroupVersion: claimsGVR.GroupVersion().String(), APIResources: []metav1.APIResource{{Name: "sandboxclaims", Kind: "SandboxClaim", Namespaced: true}}},
	}
}

func newSandboxFixture(t *testing.T, resources []*metav1.APIResourceList) *sandboxFixture {
	t.Helper()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{sandboxesGVR: "SandboxList", claimsGVR: "SandboxClaimList"})
	disc := &fakediscovery.FakeDiscovery{Fake: &core.Fake{Resources: resources}}
	api := NewSandboxAPI(disc, dyn, SandboxAPIConfig{})
	api.assumeSynced = true
	f := newFixture(t, func(o *Options) { o.SandboxAPI = api })
	return &sandboxFixture{fixture: f, dyn: dyn, disc: disc}
}

func (f *sandboxFixture) clearActions() {
	f.fixture.clearActions()
	f.dyn.ClearActions()
}

// dynWrites are the writes on the dynamic client.
func (f *sandboxFixture) dynWrites() []core.Action { return writeActions(f.dyn.Actions()) }

// cacheSandbox puts u in the agent-sandbox informer cache of resource.
func (f *sandboxFixture) cacheSandbox(resource string, u *unstructured.Unstructured) {
	f.t.Helper()
	idx := f.c.sandboxes.indexer(resource)
	require.NotNil(f.t, idx, "%s not discovered", resource)
	require.NoError(f.t, idx.Add(u))
}

// assignUIDs makes the fake clientset give created objects a UID, as the
// API server does (the controller deletes with the UID as precondition and
// remembers deletions by UID).
func (f *fixture) assignUIDs() {
	n := 0
	f.kube.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		if m, err := meta.Accessor(a.(core.CreateAction).GetObject()); err == nil && m.GetUID() == "" {
			n++
			m.SetUID(types.UID(fmt.Sprintf("%s-uid-%d", a.GetResource().Resource, n)))
		}
		return false, nil, nil
	})
}

func newServerFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.assignUIDs()
	return f
}

func serverRun(name string, opts ...runOpt) *v1alpha1.AgentRun {
	return newRun(name, append([]runOpt{func(r *v1alpha1.AgentRun) { r.Spec.Mode = v1alpha1.ModeServer }}, opts...)...)
}

func TestSyncServerCreatesDeploymentServiceAndFinalizer(t *testing.T) {
	f := newServerFixture(t)
	run := serverRun("web")
	run.ResourceVersion = "3"
	f.add(newInstance("inst"), run)

	require.NoError(t, f.sync("web"))

	cw := f.clientWrites()
	require.Equal(t, []string{"patch agentruns ns/web", "update agentruns/status ns/web"}, describe(cw))
	var patch struct {
		Metadata map[string]json.RawMessage `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(cw[0].(core.PatchAction).GetPatch(), &patch))
	assert.JSONEq(t, `"3"`, string(patch.Metadata["resourceVersion"]))
	assert.JSONEq(t, `["sympozium.ai/server-cleanup"]`, string(patch.Metadata["finalizers"]))
	assert.NotContains(t, patch.Metadata, "ownerReferences")

	kw := f.kubeWrites()
	require.Equal(t, []string{"create deployments ns/web-server", "create services ns/web-server"}, describe(kw))
	dep := object[*appsv1.Deployment](t, kw[0])
	assert.Equal(t, []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun", Name: "web", UID: "web-uid",
		Controller: new(true), BlockOwnerDeletion: new(true)}}, dep.OwnerReferences)
	assert.Equal(t, workload.Labels(run), dep.Labels)
	assert.EqualValues(t, 1, *dep.Spec.Replicas)
	assert.Equal(t, corev1.RestartPolicyAlways, dep.Spec.Template.Spec.RestartPolicy)
	assert.Equal(t, workload.ServerSelector(run), dep.Spec.Selector.MatchLabels)
	assert.NotEmpty(t, dep.Annotations[workload.AnnotationSpecHash])
	svc := object[*corev1.Service](t, kw[1])
	assert.Equal(t, workload.ServerSelector(run), svc.Spec.Selector)
	require.Len(t, svc.Spec.Ports, 1)
	assert.Equal(t, "http", svc.Spec.Ports[0].Name)
	assert.EqualValues(t, 8080, svc.Spec.Ports[0].Port)

	st := object[*v1alpha1.AgentRun](t, cw[1]).Status
	assert.Equal(t, v1alpha1.PhasePending, st.Phase)
	assert.Equal(t, "web-server", st.DeploymentName)
	assert.Equal(t, "web-server", st.ServiceName)
	assert.Empty(t, st.JobName)
	assert.Equal(t, []string{v1alpha1.FinalizerServer}, object[*v1alpha1.AgentRun](t, cw[1]).Finalizers,
		"the status write starts from the patched run")
	assert.Empty(t, f.events(), "the Admitted condition says it")

	// Once the caches caught up there is nothing more to do.
	f.refresh()
	assert.Equal(t, 1, f.converge("web", 3))
}

// availableDeployment marks the tracked Deployment available, as the
// deployment controller would.
func (f *fixture) availableDeployment(name string) {
	f.t.Helper()
	o, err := f.kube.Tracker().Get(deploymentsGVR, testNS, name)
	require.NoError(f.t, err)
	dep := o.(*appsv1.Deployment).DeepCopy()
	dep.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}}
	f.update(dep)
}

func TestSyncServerServesThenDeletionReleasesTheFinalizer(t *testing.T) {
	f := newServerFixture(t)
	f.add(newInstance("inst"), serverRun("web"))
	require.Equal(t, 2, f.converge("web", 3))
	f.availableDeployment("web-server")

	f.clearActions()
	require.NoError(t, f.sync("web"))
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/web"}, describe(cw))
	st := object[*v1alpha1.AgentRun](t, cw[0]).Status
	assert.Equal(t, v1alpha1.PhaseServing, st.Phase)
	c := findCond(st, v1alpha1.ConditionServing)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assert.NotNil(t, st.StartedAt)
	assert.Empty(t, describe(f.kubeWrites()))
	f.refresh()
	assert.Equal(t, 1, f.converge("web", 3))

	// A serving run has no deadline.
	f.setNow(t0.Add(24 * time.Hour))
	assert.Equal(t, 1, f.converge("web", 3))

	// kubectl delete: the API server sets deletionTimestamp, the finalizer
	// holds the run.
	run := f.trackedRun("web").DeepCopy()
	run.DeletionTimestamp = new(metav1.NewTime(f.clock()))
	f.update(run)
	f.clearActions()
	f.events()
	require.NoError(t, f.sync("web"))

	all := append(describe(f.client.Actions()), describe(f.kube.Actions())...)
	assert.Equal(t, []string{"update agentruns/status ns/web", "patch agentruns ns/web", "delete deployments ns/web-server", "delete services ns/web-server"}, all)
	st = object[*v1alpha1.AgentRun](t, f.client.Actions()[0]).Status
	assert.Equal(t, v1alpha1.PhaseSucceeded, st.Phase)
	assert.NotNil(t, st.CompletedAt)
	assert.Equal(t, v1alpha1.ReasonSucceeded, findCond(st, v1alpha1.ConditionComplete).Reason)
	c = findCond(st, v1alpha1.ConditionServing)
	assert.Equal(t, metav1.ConditionFalse, c.Status)
	// The finalizer goes last, after the deletes.
	kubeDeletes := f.kube.Actions()
	for _, a := range kubeDeletes {
		assert.Equal(t, "delete", a.GetVerb())
		uid := a.(core.DeleteActionImpl).DeleteOptions.Preconditions.UID
		require.NotNil(t, uid)
	}
	assert.Empty(t, f.trackedRun("web").Finalizers)
	assert.Equal(t, []string{"Normal Succeeded the run was deleted: its server was stopped"}, f.events())
}

func TestSyncServerOrder(t *testing.T) {
	// The finalizer is removed only after the workload was deleted: when a
	// delete fails, the finalizer stays and the sync is retried.
	f := newServerFixture(t)
	f.add(newInstance("inst"), serverRun("web"))
	require.Equal(t, 2, f.converge("web", 3))
	run := f.trackedRun("web").DeepCopy()
	run.DeletionTimestamp = new(metav1.NewTime(f.clock()))
	f.update(run)
	remove := injectError(&f.kube.Fake, "delete", "services", "")
	f.clearActions()
	require.Error(t, f.sync("web"))
	assert.Equal(t, []string{v1alpha1.FinalizerServer}, f.trackedRun("web").Finalizers)
	assert.Equal(t, v1alpha1.ReasonServerNotReady, findCond(f.trackedRun("web").Status, v1alpha1.ConditionFailed).Reason,
		"deleted before it served")

	remove()
	f.refresh()
	f.clearActions()
	require.NoError(t, f.sync("web"))
	assert.Equal(t, []string{"delete services ns/web-server"}, describe(f.kubeWrites()))
	assert.Equal(t, []string{"patch agentruns ns/web"}, describe(f.clientWrites()))
	assert.Empty(t, f.trackedRun("web").Finalizers)
}

func TestSyncServerRollsOnSpecChange(t *testing.T) {
	f := newServerFixture(t)
	f.add(newInstance("inst"), serverRun("web"))
	require.Equal(t, 2, f.converge("web", 3))
	f.availableDeployment("web-server")
	f.converge("web", 3)
	before, err := f.kube.Tracker().Get(deploymentsGVR, testNS, "web-server")
	require.NoError(t, err)

	run := f.trackedRun("web").DeepCopy()
	run.Spec.Task = "answer questions about the cluster"
	run.Generation = 2
	f.update(run)
	f.clearActions()
	require.NoError(t, f.sync("web"))
	kw := f.kubeWrites()
	require.Equal(t, []string{"update deployments ns/web-server"}, describe(kw))
	// The fake tracker, unlike the API server, does not keep the status
	// across an update: the deployment controller's status comes back.
	f.availableDeployment("web-server")
	dep := object[*appsv1.Deployment](t, kw[0])
	assert.Equal(t, before.(*appsv1.Deployment).ResourceVersion, dep.ResourceVersion, "the update is guarded by the cached resourceVersion")
	assert.NotEqual(t, before.(*appsv1.Deployment).Annotations[workload.AnnotationSpecHash], dep.Annotations[workload.AnnotationSpecHash])
	assert.Contains(t, dep.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: workload.EnvTask, Value: "answer questions about the cluster"})
	st := f.trackedRun("web").Status
	assert.EqualValues(t, 2, st.ObservedGeneration)
	assert.Equal(t, v1alpha1.PhaseServing, st.Phase)
	f.refresh()
	assert.Equal(t, 1, f.converge("web", 3))
}

func TestSyncServerDeploymentDeleted(t *testing.T) {
	f := newServerFixture(t)
	f.add(newInstance("inst"), serverRun("web"))
	require.Equal(t, 2, f.converge("web", 3))
	f.availableDeployment("web-server")
	f.converge("web", 3)
	// The informer delivered the Deployment (which ends the create's
	// expectation), then its deletion.
	dep, err := f.kf.Apps().V1().Deployments().Lister().Deployments(testNS).Get("web-server")
	require.NoError(t, err)
	f.c.workloadChanged(dep)
	require.NoError(t, f.kube.Tracker().Delete(deploymentsGVR, testNS, "web-server"))
	f.refresh()
	f.clearActions()
	require.NoError(t, f.sync("web"))
	assert.Equal(t, []string{"update agentruns/status ns/web", "patch agentruns ns/web"}, describe(f.clientWrites()))
	assert.Equal(t, []string{"delete services ns/web-server"}, describe(f.kubeWrites()))
	st := f.trackedRun("web").Status
	assert.Equal(t, v1alpha1.ReasonJobLost, findCond(st, v1alpha1.ConditionFailed).Reason)
	assert.Empty(t, f.trackedRun("web").Finalizers)
}

func sandboxRun(name, pool string) *v1alpha1.AgentRun {
	return newRun(name, func(r *v1alpha1.AgentRun) {
		r.Spec.AgentSandbox = &v1alpha1.AgentSandboxSpec{Enabled: true, WarmPoolRef: pool}
		if pool == "" { // the CRD refuses a runtime class with a warm pool
			r.Spec.AgentSandbox.RuntimeClass = "gvisor"
		}
	})
}

// TestSyncSandboxRefusedFailsFast: a Sandbox whose pod the API server
// refuses (agent-sandbox's Ready=False/ReconcilerError) past the fail-fast
// grace fails the run with SandboxRefused and agent-sandbox's reason and
// message, in the status and the Event, and the Sandbox is deleted.
func TestSyncSandboxRefusedFailsFast(t *testing.T) {
	f := newSandboxFixture(t, servedSandboxAPI())
	run := sandboxRun("sb", "")
	f.add(newInstance("inst"), run)
	require.NoError(t, f.sync("sb")) // creates the Sandbox
	f.refresh()
	f.events()
	f.clearActions()
	msg := `pods "sb" is forbidden: pod rejected: RuntimeClass "gvisor" not found`
	f.cacheSandbox("sandboxes", sandboxIn(run, "Sandbox", "sb", "sb-sandbox-uid",
		[]metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "ReconcilerError", Message: msg, LastTransitionTime: metav1.NewTime(t0.Add(time.Second))}}, ""))

	require.NoError(t, f.sync("sb"))
	st := f.trackedRun("sb").Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	assert.Equal(t, v1alpha1.ReasonSandboxRefused, findCond(st, v1alpha1.ConditionFailed).Reason)
	assert.Equal(t, "SandboxRefused: Sandbox sb: ReconcilerError: "+msg, st.Error)
	assert.Equal(t, []string{"Warning SandboxRefused Sandbox sb: ReconcilerError: " + msg}, f.events())
	assert.Equal(t, []string{"delete sandboxes ns/sb"}, describe(f.dynWrites()))
}

func TestSyncSandboxCreates(t *testing.T) {
	f := newSandboxFixture(t, servedSandboxAPI())
	f.add(newInstance("inst"), sandboxRun("sb", ""))

	require.NoError(t, f.sync("sb"))

	dw := f.dynWrites()
	require.Equal(t, []string{"create sandboxes ns/sb"}, describe(dw))
	assert.Equal(t, sandboxesGVR, dw[0].GetResource())
	u := object[*unstructured.Unstructured](t, dw[0])
	assert.Equal(t, "agents.x-k8s.io/v1beta1", u.GetAPIVersion())
	assert.Equal(t, "Sandbox", u.GetKind())
	assert.Equal(t, []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun", Name: "sb", UID: "sb-uid",
		Controller: new(true), BlockOwnerDeletion: new(true)}}, u.GetOwnerReferences())
	assert.Equal(t, v1alpha1.ManagedByValue, u.GetLabels()[v1alpha1.LabelManagedBy])
	rc, _, _ := unstructured.NestedString(u.Object, "spec", "podTemplate", "spec", "runtimeClassName")
	assert.Equal(t, "gvisor", rc)
	rp, _, _ := unstructured.NestedString(u.Object, "spec", "podTemplate", "spec", "restartPolicy")
	assert.Equal(t, "Never", rp)
	_, hasReplicas, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "replicas")
	assert.False(t, hasReplicas, "v1beta1 has no spec.replicas")

	assert.Empty(t, describe(f.kubeWrites()), "no Job")
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/sb"}, describe(cw))
	st := object[*v1alpha1.AgentRun](t, cw[0]).Status
	assert.Equal(t, v1alpha1.PhasePending, st.Phase)
	assert.Equal(t, "sb", st.SandboxName)
	assert.Empty(t, f.events(), "the Admitted condition says it")

	// Created but not in the cache yet: expected, not lost.
	f.refresh()
	f.clearActions()
	require.NoError(t, f.sync("sb"))
	assert.Empty(t, describe(f.dynWrites()))
	assert.Empty(t, describe(f.clientWrites()))
}

// sandboxIn is the Sandbox (or claim) of run as the informer holds it.
func sandboxIn(run *v1alpha1.AgentRun, kind, name string, uid types.UID, conds []metav1.Condition, bound string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	gv := sandboxesGVR.GroupVersion()
	if kind == workload.SandboxClaimKind {
		gv = claimsGVR.GroupVersion()
	}
	u.SetAPIVersion(gv.String())
	u.SetKind(kind)
	u.SetName(name)
	u.SetNamespace(run.Namespace)
	u.SetUID(uid)
	u.SetCreationTimestamp(metav1.NewTime(t0.Add(time.Second)))
	u.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))})
	var cs []any
	for _, c := range conds {
		m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		cs = append(cs, m)
	}
	status := map[string]any{"conditions": cs}
	if bound != "" {
		status["sandbox"] = map[string]any{"name": bound}
	}
	u.Object["status"] = status
	return u
}

// sandboxPod is the pod of Sandbox name (uid), made by the sandbox
// controller.
func sandboxPodOf(run *v1alpha1.AgentRun, name string, uid types.UID, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: run.Namespace, UID: types.UID(name + "-pod-uid"),
		CreationTimestamp: metav1.NewTime(t0.Add(2 * time.Second)), Labels: workload.Labels(run),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "agents.x-k8s.io/v1beta1", Kind: "Sandbox", Name: name, UID: uid, Controller: new(true)}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func TestSyncSandboxFollowsItsPod(t *testing.T) {
	f := newSandboxFixture(t, servedSandboxAPI())
	run := sandboxRun("sb", "")
	f.add(newInstance("inst"), run)
	require.NoError(t, f.sync("sb"))
	f.refresh()
	ready := []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "DependenciesReady", LastTransitionTime: metav1.NewTime(t0)}}
	f.cacheSandbox("sandboxes", sandboxIn(run, "Sandbox", "sb", "sb-sandbox-uid", ready, ""))
	f.add(sandboxPodOf(run, "sb", "sb-sandbox-uid", agentRunning(t0.Add(5*time.Second))))

	f.clearActions()
	require.NoError(t, f.sync("sb"))
	st := f.trackedRun("sb").Status
	assert.Equal(t, v1alpha1.PhaseRunning, st.Phase)
	assert.Equal(t, "sb", st.PodName)

	// The agent exits 0: Succeeded with its report, the Sandbox deleted.
	finished := []metav1.Condition{{Type: "Finished", Status: metav1.ConditionTrue, Reason: "PodSucceeded", LastTransitionTime: metav1.NewTime(t0)}}
	require.NoError(t, f.c.sandboxes.indexer("sandboxes").Update(sandboxIn(run, "Sandbox", "sb", "sb-sandbox-uid", finished, "")))
	pod := sandboxPodOf(run, "sb", "sb-sandbox-uid", agentExited(0, reportJSON))
	f.update(pod)
	f.clearActions()
	require.NoError(t, f.sync("sb"))
	st = f.trackedRun("sb").Status
	assert.Equal(t, v1alpha1.PhaseSucceeded, st.Phase)
	assert.Equal(t, "the cluster is healthy", st.Result)
	assert.EqualValues(t, 2300, st.TokenUsage.TotalTokens)
	dw := f.dynWrites()
	require.Equal(t, []string{"delete sandboxes ns/sb"}, describe(dw))
	assert.Equal(t, types.UID("sb-sandbox-uid"), *dw[0].(core.DeleteActionImpl).DeleteOptions.Preconditions.UID)
}

func TestSyncSandboxClaimCreatesAndTracksTheBoundSandbox(t *testing.T) {
	f := newSandboxFixture(t, servedSandboxAPI())
	run := sandboxRun("sb", "pool")
	f.add(newInstance("inst"), run)

	require.NoError(t, f.sync("sb"))
	dw := f.dynWrites()
	require.Equal(t, []string{"create sandboxclaims ns/sb"}, describe(dw))
	assert.Equal(t, claimsGVR, dw[0].GetResource())
	u := object[*unstructured.Unstructured](t, dw[0])
	assert.Equal(t, "SandboxClaim", u.GetKind())
	pool, _, _ := unstructured.NestedString(u.Object, "spec", "warmPoolRef", "name")
	assert.Equal(t, "pool", pool)
	// No labels and no env for the pod (a stock agent-sandbox refuses the
	// one and cold-starts on the other): the run travels in annotations.
	_, hasLabels, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "additionalPodMetadata", "labels")
	assert.False(t, hasLabels)
	_, hasEnv, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "env")
	assert.False(t, hasEnv)
	ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "additionalPodMetadata", "annotations")
	assert.Equal(t, "do it", ann[workload.AnnotationWarmTask])
	wantLabels := workload.Labels(run)
	wantLabels[v1alpha1.LabelAgentSandbox] = "true"
	assert.Equal(t, wantLabels, u.GetLabels(), "the claim itself carries the run's labels, and sympozium's agent-sandbox label")
	st := f.trackedRun("sb").Status
	assert.Equal(t, "sb", st.SandboxClaimName)
	assert.Empty(t, st.SandboxName)

	// Bound to a warm pool's Sandbox whose pod is not in the cache (it
	// lacks the run's labels): the claim's Finished makes the controller
	// read the pod once.
	f.refresh()
	finished := []metav1.Condition{{Type: "Finished", Status: metav1.ConditionTrue, Reason: "PodFailed", LastTransitionTime: metav1.NewTime(t0)}}
	f.cacheSandbox("sandboxclaims", sandboxIn(run, "SandboxClaim", "sb", "claim-uid", finished, "pool-x7k2q"))
	pod := sandboxPodOf(run, "pool-x7k2q", "pool-sandbox-uid", agentExited(3, `{"status":"error","error":"tool crashed"}`))
	pod.Labels = nil
	f.addToTracker(pod)
	f.clearActions()
	require.NoError(t, f.sync("sb"))
	var gets []string
	for _, a := range f.kube.Actions() {
		if g, ok := a.(core.GetAction); ok && a.GetResource().Resource == "pods" {
			gets = append(gets, g.GetName())
		}
	}
	assert.Equal(t, []string{"pool-x7k2q"}, gets, "the claimed pod, read once from the API server")
	st = f.trackedRun("sb").Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	assert.Equal(t, "pool-x7k2q", st.SandboxName)
	assert.Equal(t, "pool-x7k2q", st.PodName)
	require.NotNil(t, st.ExitCode)
	assert.EqualValues(t, 3, *st.ExitCode)
	assert.Contains(t, st.Error, "tool crashed")
	assert.Equal(t, []string{"delete sandboxclaims ns/sb"}, describe(f.dynWrites()))
}

func TestSyncSandboxAPIMissing(t *testing.T) {
	f := newSandboxFixture(t, nil) // the cluster serves no agent-sandbox API
	f.add(newInstance("inst"), sandboxRun("sb", ""), sandboxRun("claimed", "pool"), newRun("task"))

	for _, name := range []string{"sb", "claimed"} {
		require.NoError(t, f.sync(name))
		st := f.trackedRun(name).Status
		assert.Equal(t, v1alpha1.PhaseFailed, st.Phase, name)
		c := findCond(st, v1alpha1.ConditionFailed)
		require.NotNil(t, c, name)
		assert.Equal(t, v1alpha1.ReasonSandboxUnavailable, c.Reason, name)
		assert.Contains(t, st.Error, "agents.x-k8s.io is not served", name)
	}
	assert.Empty(t, f.dyn.Actions(), "nothing created, no informer on a missing resource")
	assert.Nil(t, f.c.sandboxes.indexer("sandboxes"))

	// Every other run is unaffected.
	require.NoError(t, f.sync("task"))
	assert.Equal(t, []string{"create jobs ns/task"}, describe(f.kubeWrites()))
}

func TestSandboxAPIDiscovery(t *testing.T) {
	f := newSandboxFixture(t, nil)
	api := f.c.sandboxes

	st, err := api.Lookup(f.ctx, false)
	require.NoError(t, err)
	assert.Empty(t, st.Sandbox)
	lookups := len(f.disc.Actions())

	// Installed later: noticed once minRecheck has passed, without a
	// restart.
	f.disc.Resources = servedSandboxAPI()
	st, err = api.Lookup(f.ctx, false)
	require.NoError(t, err)
	assert.Empty(t, st.Sandbox, "looked up again too soon")
	assert.Len(t, f.disc.Actions(), lookups)
	f.setNow(f.clock().Add(minRecheck))
	st, err = api.Lookup(f.ctx, false)
	require.NoError(t, err)
	assert.Equal(t, "agents.x-k8s.io/v1beta1", st.Sandbox)
	assert.Equal(t, "extensions.agents.x-k8s.io/v1beta1", st.Claim)
	assert.NotNil(t, api.indexer("sandboxes"))
	n := len(f.disc.Actions())
	_, err = api.Lookup(f.ctx, true)
	require.NoError(t, err)
	assert.Len(t, f.disc.Actions(), n, "served: no lookup")

	// Only v1alpha1 served: Sandboxes in v1alpha1, claims unavailable.
	f.disc.Resources = []*metav1.APIResourceList{
		{GroupVersion: "agents.x-k8s.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "sandboxes", Kind: "Sandbox", Namespaced: true}}},
		{GroupVersion: "extensions.agents.x-k8s.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "sandboxclaims", Kind: "SandboxClaim", Namespaced: true}}},
	}
	require.NoError(t, api.refresh(f.ctx))
	st, err = api.Lookup(f.ctx, false)
	require.NoError(t, err)
	assert.Equal(t, "agents.x-k8s.io/v1alpha1", st.Sandbox)
	assert.Empty(t, st.Claim)
	assert.Contains(t, st.Why, "not served in version v1beta1")
	assert.Nil(t, api.indexer("sandboxclaims"))

	// Removed: the informers go.
	f.disc.Resources = nil
	require.NoError(t, api.refresh(f.ctx))
	assert.Nil(t, api.indexer("sandboxes"))
}

func TestServerAndSandboxHandlers(t *testing.T) {
	srv := serverRun("web", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseServing, DeploymentName: "web-server"}))
	done := serverRun("old", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded}))
	task := newRun("task", withStatus(runningStatus("task", "task-pod")))

	t.Run("Deployment and Service events enqueue their run; a Deployment ends the create's expectation", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(srv)
		dep, err := workload.Deployment(testPhaseConfig.Workload, workload.Inputs{Run: srv, Now: t0})
		require.NoError(t, err)
		dep.UID, dep.ResourceVersion = "dep-uid", "1"
		svc := workload.Service(workload.Inputs{Run: srv})
		f.c.expectations.expectWorkload(srv.UID)
		require.Len(t, f.handlers[phase.KindDeployment], 1)
		require.Len(t, f.handlers[phase.KindService], 1)
		f.handler(phase.KindDeployment).OnAdd(dep, false)
		assert.False(t, f.c.expectations.workloadExpected(srv.UID))
		assert.Equal(t, []string{"ns/web"}, f.queued())
		f.handler(phase.KindDeployment).OnUpdate(dep, dep.DeepCopy())
		assert.Empty(t, f.queued(), "a resync enqueues nothing")
		f.handler(phase.KindService).OnAdd(svc, false)
		f.handler(phase.KindService).OnDelete(svc)
		f.handler(phase.KindDeployment).OnDelete(dep)
		assert.Equal(t, []string{"ns/web"}, f.queued())
	})
	t.Run("a changed SkillPack or instance wakes the live servers only", func(t *testing.T) {
		f := newFixture(t)
		f.addToCache(srv, done, task)
		pack := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: testNS, Generation: 1}}
		next := pack.DeepCopy()
		next.Generation = 2
		require.Len(t, f.handlers[kindSkillPack], 1)
		f.handler(kindSkillPack).OnUpdate(pack, pack.DeepCopy())
		assert.Empty(t, f.queued(), "status-only updates roll nothing")
		f.handler(kindSkillPack).OnUpdate(pack, next)
		assert.Equal(t, []string{"ns/web"}, f.queued())
		inst := newInstance("inst")
		instNext := inst.DeepCopy()
		instNext.Generation = 2
		f.handler(kindInstance).OnUpdate(inst, instNext)
		assert.Equal(t, []string{"ns/web"}, f.queued())
	})
	t.Run("a sandbox pod enqueues the run named by its label; sandbox events their owner", func(t *testing.T) {
		f := newFixture(t)
		sb := sandboxRun("sb", "")
		f.addToCache(sb)
		f.handler(phase.KindPod).OnAdd(sandboxPodOf(sb, "sb", "sandbox-uid"), false)
		assert.Equal(t, []string{"ns/sb"}, f.queued())
		unlabelled := sandboxPodOf(sb, "pool-x", "pool-uid")
		unlabelled.Labels = nil
		f.handler(phase.KindPod).OnAdd(unlabelled, false)
		assert.Empty(t, f.queued())
		u := sandboxIn(sb, "Sandbox", "sb", "sandbox-uid", nil, "")
		f.c.expectations.expectWorkload(sb.UID)
		f.c.sandboxEvent(u, false)
		assert.False(t, f.c.expectations.workloadExpected(sb.UID))
		assert.Equal(t, []string{"ns/sb"}, f.queued())
		f.c.sandboxEvent(cache.DeletedFinalStateUnknown{Key: "ns/sb", Obj: u}, true)
		assert.Equal(t, []string{"ns/sb"}, f.queued())
	})
}

func TestSyncServerRejectedReleasesTheFinalizer(t *testing.T) {
	f := newServerFixture(t)
	f.add(newInstance("inst"), serverRun("web"))
	f.kube.PrependReactor("create", "deployments", func(a core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "web-server", nil)
	})
	require.NoError(t, f.sync("web"))
	assert.Equal(t, []string{"patch agentruns ns/web", "update agentruns/status ns/web", "patch agentruns ns/web"}, describe(f.clientWrites()))
	run := f.trackedRun("web")
	assert.Equal(t, v1alpha1.ReasonInvalidSpec, findCond(run.Status, v1alpha1.ConditionFailed).Reason)
	assert.Contains(t, run.Status.Error, "rejected the run's Deployment")
	assert.Empty(t, run.Finalizers)
}

// indexer returns the cache of resource (for tests to fill); nil when it
// is not served.
func (a *SandboxAPI) indexer(resource string) cache.Indexer {
	a.mu.Lock()
	defer a.mu.Unlock()
	if di := a.infs[resource]; di != nil {
		return di.inf.GetIndexer()
	}
	return nil
}

// A changed instance or SkillPack rolls the live servers it concerns, and
// reads only live runs to find them.
func TestServerWakes(t *testing.T) {
	serving := v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseServing, DeploymentName: "x"}
	live := serverRun("live", withStatus(serving))
	other := serverRun("other", withInstance("other"), withStatus(serving))
	finished := serverRun("finished", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded}))
	task := newRun("task", withStatus(runningStatus("task", "task-pod")))
	elsewhere := serverRun("elsewhere", withStatus(serving), func(r *v1alpha1.AgentRun) { r.Namespace = "ns2" })
	f := newFixture(t)
	f.addToCache(live, other, finished, task, elsewhere)

	require.Len(t, f.handlers[kindInstance], 1)
	changed := newInstance("inst")
	changed.Generation = 2
	f.handler(kindInstance).OnUpdate(newInstance("inst"), changed)
	assert.Equal(t, []string{"ns/live"}, f.queued(), "the instance's live servers")

	require.Len(t, f.handlers[kindSkillPack], 1)
	pack := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: testNS, Generation: 1}}
	newer := pack.DeepCopy()
	newer.Generation = 2
	f.handler(kindSkillPack).OnUpdate(pack, newer)
	assert.Equal(t, []string{"ns/live", "ns/other"}, f.queued(), "the namespace's live servers")
	f.handler(kindSkillPack).OnUpdate(pack, pack.DeepCopy())
	assert.Empty(t, f.queued(), "a status-only change rolls nothing")
}
