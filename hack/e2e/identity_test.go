package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// grantSkillPackToController does what the README asks of an admin for a
// SkillPack that declares rules: apply its manifests/skills grants, which the
// controller's sympozium-controller-skill-grants aggregates. It waits until
// the controller holds them in namespace ns. The ClusterRole is shared by
// the tests and left in place (applying it again changes nothing).
func (e *env) grantSkillPackToController(t *testing.T, pack, ns string) {
	t.Helper()
	path := filepath.Join(e.root, "manifests", "skills", pack+"-grants.yaml")
	e.kubectl(t, "apply", "-f", path)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var cr rbacv1.ClusterRole
	require.NoError(t, yaml.Unmarshal(b, &cr))
	r := cr.Rules[0]
	res := r.Resources[0]
	if r.APIGroups[0] != "" {
		res += "." + r.APIGroups[0]
	}
	require.Eventually(t, func() bool {
		return e.canI(controllerUser, r.Verbs[0], res, "-n", ns) == "yes"
	}, 30*time.Second, 200*time.Millisecond, "the aggregated skill grants reach the controller")
}

// canI asks the API server whether user may do verb on resource.
func (e *env) canI(user, verb, resource string, args ...string) string {
	out, _ := e.kubectlErr(append([]string{"auth", "can-i", "--as", user, verb, resource}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n") // after kubectl's warnings
	return lines[len(lines)-1]
}

// tokenHolders lists the containers that mount the run's ServiceAccount
// token.
func tokenHolders(pod *corev1.Pod) []string {
	var out []string
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.Name == workload.ServiceAccountTokenVolume {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

// runGrants lists what exists of the run's grants: its RoleBindings and its
// cluster-scoped ClusterRoles and ClusterRoleBindings (by the labels that
// name the run's namespace and UID).
func (e *env) runGrants(t *testing.T, ns string, uid string) (bindings, clusterRoles, clusterBindings []string) {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: workload.LabelAgentRunNamespace + "=" + ns + "," + workload.LabelAgentRunUID + "=" + uid}
	rbs, err := e.kube.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	for _, b := range rbs.Items {
		for _, o := range b.OwnerReferences {
			if string(o.UID) == uid {
				bindings = append(bindings, b.Name)
			}
		}
	}
	crs, err := e.kube.RbacV1().ClusterRoles().List(ctx, sel)
	require.NoError(t, err)
	for _, r := range crs.Items {
		clusterRoles = append(clusterRoles, r.Name)
	}
	crbs, err := e.kube.RbacV1().ClusterRoleBindings().List(ctx, sel)
	require.NoError(t, err)
	for _, b := range crbs.Items {
		clusterBindings = append(clusterBindings, b.Name)
	}
	return bindings, clusterRoles, clusterBindings
}

// waitGrantsGone waits until none of the run's grants exists.
func (e *env) waitGrantsGone(t *testing.T, ns, uid string, timeout time.Duration, why string) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, cr, crb := e.runGrants(t, ns, uid)
		return len(b)+len(cr)+len(crb) == 0
	}, timeout, 200*time.Millisecond, why)
}

// kubePack is a SkillPack whose sidecar runs kubectl with rights the
// controller holds itself (so no admin grant is needed): list ConfigMaps in
// the run's namespace, watch them cluster-wide.
func kubePack(ns, name string, rbac string) string {
	return `apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  skills: [{name: ` + name + `, content: "# kubectl"}]
  sidecar:
    image: registry.example/kubectl:test
    mountWorkspace: false
` + rbac
}

const kubeRules = `    rbac: [{apiGroups: [""], resources: [configmaps], verbs: [list]}]
    clusterRBAC: [{apiGroups: [""], resources: [configmaps], verbs: [watch]}]
`

// TestRunIdentity: on the real control plane, a run whose SkillPack declares
// rules runs as its own ServiceAccount with exactly those rights, the token
// only in its sidecar; its grants (RoleBinding, ClusterRoleBinding,
// ClusterRole) are gone as soon as it is finished, even with cleanup: keep;
// a run deleted mid-flight loses its cluster grants; a grant the API server
// refuses fails the run (GrantRefused), and so does clusterRBAC from outside
// the skills namespace.
func TestRunIdentity(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ctx := context.Background()
	ns := e.namespace(t, nil)
	expectGrantRefusals(ns) // the greedy run's Role, below
	e.startController(t, ns, "--skills-namespace", ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, kubePack(ns, "kube", kubeRules))
	e.apply(t, kubePack(ns, "greedy", `    rbac: [{apiGroups: [""], resources: [secrets], verbs: [deletecollection]}]
`))

	// A run that finishes, kept.
	e.apply(t, runYAML(ns, "kept", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "4s"},
		"  cleanup: keep\n  skills: [{skillPackRef: kube}]\n"))
	r := e.waitPhase(t, ns, "kept", v1alpha1.PhaseRunning, 60*time.Second)
	uid := string(r.UID)
	sa := naming.IdentityName("kept")
	as := "system:serviceaccount:" + ns + ":" + sa
	b, cr, crb := e.runGrants(t, ns, uid)
	assert.Len(t, b, 1)
	assert.Len(t, cr, 1)
	assert.Len(t, crb, 1)
	assert.Equal(t, "yes", e.canI(as, "list", "configmaps", "-n", ns), "the pack's rbac, in the run's namespace")
	assert.Equal(t, "no", e.canI(as, "list", "configmaps", "-n", "default"), "not elsewhere")
	assert.Equal(t, "yes", e.canI(as, "watch", "configmaps", "-n", "default"), "the pack's clusterRBAC")
	assert.Equal(t, "no", e.canI(as, "get", "configmaps", "-n", ns), "nothing more")
	pod := e.agentPod(t, ns, "kept")
	assert.Equal(t, sa, pod.Spec.ServiceAccountName)
	assert.False(t, *pod.Spec.AutomountServiceAccountToken)
	assert.Equal(t, []string{"skill-kube"}, tokenHolders(pod), "the token only where the API is needed")

	e.waitPhase(t, ns, "kept", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitGrantsGone(t, ns, uid, 30*time.Second, "a finished run's grants are revoked, even with cleanup: keep")
	assert.Equal(t, "no", e.canI(as, "watch", "configmaps", "-n", "default"))
	_, err := e.kube.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{})
	assert.NoError(t, err, "the ServiceAccount (granting nothing now) goes with the run")
	_, err = e.kube.BatchV1().Jobs(ns).Get(ctx, "kept", metav1.GetOptions{})
	assert.NoError(t, err, "the kept Job stays")

	// A run deleted mid-flight: the informer's delete handler sweeps its
	// cluster grants (the garbage collector cannot).
	e.apply(t, runYAML(ns, "deleted", "inst", map[string]string{"SIM_DURATION": "1h"}, "  skills: [{skillPackRef: kube}]\n"))
	r = e.waitPhase(t, ns, "deleted", v1alpha1.PhaseRunning, 60*time.Second)
	_, cr, crb = e.runGrants(t, ns, string(r.UID))
	require.Len(t, cr, 1)
	require.Len(t, crb, 1)
	e.kubectl(t, "delete", "agentrun", "-n", ns, "deleted", "--wait=false")
	e.waitGrantsGone(t, ns, string(r.UID), 60*time.Second, "a deleted run's cluster grants are swept")

	// A grant the controller does not hold (neither itself nor through the
	// skill grants other tests aggregate): refused by the API server, the
	// run fails once, with a reason.
	e.apply(t, runYAML(ns, "greedy", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  skills: [{skillPackRef: greedy}]\n"))
	r = e.waitPhase(t, ns, "greedy", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonGrantRefused, failedReason(r))
	assert.Contains(t, r.Status.Error, "SkillPack greedy")
	assert.Empty(t, r.Status.JobName, "no workload for a run whose grants were refused")
	e.waitGrantsGone(t, ns, string(r.UID), 30*time.Second, "nothing left of a refused run's grants")
	// Not retried: checked after a barrier, not a sleep (the controller
	// has carried a later run through its life since).
	e.barrierRun(t, ns, "inst")
	again := e.getRun(t, ns, "greedy")
	assert.True(t, equality.Semantic.DeepEqual(r.Status, again.Status), "a refused run is not retried")
}

// TestRunIdentityOutsideTheSkillsNamespace: clusterRBAC is honoured only
// from SkillPacks of --skills-namespace.
func TestRunIdentityOutsideTheSkillsNamespace(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns) // skills namespace: sympozium-system
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, kubePack(ns, "kube", kubeRules))
	e.apply(t, runYAML(ns, "cluster", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  skills: [{skillPackRef: kube}]\n"))
	r := e.waitPhase(t, ns, "cluster", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Equal(t, v1alpha1.ReasonGrantRefused, failedReason(r))
	assert.Contains(t, r.Status.Error, "clusterRBAC")
	_, err := e.kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), naming.IdentityName("cluster"), metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "nothing created")
}

// TestRunIdentityControllerDown: the controller is killed while runs with
// cluster grants execute; one run is deleted while it is down. Started
// again, its first sweep removes the deleted run's cluster grants, and the
// other run, finishing, loses its own.
func TestRunIdentityControllerDown(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctl := e.startController(t, ns, "--skills-namespace", ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, kubePack(ns, "kube", kubeRules))
	e.apply(t, runYAML(ns, "orphan", "inst", map[string]string{"SIM_DURATION": "1h"}, "  skills: [{skillPackRef: kube}]\n"))
	e.apply(t, runYAML(ns, "survivor", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "10s"},
		"  skills: [{skillPackRef: kube}]\n"))
	orphan := e.waitPhase(t, ns, "orphan", v1alpha1.PhaseRunning, 60*time.Second)
	survivor := e.waitPhase(t, ns, "survivor", v1alpha1.PhaseRunning, 60*time.Second)
	ctl.kill()

	e.kubectl(t, "delete", "agentrun", "-n", ns, "orphan", "--wait=true")
	_, cr, crb := e.runGrants(t, ns, string(orphan.UID))
	require.NotEmpty(t, append(cr, crb...), "with the controller down, nothing removes the cluster grants")

	e.startController(t, ns, "--skills-namespace", ns)
	e.waitGrantsGone(t, ns, string(orphan.UID), 30*time.Second, "the restarted controller sweeps the deleted run's cluster grants")
	e.waitPhase(t, ns, "survivor", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitGrantsGone(t, ns, string(survivor.UID), 30*time.Second, "the survivor's grants end with it")
}

// TestServerWebEndpoint: a server mounting sympozium's web-endpoint starts
// without manual steps: the controller generates the web proxy's API-key
// Secret (and keeps it for the next server of the instance), and the
// proxy, which creates AgentRuns, runs as the run's own identity with the
// pack's rules, which end with the server.
func TestServerWebEndpoint(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ctx := context.Background()
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.grantSkillPackToController(t, "web-endpoint", ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.createShippedSkillPack(t, ns, "web-endpoint")
	e.apply(t, runYAML(ns, "web", "inst", map[string]string{"SIM_DURATION": "1h"},
		"  mode: server\n  timeout: 2m\n  skills: [{skillPackRef: web-endpoint}]\n"))
	e.kubectl(t, "wait", "-n", ns, "--for=condition=Serving", "--timeout=60s", "agentrun/web")
	r := e.getRun(t, ns, "web")

	secret, err := e.kube.CoreV1().Secrets(ns).Get(ctx, "inst-web-proxy-key", metav1.GetOptions{})
	require.NoError(t, err, "the API-key Secret is generated")
	key := string(secret.Data["api-key"])
	assert.Regexp(t, `^sk-[0-9a-f]{48}$`, key)
	assert.Equal(t, r.UID, metav1.GetControllerOf(secret).UID)
	dep := e.deployment(t, ns, "web-server")
	spec := dep.Spec.Template.Spec
	require.Len(t, spec.Containers, 1)
	assert.Equal(t, "web-proxy", spec.Containers[0].Name)
	var ref *corev1.SecretKeySelector
	for _, v := range spec.Containers[0].Env {
		if v.Name == workload.EnvWebProxyAPIKey && v.ValueFrom != nil {
			ref = v.ValueFrom.SecretKeyRef
		}
	}
	require.NotNil(t, ref)
	assert.Equal(t, "inst-web-proxy-key", ref.Name)
	sa := naming.IdentityName("web")
	assert.Equal(t, sa, spec.ServiceAccountName)
	assert.Equal(t, []string{"web-proxy"}, tokenHolders(&corev1.Pod{Spec: spec}))
	as := "system:serviceaccount:" + ns + ":" + sa
	assert.Equal(t, "yes", e.canI(as, "create", "agentruns.sympozium.ai", "-n", ns), "web-endpoint's rbac")

	// Deleted: the server stops and its grants end with it.
	e.kubectl(t, "delete", "agentrun", "web", "-n", ns, "--wait=true", "--timeout=60s")
	e.waitGrantsGone(t, ns, string(r.UID), 30*time.Second, "a stopped server's grants end")

	// An existing key is never overwritten.
	require.Eventually(t, func() bool {
		_, err := e.kube.CoreV1().Secrets(ns).Get(ctx, "inst-web-proxy-key", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 60*time.Second, 200*time.Millisecond, "the generated Secret goes with its run")
	e.kubectl(t, "create", "secret", "generic", "inst-web-proxy-key", "-n", ns, "--from-literal=api-key=sk-mine")
	e.apply(t, runYAML(ns, "web2", "inst", map[string]string{"SIM_DURATION": "1h"},
		"  mode: server\n  timeout: 2m\n  skills: [{skillPackRef: web-endpoint}]\n"))
	e.kubectl(t, "wait", "-n", ns, "--for=condition=Serving", "--timeout=60s", "agentrun/web2")
	secret, err = e.kube.CoreV1().Secrets(ns).Get(ctx, "inst-web-proxy-key", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "sk-mine", string(secret.Data["api-key"]))
}

// TestSkillsFromTheSkillsNamespace: a run in a user namespace naming a
// SkillPack that exists only in --skills-namespace runs with its skills:
// the pack's ConfigMap is mirrored into the run's namespace (owned by the
// run, gone with it), and its clusterRBAC, honoured from there, is granted.
func TestSkillsFromTheSkillsNamespace(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ctx := context.Background()
	ns := e.namespace(t, nil)
	skills := e.namespace(t, map[string]string{"purpose": "skills"})
	e.startController(t, ns, "--skills-namespace", skills)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, kubePack(skills, "kube", kubeRules))
	e.apply(t, runYAML(ns, "borrow", "inst", map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "2s"},
		"  cleanup: keep\n  skills: [{skillPackRef: kube}]\n"))
	r := e.waitPhase(t, ns, "borrow", v1alpha1.PhaseSucceeded, 60*time.Second)

	cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, "kube", metav1.GetOptions{})
	require.NoError(t, err, "the pack's ConfigMap is mirrored into the run's namespace")
	assert.Equal(t, "# kubectl", cm.Data["kube.md"])
	assert.Equal(t, skills+"/kube", cm.Annotations[workload.AnnotationMirrorSource])
	require.Len(t, cm.OwnerReferences, 1)
	assert.Equal(t, r.UID, cm.OwnerReferences[0].UID)
	pod := e.agentPod(t, ns, "borrow")
	assert.Equal(t, []string{"skill-kube"}, tokenHolders(pod), "its sidecar runs, with its identity")
	e.waitGrantsGone(t, ns, string(r.UID), 30*time.Second, "the grants end with the run")

	e.kubectl(t, "delete", "agentrun", "borrow", "-n", ns)
	require.Eventually(t, func() bool {
		_, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, "kube", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 60*time.Second, 200*time.Millisecond, "the mirror goes with its last run")
}
