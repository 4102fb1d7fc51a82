package workload

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Per-run identity. A run whose pod has a sidecar declaring RBAC rules
// (sidecar.rbac, sidecar.clusterRBAC) runs as a ServiceAccount of its own,
// naming.IdentityName(run), owned by the run. For each such SkillPack:
//   - rbac: a Role and a RoleBinding naming.GrantName(run, pack) in the run's
//     namespace, owned by the run;
//   - clusterRBAC: a ClusterRole and a ClusterRoleBinding
//     naming.ClusterGrantName(namespace, run, pack). They are cluster-scoped,
//     so they cannot be owned by the run (the garbage collector ignores a
//     namespaced owner of a cluster-scoped object): they carry the run's
//     namespace, name and UID in labels instead, and the controller deletes
//     them itself (ClusterGrantOrphaned).
//
// The bindings (what actually grants) exist only while the run executes:
// the controller deletes them as soon as the run is finished, whatever the
// outcome and even when the run is kept; the Roles, the ClusterRoles and the
// ServiceAccount grant nothing by themselves and go with the run (the
// ClusterRoles with their binding).
const (
	// ComponentIdentity is the LabelComponent of a run's ServiceAccount
	// and grants.
	ComponentIdentity = "run-identity"
	// LabelAgentRunNamespace and LabelAgentRunUID, on cluster-scoped
	// grants, name the run they were made for.
	LabelAgentRunNamespace = "sympozium.ai/agent-run-namespace"
	LabelAgentRunUID       = "sympozium.ai/agent-run-uid"
	// AnnotationAgentRun, on cluster-scoped grants, is the run's full
	// name (LabelAgentRun may be a shortened form of it).
	AnnotationAgentRun = "sympozium.ai/agent-run"
	// LabelSkillPack (v1alpha1.LabelSkillPack) names the pack of a grant.
)

// PodSidecars are the SkillPack sidecars in the run's pod: the server
// sidecar alone for a server-mode run that has one, else TaskSidecars.
func PodSidecars(in Inputs) []Sidecar {
	if in.Run != nil && in.Run.Spec.Mode == v1alpha1.ModeServer {
		if s, ok := ServerSidecar(in); ok {
			return []Sidecar{s}
		}
	}
	return TaskSidecars(in)
}

// NeedsIdentity reports whether the run gets its own ServiceAccount: a
// sidecar in its pod declares RBAC rules.
func NeedsIdentity(in Inputs) bool {
	return NeedsAPI(PodSidecars(in))
}

func identityLabels(run *v1alpha1.AgentRun) map[string]string {
	l := Labels(run)
	l[v1alpha1.LabelComponent] = ComponentIdentity
	return l
}

// ServiceAccount builds the run's own ServiceAccount, owned by the run;
// nil when the run needs none. It does not automount its token: the pod
// projects it into the sidecars that need the API only.
func ServiceAccount(in Inputs) *corev1.ServiceAccount {
	if !NeedsIdentity(in) {
		return nil
	}
	run := in.Run
	return &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.IdentityName(run.Name),
			Namespace:       run.Namespace,
			Labels:          identityLabels(run),
			OwnerReferences: controllerRef(run),
		},
		AutomountServiceAccountToken: new(false),
	}
}

// Grants are the RBAC objects giving a run's ServiceAccount what its
// SkillPacks declare, sorted by SkillPack.
type Grants struct {
	Roles               []*rbacv1.Role
	RoleBindings        []*rbacv1.RoleBinding
	ClusterRoles        []*rbacv1.ClusterRole
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
}

// Empty reports whether there is nothing to grant.
func (g Grants) Empty() bool {
	return len(g.Roles)+len(g.RoleBindings)+len(g.ClusterRoles)+len(g.ClusterRoleBindings) == 0
}

func policyRules(rules []v1alpha1.PolicyRule) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, 0, len(rules))
	for _, r := range rules {
		out = append(out, rbacv1.PolicyRule{
			APIGroups: slices.Clone(r.APIGroups),
			Resources: slices.Clone(r.Resources),
			Verbs:     slices.Clone(r.Verbs),
		})
	}
	return out
}

// RunGrants builds the run's grants (see the package comment above); empty
// when the run needs no identity.
func RunGrants(in Inputs) Grants {
	var g Grants
	run := in.Run
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: naming.IdentityName(run.Name), Namespace: run.Namespace}}
	for _, s := range PodSidecars(in) {
		labels := identityLabels(run)
		labels[v1alpha1.LabelSkillPack] = naming.LabelValue(s.Pack)
		if len(s.Spec.RBAC) > 0 {
			meta := metav1.ObjectMeta{
				Name: naming.GrantName(run.Name, s.Pack), Namespace: run.Namespace,
				Labels: labels, OwnerReferences: controllerRef(run),
			}
			g.Roles = append(g.Roles, &rbacv1.Role{ObjectMeta: *meta.DeepCopy(), Rules: policyRules(s.Spec.RBAC)})
			g.RoleBindings = append(g.RoleBindings, &rbacv1.RoleBinding{
				ObjectMeta: *meta.DeepCopy(),
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: meta.Name},
				Subjects:   slices.Clone(subject),
			})
		}
		if len(s.Spec.ClusterRBAC) > 0 {
			cl := identityLabels(run)
			cl[v1alpha1.LabelSkillPack] = labels[v1alpha1.LabelSkillPack]
			cl[LabelAgentRunNamespace] = run.Namespace
			cl[LabelAgentRunUID] = string(run.UID)
			meta := metav1.ObjectMeta{Name: naming.ClusterGrantName(run.Namespace, run.Name, s.Pack), Labels: cl,
				Annotations: map[string]string{AnnotationAgentRun: run.Name}}
			g.ClusterRoles = append(g.ClusterRoles, &rbacv1.ClusterRole{ObjectMeta: *meta.DeepCopy(), Rules: policyRules(s.Spec.ClusterRBAC)})
			g.ClusterRoleBindings = append(g.ClusterRoleBindings, &rbacv1.ClusterRoleBinding{
				ObjectMeta: *meta.DeepCopy(),
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: meta.Name},
				Subjects:   slices.Clone(subject),
			})
		}
	}
	return g
}

// ClusterRBACRefusedError says that a SkillPack outside the skills
// namespace declares clusterRBAC. Cluster-wide grants are honoured only
// from SkillPacks in the skills namespace, which only cluster admins
// write: anyone allowed to write a SkillPack in their own namespace would
// otherwise grant their runs cluster-wide rights.
type ClusterRBACRefusedError struct {
	SkillPack, Namespace, SkillsNamespace string
}

func (e *ClusterRBACRefusedError) Error() string {
	return fmt.Sprintf("SkillPack %s in namespace %s declares clusterRBAC, which is honoured only from SkillPacks in %s",
		e.SkillPack, e.Namespace, e.SkillsNamespace)
}

// CheckGrants refuses the run's grants when a SkillPack from outside
// skillsNamespace declares clusterRBAC. The controller calls it before
// creating anything for the run and fails the run with the error.
func CheckGrants(in Inputs, skillsNamespace string) error {
	for _, s := range PodSidecars(in) {
		if len(s.Spec.ClusterRBAC) > 0 && s.Namespace != skillsNamespace {
			return &ClusterRBACRefusedError{SkillPack: s.Pack, Namespace: s.Namespace, SkillsNamespace: skillsNamespace}
		}
	}
	return nil
}

// RunRef is what the controller knows of a run when it checks a
// cluster-scoped grant: whether the run exists, its UID, and whether it is
// finished (Succeeded or Failed).
type RunRef struct {
	Exists   bool
	UID      string
	Finished bool
}

// ClusterGrantRun returns the namespace, name and UID of the run a
// cluster-scoped grant was made for; ok is false for objects that are not
// such grants.
func ClusterGrantRun(obj metav1.Object) (namespace, name, uid string, ok bool) {
	l := obj.GetLabels()
	if l[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByValue || l[v1alpha1.LabelComponent] != ComponentIdentity {
		return "", "", "", false
	}
	namespace, uid, name = l[LabelAgentRunNamespace], l[LabelAgentRunUID], obj.GetAnnotations()[AnnotationAgentRun]
	return namespace, name, uid, namespace != "" && name != "" && uid != ""
}

// ClusterGrantOrphaned reports whether a ClusterRole or ClusterRoleBinding
// made for a run (ClusterGrantRun; run is what the controller's cache says
// of that run) must be deleted: its run is gone, is another run of the
// same name (another UID), or is finished. The controller applies it to
// every such object at start-up and periodically (a controller that crashed
// between a run's end and the deletion, or a run deleted while the
// controller was down, leaves them behind), and whenever a run finishes or
// is deleted. Objects without the labels are not the controller's and are
// never orphaned.
func ClusterGrantOrphaned(obj metav1.Object, run RunRef) bool {
	_, _, uid, ok := ClusterGrantRun(obj)
	if !ok {
		return false
	}
	return !run.Exists || run.UID != uid || run.Finished
}
