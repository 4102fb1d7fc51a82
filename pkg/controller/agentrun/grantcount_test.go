package agentrun

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestCountGrants: a grant is active while its run is live, and left once
// its run is finished, gone, or the name belongs to another run.
func TestCountGrants(t *testing.T) {
	f := newFixture(t)
	g := f.withGrants()
	live := newRun("live", withStatus(runningStatus("live", "live-pod")))
	done := newRun("done", withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded}))
	f.addToCache(live, done)

	crb := func(name, run, uid string) *rbacv1.ClusterRoleBinding {
		b := clusterGrant(run, uid)
		b.Name, b.UID = name, types.UID("crb-"+name)
		return b
	}
	for _, b := range []*rbacv1.ClusterRoleBinding{
		crb("of-live", "live", "live-uid"),
		crb("of-done", "done", "done-uid"),
		crb("of-gone", "gone", "gone-uid"),
		crb("of-an-earlier-live", "live", "earlier-uid"),
	} {
		require.NoError(t, g.ClusterRoleBindings.GetIndexer().Add(b))
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sympozium-run-live", Namespace: testNS,
		Labels:          map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelComponent: workload.ComponentIdentity},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(live, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}}}
	require.NoError(t, g.RoleBindings.GetIndexer().Add(rb))
	// Not a grant: another RoleBinding the controller's informer holds.
	require.NoError(t, g.RoleBindings.GetIndexer().Add(&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: testNS}}))

	assert.Equal(t, []GrantCount{
		{Kind: phase.KindRoleBinding, Active: 1},
		{Kind: phase.KindClusterRoleBinding, Active: 1, Left: 3},
		{Kind: phase.KindClusterRole},
	}, f.c.CountGrants())
}

// Without grant informers there is nothing to count.
func TestCountGrantsWithoutInformers(t *testing.T) {
	assert.Nil(t, newFixture(t).c.CountGrants())
}
