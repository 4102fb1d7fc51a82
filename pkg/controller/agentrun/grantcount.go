package agentrun

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
)

// GrantCount is how many per-run grants of one kind the caches hold: Active
// those of live runs, Left those whose run is finished, gone, or another
// run of the same name. The controller revokes and sweeps the latter within
// a sync or two; a Left count that stays up means it cannot (the metric
// sympozium_agentrun_grants and its alert).
type GrantCount struct {
	Kind         phase.Kind
	Active, Left int
}

// CountGrants counts the grants the grant informers hold (nil without
// them). It reads the caches only, at scrape time.
func (c *Controller) CountGrants() []GrantCount {
	if c.grants == nil {
		return nil
	}
	var out []GrantCount
	for _, src := range []struct {
		kind phase.Kind
		inf  cache.SharedIndexInformer
	}{
		{phase.KindRoleBinding, c.grants.RoleBindings},
		{phase.KindClusterRoleBinding, c.grants.ClusterRoleBindings},
		{phase.KindClusterRole, c.grants.ClusterRoles},
	} {
		n := GrantCount{Kind: src.kind}
		for _, obj := range src.inf.GetStore().List() {
			m, err := meta.Accessor(obj)
			if err != nil {
				continue
			}
			ns, name, uid, ok := grantRun(m)
			if !ok {
				continue
			}
			if c.liveRun(ns, name, uid) {
				n.Active++
			} else {
				n.Left++
			}
		}
		out = append(out, n)
	}
	return out
}

// grantRun is the run a grant was made for: from the labels of a
// cluster-scoped grant, from the controller reference of a RoleBinding.
func grantRun(m metav1.Object) (namespace, name, uid string, ok bool) {
	if ns, name, uid, ok := workload.ClusterGrantRun(m); ok {
		return ns, name, uid, true
	}
	uids, _ := grantRunUID(m)
	ref := metav1.GetControllerOf(m)
	if len(uids) == 0 || ref == nil {
		return "", "", "", false
	}
	return m.GetNamespace(), ref.Name, uids[0], true
}

// liveRun reports whether the cache holds the run namespace/name with that
// UID, unfinished.
func (c *Controller) liveRun(namespace, name, uid string) bool {
	got, ok := c.runs.LiveUID(namespace, name)
	return ok && string(got) == uid
}
