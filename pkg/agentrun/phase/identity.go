package phase

import (
	"errors"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The per-run identity (docs/run-identity.md): a run whose pod has a
// SkillPack sidecar declaring RBAC rules runs as a ServiceAccount of its
// own, with a Role and RoleBinding per pack with rbac and a ClusterRole and
// ClusterRoleBinding per pack with clusterRBAC (workload.ServiceAccount,
// workload.RunGrants). They are actions of the admission, asked for before
// the workload (a pod naming a missing ServiceAccount is refused), and the
// grants (the bindings and the ClusterRoles) are deleted as soon as the run
// is finished, whatever its outcome and its spec.cleanup.
const (
	KindServiceAccount     Kind = "ServiceAccount"
	KindRole               Kind = "Role"
	KindRoleBinding        Kind = "RoleBinding"
	KindClusterRole        Kind = "ClusterRole"
	KindClusterRoleBinding Kind = "ClusterRoleBinding"
	// KindSecret is the generated API-key Secret of a server (server.go).
	KindSecret Kind = "Secret"
)

// Grant is one of a run's grants as cached: a RoleBinding, a
// ClusterRoleBinding or a ClusterRole made for it (for its UID).
type Grant struct {
	Kind   Kind
	Object metav1.Object
}

// revokeOrder is the order grants are deleted in: what grants first.
var revokeOrder = map[Kind]int{KindRoleBinding: 0, KindClusterRoleBinding: 1, KindClusterRole: 2}

// grantIdentity asks for the run's ServiceAccount and grants, before its
// workload; a refused grant (workload.CheckGrants) is returned.
func (m *machine) grantIdentity() error {
	in := m.inputs()
	sa := workload.ServiceAccount(in)
	if sa == nil {
		return nil
	}
	if err := workload.CheckGrants(in, m.in.Config.SkillsNamespace); err != nil {
		return err
	}
	m.act(Create, KindServiceAccount, sa)
	g := workload.RunGrants(in)
	for _, r := range g.Roles {
		m.act(Create, KindRole, r)
	}
	for _, r := range g.ClusterRoles {
		m.act(Create, KindClusterRole, r)
	}
	for _, b := range g.RoleBindings {
		m.act(Create, KindRoleBinding, b)
	}
	for _, b := range g.ClusterRoleBindings {
		m.act(Create, KindClusterRoleBinding, b)
	}
	return nil
}

// revokeGrants asks to delete the run's grants the caches hold.
func (m *machine) revokeGrants() { m.revoke(m.in.Grants) }

// revoke asks to delete grants (those not being deleted already), bindings
// first.
func (m *machine) revoke(grants []Grant) {
	grants = slices.Clone(grants)
	slices.SortStableFunc(grants, func(a, b Grant) int { return revokeOrder[a.Kind] - revokeOrder[b.Kind] })
	for _, g := range grants {
		o := g.Object
		if o.GetDeletionTimestamp() != nil {
			continue
		}
		m.act(Delete, g.Kind, &metav1.ObjectMeta{Namespace: o.GetNamespace(), Name: o.GetName(), UID: o.GetUID()})
	}
}

// revokeStale asks to delete the grants the caches hold that the run's pod
// no longer needs: a server whose SkillPacks changed keeps only the grants
// of the packs it mounts now.
func (m *machine) revokeStale() {
	g := workload.RunGrants(m.inputs())
	want := map[string]bool{}
	for _, b := range g.RoleBindings {
		want[string(KindRoleBinding)+"/"+b.Name] = true
	}
	for _, b := range g.ClusterRoleBindings {
		want[string(KindClusterRoleBinding)+"/"+b.Name] = true
	}
	for _, r := range g.ClusterRoles {
		want[string(KindClusterRole)+"/"+r.Name] = true
	}
	var stale []Grant
	for _, gr := range m.in.Grants {
		if !want[string(gr.Kind)+"/"+gr.Object.GetName()] {
			stale = append(stale, gr)
		}
	}
	m.revoke(stale)
}

// failureReason is the reason a run whose workload or grants cannot be
// built fails with: the builders' typed errors have their own.
func failureReason(err error) string {
	var host *workload.HostAccessDeniedError
	var cluster *workload.ClusterRBACRefusedError
	switch {
	case errors.As(err, &host):
		return v1alpha1.ReasonHostAccessDenied
	case errors.As(err, &cluster):
		return v1alpha1.ReasonGrantRefused
	}
	return v1alpha1.ReasonInvalidSpec
}

func grantRefusedMessage(refusal string) string {
	return fmt.Sprintf("the API server refused the run's grants (the controller may grant only what it holds: see the README's RBAC section): %s", refusal)
}
