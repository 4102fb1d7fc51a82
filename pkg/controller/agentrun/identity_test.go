package agentrun

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	core "k8s.io/client-go/testing"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// withGrants gives the fixture's controller the grant informers (never
// started: tests fill their indexers).
func (f *fixture) withGrants() *GrantInformers {
	f.t.Helper()
	kf := informers.NewSharedInformerFactory(f.kube, 0)
	g := &GrantInformers{
		RoleBindings:        kf.Rbac().V1().RoleBindings().Informer(),
		ClusterRoles:        kf.Rbac().V1().ClusterRoles().Informer(),
		ClusterRoleBindings: kf.Rbac().V1().ClusterRoleBindings().Informer(),
	}
	_, err := f.c.addGrantInformers(g)
	require.NoError(f.t, err)
	return g
}

func clusterGrant(run, uid string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{
		Name: "grant-of-" + run, UID: "crb-" + "uid-" + "x",
		Labels: map[string]string{
			v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelComponent: workload.ComponentIdentity,
			workload.LabelAgentRunNamespace: testNS, workload.LabelAgentRunUID: uid,
		},
		Annotations: map[string]string{workload.AnnotationAgentRun: run},
	}}
}

// A cluster grant names its run: any event of it enqueues that run, whose
// sync deletes the grant once the run is gone (confirmed on the API
// server, since the run cache may lag), or when the name now belongs to
// another run.
func TestClusterGrantsOfGoneRunsSwept(t *testing.T) {
	f := newFixture(t)
	g := f.withGrants()
	gone := clusterGrant("gone", "gone-uid")
	require.NoError(t, f.kube.Tracker().Add(gone))
	require.NoError(t, g.ClusterRoleBindings.GetIndexer().Add(gone))

	f.c.grantChanged(gone)
	assert.Equal(t, []string{testNS + "/gone"}, f.queued())
	require.NoError(t, f.sync("gone"))
	assert.Equal(t, []string{"delete clusterrolebindings /grant-of-gone"}, describe(f.kubeWrites()))
	del := f.kubeWrites()[0].(core.DeleteActionImpl)
	require.NotNil(t, del.DeleteOptions.Preconditions)
	assert.Equal(t, gone.UID, *del.DeleteOptions.Preconditions.UID)

	// The run exists on the API server, not yet in the cache: kept.
	f.clearActions()
	late := clusterGrant("late", "late-uid")
	require.NoError(t, g.ClusterRoleBindings.GetIndexer().Add(late))
	f.addToTracker(newRun("late"))
	require.NoError(t, f.sync("late"))
	assert.Empty(t, f.kubeWrites())

	// The name belongs to another run now.
	f.clearActions()
	f.c.expectations.gone(gone.UID)
	old := clusterGrant("late", "an-earlier-uid")
	old.Name, old.UID = "grant-of-an-earlier-late", "old-uid"
	require.NoError(t, f.kube.Tracker().Add(old))
	require.NoError(t, g.ClusterRoleBindings.GetIndexer().Add(old))
	f.add(newInstance("inst"))
	f.addToCache(newRun("late"))
	require.NoError(t, f.sync("late"))
	assert.Contains(t, describe(f.kubeWrites()), "delete clusterrolebindings /grant-of-an-earlier-late")
	assert.NotContains(t, describe(f.kubeWrites()), "delete clusterrolebindings /grant-of-late")
}

// A run being deleted without the server finalizer (another one holds it)
// is left to the garbage collector but for its cluster-scoped grants, which
// have no namespaced owner: its decision deletes them and writes nothing
// else, not even the observed generation the deletion bumped.
func TestDeletedRunWithoutOurFinalizerRevokesItsClusterGrants(t *testing.T) {
	f := newFixture(t)
	g := f.withGrants()
	run := newRun("run", func(r *v1alpha1.AgentRun) {
		r.UID, r.Generation = "run-uid", 2
		r.Finalizers = []string{"example.com/hold"}
		r.DeletionTimestamp = new(metav1.NewTime(t0))
	})
	own := clusterGrant("run", "run-uid")
	require.NoError(t, f.kube.Tracker().Add(own))
	require.NoError(t, g.ClusterRoleBindings.GetIndexer().Add(own))
	f.add(newInstance("inst"), run)

	require.NoError(t, f.sync("run"))
	assert.Equal(t, []string{"delete clusterrolebindings /grant-of-run"}, describe(f.kubeWrites()))
	assert.Empty(t, f.clientWrites())
}

// A grant the API server refuses (Forbidden: more than the controller
// holds) fails the run with GrantRefused at once: no workload, no retry.
func TestRefusedGrantFailsTheRun(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Phase.Workload.RunIdentity = true
		o.Phase.SkillsNamespace = testNS
	})
	f.withGrants()
	f.kube.PrependReactor("create", "roles", func(core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "roles"}, "x",
			assert.AnError)
	})
	pack := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "kube", Namespace: testNS},
		Spec: v1alpha1.SkillPackSpec{Skills: []v1alpha1.Skill{{Name: "kube", Content: "# kube"}}, Sidecar: &v1alpha1.SkillSidecar{
			Image: "kubectl:test", RBAC: []v1alpha1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}}}
	run := newRun("run", func(r *v1alpha1.AgentRun) { r.Spec.Skills = []v1alpha1.SkillRef{{SkillPackRef: "kube"}} })
	f.add(newInstance("inst"), pack, run, skillConfigMap("kube"))

	require.NoError(t, f.sync("run"))
	assert.Equal(t, []string{"create serviceaccounts ns/sympozium-run-run", "create roles ns/sympozium-run-run.kube-" + roleSuffix(t, f)},
		describe(f.kubeWrites()), "stopped at the refusal: no binding, no Job")
	st := f.trackedRun("run").Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	c := findCond(st, v1alpha1.ConditionFailed)
	require.NotNil(t, c)
	assert.Equal(t, v1alpha1.ReasonGrantRefused, c.Reason)
	assert.Contains(t, c.Message, "SkillPack kube")
}

func roleSuffix(t *testing.T, f *fixture) string {
	for _, a := range f.kubeWrites() {
		if a.GetResource().Resource == "roles" {
			name := a.(core.CreateAction).GetObject().(*rbacv1.Role).Name
			return name[len("sympozium-run-run.kube-"):]
		}
	}
	return ""
}

func skillConfigMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}}
}

// A run without API-needing sidecars writes what it wrote before the
// per-run identity: the Job, three statuses (Pending, Running,
// Succeeded) and the Job's delete, five writes; no grant is read back as
// a write.
func TestPlainRunWritesUnchanged(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.Phase.Workload.RunIdentity = true
		o.Phase.SkillsNamespace = testNS
	})
	f.withGrants()
	f.add(newInstance("inst"), newRun("run"))
	writes := 0
	step := func() {
		t.Helper()
		f.clearActions()
		require.NoError(t, f.sync("run"))
		writes += len(f.clientWrites()) + len(f.kubeWrites())
		f.refresh()
	}
	step()
	job, err := f.trackedJob("run")
	require.NoError(t, err)
	f.add(podOf(job, "run-pod", agentRunning(t0.Add(5*time.Second))))
	step()
	f.update(podOf(job, "run-pod", agentExited(0, reportJSON)))
	step()
	step() // quiet
	assert.Equal(t, v1alpha1.PhaseSucceeded, f.trackedRun("run").Status.Phase)
	assert.Equal(t, 5, writes)
}
