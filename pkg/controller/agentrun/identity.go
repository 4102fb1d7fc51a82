package agentrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The per-run identity (docs/run-identity.md): the machine asks for a run's
// ServiceAccount, Roles, ClusterRoles and bindings at admission and for the
// deletion of its grants once it is finished; apply executes those actions
// through the kind → client table like any other. What the machine cannot
// see is a run that is gone: its namespaced objects go with it (owner
// references), its cluster-scoped ones cannot be owned by it and are swept
// here, level-based, on every path (run deleted, controller down or crashed
// in between): every event of the label-filtered ClusterRole and
// ClusterRoleBinding informers (their initial list after a start included,
// and each resync) enqueues the run a grant names, and the sync of a run
// the cache does not hold deletes the grants made for it.

// GrantInformers are the informers of the run grants: RoleBindings (filtered
// like the other children, by app.kubernetes.io/managed-by), ClusterRoles
// and ClusterRoleBindings filtered by IdentitySelector.
type GrantInformers struct {
	RoleBindings        cache.SharedIndexInformer
	ClusterRoles        cache.SharedIndexInformer
	ClusterRoleBindings cache.SharedIndexInformer
}

// IdentitySelector selects the cluster-scoped grants of runs in namespace
// ("" for every namespace).
func IdentitySelector(namespace string) string {
	s := v1alpha1.LabelManagedBy + "=" + v1alpha1.ManagedByValue + "," + v1alpha1.LabelComponent + "=" + workload.ComponentIdentity
	if namespace != "" {
		s += "," + workload.LabelAgentRunNamespace + "=" + namespace
	}
	return s
}

const (
	// grantsByRunUID indexes grants by the UID of the run they were made
	// for; clusterGrantsByRun indexes cluster-scoped grants by the
	// namespace/name of their run.
	grantsByRunUID     = "grantsByRunUID"
	clusterGrantsByRun = "clusterGrantsByRun"
)

func grantRunUID(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	if _, _, uid, ok := workload.ClusterGrantRun(m); ok {
		return []string{uid}, nil
	}
	if ref := metav1.GetControllerOf(m); ref != nil && ref.Kind == "AgentRun" &&
		m.GetLabels()[v1alpha1.LabelComponent] == workload.ComponentIdentity {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

func clusterGrantRunKey(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	if ns, name, _, ok := workload.ClusterGrantRun(m); ok {
		return []string{ns + "/" + name}, nil
	}
	return nil, nil
}

// addGrantInformers indexes and watches the grant informers.
func (c *Controller) addGrantInformers(g *GrantInformers) ([]cache.InformerSynced, error) {
	if g == nil {
		return nil, nil
	}
	c.grants = g
	if err := g.RoleBindings.AddIndexers(cache.Indexers{grantsByRunUID: grantRunUID}); err != nil {
		return nil, err
	}
	for _, inf := range []cache.SharedIndexInformer{g.ClusterRoles, g.ClusterRoleBindings} {
		if err := inf.AddIndexers(cache.Indexers{grantsByRunUID: grantRunUID, clusterGrantsByRun: clusterGrantRunKey}); err != nil {
			return nil, err
		}
	}
	var synced []cache.InformerSynced
	rb, err := g.RoleBindings.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.grantChanged(obj) },
		UpdateFunc: func(_, obj any) { c.grantChanged(obj) },
		DeleteFunc: c.grantDeleted,
	})
	if err != nil {
		return nil, err
	}
	synced = append(synced, rb.HasSynced)
	for _, inf := range []cache.SharedIndexInformer{g.ClusterRoles, g.ClusterRoleBindings} {
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			// Every event, resyncs included, checks the grant's run.
			AddFunc:    func(obj any) { c.grantChanged(obj) },
			UpdateFunc: func(_, obj any) { c.grantChanged(obj) },
			DeleteFunc: c.grantDeleted,
		})
		if err != nil {
			return nil, err
		}
		synced = append(synced, reg.HasSynced)
	}
	return synced, nil
}

// grantChanged enqueues the run a grant was made for: a finished run
// revokes it, a gone one has it swept.
func (c *Controller) grantChanged(obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	if ns, name, _, ok := workload.ClusterGrantRun(m); ok {
		c.enqueue(cache.ObjectName{Namespace: ns, Name: name})
		return
	}
	c.enqueueOwner(m)
}

func (c *Controller) grantDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, err := meta.Accessor(obj); err == nil {
		c.expectations.gone(m.GetUID())
	}
}

// observeGrants gathers the grants the caches hold for run.
func (c *Controller) observeGrants(run *v1alpha1.AgentRun, obs *phase.Observed) {
	if c.grants == nil {
		return
	}
	for _, src := range []struct {
		kind phase.Kind
		inf  cache.SharedIndexInformer
	}{
		{phase.KindRoleBinding, c.grants.RoleBindings},
		{phase.KindClusterRoleBinding, c.grants.ClusterRoleBindings},
		{phase.KindClusterRole, c.grants.ClusterRoles},
	} {
		objs, err := src.inf.GetIndexer().ByIndex(grantsByRunUID, string(run.UID))
		if err != nil {
			continue
		}
		for _, o := range objs {
			m, err := meta.Accessor(o)
			if err != nil || c.expectations.deleting(m.GetUID()) {
				continue
			}
			if src.kind == phase.KindRoleBinding && m.GetNamespace() != run.Namespace {
				continue
			}
			obs.Grants = append(obs.Grants, phase.Grant{Kind: src.kind, Object: m})
		}
	}
}

// clusterGrants returns the cluster-scoped grants the caches hold that were
// made for the run key names (any run of that name), but those this
// controller is deleting.
func (c *Controller) clusterGrants(key cache.ObjectName) []phase.Grant {
	if c.grants == nil {
		return nil
	}
	var found []phase.Grant
	for _, src := range []struct {
		kind phase.Kind
		inf  cache.SharedIndexInformer
	}{{phase.KindClusterRoleBinding, c.grants.ClusterRoleBindings}, {phase.KindClusterRole, c.grants.ClusterRoles}} {
		objs, err := src.inf.GetIndexer().ByIndex(clusterGrantsByRun, key.String())
		if err != nil {
			continue
		}
		for _, o := range objs {
			if m, err := meta.Accessor(o); err == nil && m.GetDeletionTimestamp() == nil && !c.expectations.deleting(m.GetUID()) {
				found = append(found, phase.Grant{Kind: src.kind, Object: m})
			}
		}
	}
	return found
}

// clusterGrantRunUID is the UID of the run a cluster-scoped grant was made for.
func clusterGrantRunUID(g phase.Grant) types.UID {
	_, _, uid, _ := workload.ClusterGrantRun(g.Object)
	return types.UID(uid)
}

// observeOrphanGrants gathers the cluster-scoped grants made for an earlier
// run of run's name, for the decision to revoke. Not for a run being
// deleted: a new run of the same name may hold the name on the API server
// already (the cache lags), and those grants would be its own; they are
// swept once the run has left the cache (sweepClusterGrants).
func (c *Controller) observeOrphanGrants(run *v1alpha1.AgentRun, obs *phase.Observed) {
	if run.DeletionTimestamp != nil {
		return
	}
	for _, g := range c.clusterGrants(cache.MetaObjectToName(run)) {
		if clusterGrantRunUID(g) != run.UID {
			obs.OrphanGrants = append(obs.OrphanGrants, g)
		}
	}
}

// sweepClusterGrants deletes the cluster-scoped grants made for the run
// key names, a run the cache no longer holds. The run cache may lag the
// grant caches: the run is looked up on the API server first, and the
// grants of a live run of that name stay.
func (c *Controller) sweepClusterGrants(ctx context.Context, key cache.ObjectName) error {
	found := c.clusterGrants(key)
	if len(found) == 0 {
		return nil
	}
	var live types.UID
	run, err := c.client.SympoziumV1alpha1().AgentRuns(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("looking up the run of cluster grants: %w", err)
	case run.DeletionTimestamp == nil:
		live = run.UID
	}
	policy := metav1.DeletePropagationBackground
	for _, g := range found {
		if clusterGrantRunUID(g) == live {
			continue
		}
		uid := g.Object.GetUID()
		err := c.kinds[g.Kind].delete(ctx, "", g.Object.GetName(),
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
		switch {
		case err == nil:
			klog.FromContext(ctx).V(2).Info("Deleted the "+string(g.Kind)+" of a gone run", "name", g.Object.GetName())
			c.expectations.deletedChild(uid)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			return fmt.Errorf("deleting %s %s: %w", g.Kind, g.Object.GetName(), err)
		}
	}
	return nil
}

// grantRefusal words the API server's refusal (Forbidden) of one of a run's
// identity objects: the controller may not grant what it asks for.
func grantRefusal(kind phase.Kind, obj metav1.Object, err error) string {
	pack := obj.GetLabels()[v1alpha1.LabelSkillPack]
	what := fmt.Sprintf("%s %s", kind, obj.GetName())
	if pack != "" {
		what += " (SkillPack " + pack + ")"
	}
	return what + ": " + err.Error()
}

func isIdentityKind(k phase.Kind) bool {
	switch k {
	case phase.KindServiceAccount, phase.KindRole, phase.KindRoleBinding, phase.KindClusterRole, phase.KindClusterRoleBinding:
		return true
	}
	return false
}

// newAPIKey is a web proxy API key as sympozium's controller makes them:
// "sk-" and 48 hex digits from crypto/rand.
func newAPIKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "sk-" + hex.EncodeToString(b)
}
