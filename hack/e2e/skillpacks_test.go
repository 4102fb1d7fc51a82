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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// createShippedSkillPack creates, in ns, one of the SkillPacks sympozium
// ships (originalDir/skills, copied from its
// config/skills): the fields this API has, through the typed client.
func (e *env) createShippedSkillPack(t *testing.T, ns, name string) {
	t.Helper()
	f, err := os.Open(filepath.Join(originalDir, "skills", name+".yaml"))
	require.NoError(t, err)
	defer f.Close()
	var sp v1alpha1.SkillPack
	require.NoError(t, yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&sp))
	sp.Namespace, sp.Labels, sp.ResourceVersion = ns, nil, ""
	_, err = e.client.SympoziumV1alpha1().SkillPacks(ns).Create(context.Background(), &sp, metav1.CreateOptions{})
	require.NoError(t, err, "the API server refused SkillPack %s", name)
}

// TestShippedSkillPacksReachThePod: a run mounting sympozium's github-gitops
// and k8s-ops SkillPacks, started from a channel message, with the event bus
// configured, gets the pod the original builds: the ipc-bridge with
// EVENT_BUS_URL, the reply channel, the skill params, the pack's Secret,
// resources and workspace, and a RUN_TIMEOUT the runner can parse; the API
// server admits that pod. llmfit's host access is refused without
// --allow-host-access.
func TestShippedSkillPacksReachThePod(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	// The test namespace plays the skills namespace (k8s-ops declares
	// clusterRBAC), and the admin gives the controller what k8s-ops
	// declares, with the file the project ships for it.
	e.startController(t, ns, "--event-bus-url", "nats://nats.sympozium-system.svc:4222",
		"--ipc-bridge-image", "registry.example/sympozium/ipc-bridge:test", "--skills-namespace", ns)
	e.grantSkillPackToController(t, "k8s-ops", ns)
	e.apply(t, instanceYAML(ns, "inst", "  observability: {enabled: true, otlpEndpoint: \"http://otel.observability:4318\"}\n"))
	for _, pack := range []string{"github-gitops", "k8s-ops", "llmfit"} {
		e.createShippedSkillPack(t, ns, pack)
	}
	run := runYAML(ns, "shipped", "inst", map[string]string{"SIM_MESSAGE": successReport},
		"  cleanup: keep\n  timeout: 3m\n  skills:\n  - {skillPackRef: github-gitops, params: {repo: org/app}}\n  - {skillPackRef: k8s-ops}\n")
	run = replaceOnce(t, run, "metadata: {name: shipped, namespace: "+ns+"}",
		"metadata:\n  name: shipped\n  namespace: "+ns+"\n  annotations: {sympozium.ai/reply-channel: telegram, sympozium.ai/reply-chat-id: \"42\"}")
	e.apply(t, run)
	e.waitPhase(t, ns, "shipped", v1alpha1.PhaseSucceeded, 60*time.Second)

	pod := e.agentPod(t, ns, "shipped")
	containers := map[string]corev1.Container{}
	for _, c := range pod.Spec.Containers {
		containers[c.Name] = c
	}
	require.Contains(t, containers, "agent")
	require.Contains(t, containers, "ipc-bridge")
	require.Contains(t, containers, "skill-github-gitops")
	require.Contains(t, containers, "skill-k8s-ops")

	agent := envMap(containers["agent"])
	assert.Equal(t, "telegram", agent["SOURCE_CHANNEL"])
	assert.Equal(t, "42", agent["SOURCE_CHAT_ID"])
	assert.Equal(t, "http://otel.observability:4318", agent["OTEL_EXPORTER_OTLP_ENDPOINT"])
	left, err := time.ParseDuration(agent["RUN_TIMEOUT"])
	require.NoError(t, err)
	assert.True(t, left > 2*time.Minute && left <= 3*time.Minute, "RUN_TIMEOUT %s", left)

	bridge := envMap(containers["ipc-bridge"])
	assert.Equal(t, "nats://nats.sympozium-system.svc:4222", bridge["EVENT_BUS_URL"])
	assert.Equal(t, "shipped", bridge["AGENT_RUN_ID"])
	assert.Equal(t, "inst", bridge["INSTANCE_NAME"])

	git := containers["skill-github-gitops"]
	assert.Equal(t, "org/app", envMap(git)["SKILL_REPO"])
	assert.Equal(t, "Sympozium Agent", envMap(git)["GIT_AUTHOR_NAME"])
	assert.Equal(t, []string{"/usr/local/bin/tool-executor.sh"}, git.Command)
	assert.Equal(t, "50m", git.Resources.Limits.Cpu().String())
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range git.VolumeMounts {
		mounts[m.MountPath] = m
	}
	require.Contains(t, mounts, "/secrets/github-token")
	require.Contains(t, mounts, "/workspace")
	var secret *corev1.SecretVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.Name == mounts["/secrets/github-token"].Name {
			secret = v.Secret
		}
	}
	require.NotNil(t, secret)
	assert.Equal(t, "github-gitops-token", secret.SecretName)
	assert.False(t, *pod.Spec.AutomountServiceAccountToken, "no token in the pod, only in the sidecar that needs it")
	assert.Equal(t, "sympozium-run-shipped", pod.Spec.ServiceAccountName, "k8s-ops runs kubectl: the run's own identity")
	assert.Equal(t, []string{"skill-k8s-ops"}, tokenHolders(pod))

	e.apply(t, runYAML(ns, "host", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  skills: [{skillPackRef: llmfit}]\n"))
	r := e.waitPhase(t, ns, "host", v1alpha1.PhaseFailed, 30*time.Second)
	assert.Contains(t, r.Status.Error, "--allow-host-access")
	assert.Equal(t, v1alpha1.ReasonHostAccessDenied, failedReason(r))
	assert.Empty(t, r.Status.JobName, "nothing created for a run the controller refuses")
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	require.Contains(t, s, old)
	return strings.Replace(s, old, new, 1)
}

// TestRunIdentityOnTheAPIServer creates, as an admin, what the controller
// will create for a run mounting k8s-ops (workload.ServiceAccount,
// workload.RunGrants, and the Job built with Config.RunIdentity): the API
// server admits them and the pod, the run's ServiceAccount then holds
// exactly the pack's rights, loses them with its bindings, and deleting
// the run takes the namespaced objects but not the cluster-scoped ones,
// which workload.ClusterGrantOrphaned then marks for the controller's sweep.
func TestRunIdentityOnTheAPIServer(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ctx := context.Background()
	ns := e.namespace(t, nil) // no controller: the test plays its part
	e.createShippedSkillPack(t, ns, "k8s-ops")
	sp, err := e.client.SympoziumV1alpha1().SkillPacks(ns).Get(ctx, "k8s-ops", metav1.GetOptions{})
	require.NoError(t, err)
	e.apply(t, runYAML(ns, "ident", "inst", nil, "  skills: [{skillPackRef: k8s-ops}]\n"))
	run, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, "ident", metav1.GetOptions{})
	require.NoError(t, err)
	in := workload.Inputs{Run: run, SkillPacks: map[string]*v1alpha1.SkillPack{"k8s-ops": sp}, Now: time.Now()}
	cfg := workload.Config{AgentImage: "registry.example/sympozium/agent-runner:test", RunIdentity: true}

	sa := workload.ServiceAccount(in)
	require.NotNil(t, sa)
	_, err = e.kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	require.NoError(t, err)
	g := workload.RunGrants(in)
	for _, r := range g.Roles {
		_, err = e.kube.RbacV1().Roles(ns).Create(ctx, r, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for _, b := range g.RoleBindings {
		_, err = e.kube.RbacV1().RoleBindings(ns).Create(ctx, b, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for _, r := range g.ClusterRoles {
		_, err = e.kube.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	for _, b := range g.ClusterRoleBindings {
		_, err = e.kube.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = e.kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), b.Name, metav1.DeleteOptions{})
		})
	}
	t.Cleanup(func() {
		for _, r := range g.ClusterRoles {
			_ = e.kube.RbacV1().ClusterRoles().Delete(context.Background(), r.Name, metav1.DeleteOptions{})
		}
	})
	job, err := workload.Job(cfg, in)
	require.NoError(t, err)
	_, err = e.kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err, "the API server admits the Job")
	pod := e.agentPod(t, ns, "ident")
	assert.Equal(t, sa.Name, pod.Spec.ServiceAccountName, "the pod was admitted with the run's ServiceAccount")
	assert.False(t, *pod.Spec.AutomountServiceAccountToken)

	as := "system:serviceaccount:" + ns + ":" + sa.Name
	can := func(args ...string) string {
		out, _ := e.kubectlErr(append([]string{"auth", "can-i", "--as", as}, args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n") // after kubectl's warnings
		return lines[len(lines)-1]
	}
	assert.Equal(t, "yes", can("delete", "deployments.apps", "-n", ns), "k8s-ops's rbac in the run's namespace")
	assert.Equal(t, "no", can("delete", "deployments.apps", "-n", "default"), "not elsewhere")
	assert.Equal(t, "yes", can("list", "nodes"), "k8s-ops's clusterRBAC")
	assert.Equal(t, "no", can("delete", "nodes"))

	// The run ends: its bindings go, and with them every right.
	for _, b := range g.RoleBindings {
		require.NoError(t, e.kube.RbacV1().RoleBindings(ns).Delete(ctx, b.Name, metav1.DeleteOptions{}))
	}
	for _, b := range g.ClusterRoleBindings {
		require.NoError(t, e.kube.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, metav1.DeleteOptions{}))
	}
	require.Eventually(t, func() bool {
		return can("delete", "deployments.apps", "-n", ns) == "no" && can("list", "nodes") == "no"
	}, 10*time.Second, 200*time.Millisecond)

	// The run is deleted: the garbage collector takes what it owns, never
	// the ClusterRole, which the sweep must delete.
	require.NoError(t, e.client.SympoziumV1alpha1().AgentRuns(ns).Delete(ctx, "ident", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		_, errSA := e.kube.CoreV1().ServiceAccounts(ns).Get(ctx, sa.Name, metav1.GetOptions{})
		_, errRole := e.kube.RbacV1().Roles(ns).Get(ctx, g.Roles[0].Name, metav1.GetOptions{})
		return apierrors.IsNotFound(errSA) && apierrors.IsNotFound(errRole)
	}, 60*time.Second, 200*time.Millisecond, "owned by the run")
	cr, err := e.kube.RbacV1().ClusterRoles().Get(ctx, g.ClusterRoles[0].Name, metav1.GetOptions{})
	require.NoError(t, err, "a cluster-scoped grant outlives its run: only the controller's sweep removes it")
	assert.True(t, workload.ClusterGrantOrphaned(cr, workload.RunRef{}))
}
