package workload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The SkillPacks sympozium ships (config/skills/*.yaml at 25c0bb2, copied
// once as test data, beside the rest of its objects that hack/e2e tries on
// the API server), and what the original's controller
// (internal/controller/agentrun_controller.go buildContainers, buildVolumes,
// buildJob, reconcilePendingServer) puts in the pod for each, written out by
// hand from that code: the test checks that our pod gives the agent, the
// sidecars and the event bus the same.
const shippedSkills = "../../../hack/e2e/testdata/sympozium-25c0bb2/skills"

func loadShippedSkillPack(t *testing.T, name string) *v1alpha1.SkillPack {
	t.Helper()
	f, err := os.Open(filepath.Join(shippedSkills, name+".yaml"))
	require.NoError(t, err)
	defer f.Close()
	var sp v1alpha1.SkillPack
	require.NoError(t, yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&sp))
	require.Equal(t, name, sp.Name)
	// Every shipped pack with a sidecar sets mountWorkspace explicitly, so
	// the CRD's default (true) that the API server would apply is not
	// needed here.
	return &sp
}

type mountWant struct {
	path     string
	readOnly bool
}

type shippedWant struct {
	noSidecar   bool // no sidecar, or only a server one (absent from task pods)
	image       string
	command     []string
	env         []corev1.EnvVar // in order: the pack's env, then SKILL_<KEY> from params
	mounts      []mountWant     // every mount of the sidecar, by path
	cpu, memory string          // request and limit
	secret      string          // sidecar.secretRef, mounted read-only (optional volume)
	hostPaths   map[string]string
	runAsRoot   bool
	hostPID     bool
	roleRules   int // len(sidecar.rbac): the Role's rules
	cluster     int // len(sidecar.clusterRBAC)
}

var gitEnv = []corev1.EnvVar{
	{Name: "GH_NO_UPDATE_NOTIFIER", Value: "1"},
	{Name: "GIT_AUTHOR_NAME", Value: "Sympozium Agent"},
	{Name: "GIT_AUTHOR_EMAIL", Value: "sympozium@users.noreply.github.com"},
	{Name: "GIT_COMMITTER_NAME", Value: "Sympozium Agent"},
	{Name: "GIT_COMMITTER_EMAIL", Value: "sympozium@users.noreply.github.com"},
}

var skillParams = map[string]string{"repo": "org/app", "rate_limit_rpm": "30"}

// paramEnv is what the original adds for skillParams: SKILL_ + upper-cased
// key (its order is the map's; ours is sorted).
var paramEnv = []corev1.EnvVar{{Name: "SKILL_RATE_LIMIT_RPM", Value: "30"}, {Name: "SKILL_REPO", Value: "org/app"}}

func withParamEnv(env []corev1.EnvVar) []corev1.EnvVar {
	return append(append([]corev1.EnvVar(nil), env...), paramEnv...)
}

var shippedWants = map[string]shippedWant{
	"code-review":       {noSidecar: true},
	"incident-response": {noSidecar: true},
	"memory":            {noSidecar: true},
	"web-endpoint":      {noSidecar: true}, // requiresServer: only in a server (TestShippedWebEndpointServer)
	"github-gitops": {
		image: "ghcr.io/sympozium-ai/sympozium/skill-github-gitops:latest", command: []string{"/usr/local/bin/tool-executor.sh"},
		env:    withParamEnv(gitEnv),
		mounts: []mountWant{{"/ipc", false}, {"/tmp", false}, {"/workspace", false}, {"/secrets/github-token", true}},
		cpu:    "50m", memory: "128Mi", secret: "github-gitops-token",
	},
	"software-dev": {
		image: "ghcr.io/sympozium-ai/sympozium/skill-github-gitops:latest", command: []string{"/usr/local/bin/tool-executor.sh"},
		env:    withParamEnv(gitEnv),
		mounts: []mountWant{{"/ipc", false}, {"/tmp", false}, {"/workspace", false}, {"/secrets/github-token", true}},
		cpu:    "100m", memory: "256Mi", secret: "github-gitops-token",
	},
	"k8s-ops": {
		image: "ghcr.io/sympozium-ai/sympozium/skill-k8s-ops:latest",
		env:   withParamEnv(nil),
		mounts: []mountWant{{"/ipc", false}, {"/tmp", false}, {"/workspace", false},
			{ServiceAccountTokenPath, true}},
		cpu: "100m", memory: "128Mi", roleRules: 7, cluster: 7,
	},
	"sre-observability": {
		image: "ghcr.io/sympozium-ai/sympozium/skill-sre-observability:latest",
		env:   withParamEnv(nil),
		mounts: []mountWant{{"/ipc", false}, {"/tmp", false}, {"/workspace", false},
			{ServiceAccountTokenPath, true}},
		cpu: "100m", memory: "128Mi", roleRules: 4, cluster: 4,
	},
	"llmfit": {
		image: "ghcr.io/sympozium-ai/sympozium/skill-llmfit:latest",
		env: withParamEnv([]corev1.EnvVar{
			{Name: "LLMFIT_PROBE_IMAGE", Value: "ghcr.io/sympozium-ai/sympozium/skill-llmfit:latest"},
			{Name: "LLMFIT_HOST_PROC", Value: "/host/proc"},
			{Name: "LLMFIT_HOST_SYS", Value: "/host/sys"},
			{Name: "LLMFIT_HOST_DEV", Value: "/host/dev"},
			{Name: "LLMFIT_HOST_UDEV", Value: "/host/run/udev"},
		}),
		mounts: []mountWant{{"/ipc", false}, {"/tmp", false}, {"/workspace", false},
			{"/host/proc", true}, {"/host/sys", true}, {"/host/dev", true}, {"/host/run/udev", true},
			{ServiceAccountTokenPath, true}},
		hostPaths: map[string]string{"/host/proc": "/proc", "/host/sys": "/sys", "/host/dev": "/dev", "/host/run/udev": "/run/udev"},
		cpu:       "150m", memory: "256Mi", runAsRoot: true, hostPID: true, roleRules: 1, cluster: 1,
	},
}

// shippedCfg is a controller configured like a sympozium installation: the
// event bus, host access allowed, per-run identities.
var shippedCfg = Config{
	AgentImage: "ghcr.io/sympozium-ai/sympozium/agent-runner:v1", DeadlineSlack: 15 * time.Second,
	EventBusURL: "nats://nats.sympozium-system.svc:4222", IPCBridgeImage: "ghcr.io/sympozium-ai/sympozium/ipc-bridge:v1",
	AllowHostAccess: true, RunIdentity: true,
}

func shippedRun(pack string, mode v1alpha1.AgentRunMode) *v1alpha1.AgentRun {
	run := newRun(withSkills(v1alpha1.SkillRef{SkillPackRef: pack, Params: skillParams}))
	run.Spec.Mode = mode
	run.Annotations = map[string]string{AnnotationReplyChannel: "telegram", AnnotationReplyChatID: "42"}
	run.UID = "uid-1"
	return run
}

func TestShippedSkillPacksMatchOriginal(t *testing.T) {
	entries, err := os.ReadDir(shippedSkills)
	require.NoError(t, err)
	require.Len(t, entries, len(shippedWants), "one expectation per shipped SkillPack")
	for _, e := range entries {
		pack := strings.TrimSuffix(e.Name(), ".yaml")
		want, ok := shippedWants[pack]
		require.True(t, ok, "no expectation for %s", pack)
		t.Run(pack, func(t *testing.T) {
			sp := loadShippedSkillPack(t, pack)
			run := shippedRun(pack, v1alpha1.ModeTask)
			in := Inputs{Run: run, Instance: newInstance(), SkillPacks: map[string]*v1alpha1.SkillPack{pack: sp}, Now: now}
			job, err := Job(shippedCfg, in)
			require.NoError(t, err)
			pod := job.Spec.Template.Spec

			// What the agent depends on, whatever the pack.
			agent := container(pod, v1alpha1.AgentContainerName)
			require.NotNil(t, agent)
			env := envMap(agent.Env)
			assert.Equal(t, "telegram", env[EnvSourceChannel])
			assert.Equal(t, "42", env[EnvSourceChatID])
			d, err := time.ParseDuration(env[EnvRunTimeout]) // the runner's own parse (cmd/agent-runner/main.go)
			require.NoError(t, err, "RUN_TIMEOUT %q", env[EnvRunTimeout])
			assert.Equal(t, 509*time.Second, d)
			assert.Equal(t, "true", env[EnvToolsEnabled])
			assert.Contains(t, mountPaths(agent), SkillsPath)
			skills := volume(pod, SkillsVolume)
			require.NotNil(t, skills)
			assert.Equal(t, pack, skills.Projected.Sources[0].ConfigMap.Name)

			// The event bus: the ipc-bridge with what cmd/ipc-bridge reads.
			bridge := container(pod, IPCBridgeContainerName)
			require.NotNil(t, bridge, "the ipc-bridge publishes agent.run.completed")
			benv := envMap(bridge.Env)
			assert.Equal(t, shippedCfg.EventBusURL, benv[EnvEventBusURL])
			assert.Equal(t, run.Name, benv[EnvAgentRunID])
			assert.Equal(t, run.Spec.InstanceRef, benv[EnvInstanceName])
			assert.Equal(t, []string{IPCPath}, mountPaths(bridge))
			assert.Equal(t, shippedCfg.IPCBridgeImage, bridge.Image)

			sidecarName := naming.SkillContainerName(pack)
			sc := container(pod, sidecarName)
			grants := RunGrants(in)
			if want.noSidecar {
				assert.Nil(t, sc)
				assert.Len(t, pod.Containers, 2, "agent and ipc-bridge")
				assert.Empty(t, pod.ServiceAccountName)
				assert.Nil(t, ServiceAccount(in))
				assert.True(t, grants.Empty())
				return
			}
			require.NotNil(t, sc)
			assert.Equal(t, "skill-"+pack, sc.Name)
			assert.Equal(t, want.image, sc.Image)
			assert.Equal(t, want.command, sc.Command)
			assert.Equal(t, want.env, sc.Env)
			var got []mountWant
			for _, m := range sc.VolumeMounts {
				got = append(got, mountWant{m.MountPath, m.ReadOnly})
			}
			assert.Equal(t, want.mounts, got)
			assert.Equal(t, want.cpu, ptrQ(sc.Resources.Requests.Cpu()), "cpu request")
			assert.Equal(t, want.cpu, ptrQ(sc.Resources.Limits.Cpu()), "cpu limit")
			assert.Equal(t, want.memory, ptrQ(sc.Resources.Requests.Memory()), "memory request")
			assert.Equal(t, want.memory, ptrQ(sc.Resources.Limits.Memory()), "memory limit")
			for _, m := range sc.VolumeMounts {
				v := volume(pod, m.Name)
				require.NotNil(t, v, m.Name)
				switch {
				case m.MountPath == "/secrets/github-token":
					require.NotNil(t, v.Secret)
					assert.Equal(t, want.secret, v.Secret.SecretName)
					assert.True(t, *v.Secret.Optional, "optional, as in the original")
				case want.hostPaths[m.MountPath] != "":
					require.NotNil(t, v.HostPath)
					assert.Equal(t, want.hostPaths[m.MountPath], v.HostPath.Path)
				}
			}
			assert.Equal(t, want.hostPID, pod.HostPID)
			assert.False(t, pod.HostNetwork)
			if want.runAsRoot {
				assert.Equal(t, &corev1.SecurityContext{RunAsUser: new(int64(0)), RunAsNonRoot: new(false)}, sc.SecurityContext)
			} else {
				assert.Equal(t, restrictedContainerSecurityContext(), sc.SecurityContext)
			}

			// Identity: a ServiceAccount of the run's own only when the pack
			// declares RBAC; its token in that sidecar only.
			assert.False(t, *pod.AutomountServiceAccountToken)
			assert.NotContains(t, mountPaths(agent), ServiceAccountTokenPath, "the agent never holds the token")
			assert.NotContains(t, mountPaths(bridge), ServiceAccountTokenPath)
			if want.roleRules+want.cluster == 0 {
				assert.Empty(t, pod.ServiceAccountName)
				assert.True(t, grants.Empty())
				return
			}
			assert.Equal(t, naming.IdentityName(run.Name), pod.ServiceAccountName)
			sa := ServiceAccount(in)
			require.NotNil(t, sa)
			assert.Equal(t, pod.ServiceAccountName, sa.Name)
			require.Len(t, grants.Roles, 1)
			require.Len(t, grants.RoleBindings, 1)
			assert.Len(t, grants.Roles[0].Rules, want.roleRules)
			assert.Equal(t, sp.Spec.Sidecar.RBAC[0].Resources, grants.Roles[0].Rules[0].Resources)
			require.Len(t, grants.ClusterRoles, 1)
			require.Len(t, grants.ClusterRoleBindings, 1)
			assert.Len(t, grants.ClusterRoles[0].Rules, want.cluster)
			subject := rbacv1.Subject{Kind: "ServiceAccount", Name: sa.Name, Namespace: run.Namespace}
			assert.Equal(t, []rbacv1.Subject{subject}, grants.RoleBindings[0].Subjects)
			assert.Equal(t, []rbacv1.Subject{subject}, grants.ClusterRoleBindings[0].Subjects)
		})
	}
}

// TestShippedWebEndpointServer: a server-mode run mounting web-endpoint
// runs the web proxy as the original's reconcilePendingServer does.
func TestShippedWebEndpointServer(t *testing.T) {
	sp := loadShippedSkillPack(t, "web-endpoint")
	run := shippedRun("web-endpoint", v1alpha1.ModeServer)
	in := Inputs{Run: run, Instance: newInstance(), SkillPacks: map[string]*v1alpha1.SkillPack{"web-endpoint": sp}, Now: now}
	dep, err := Deployment(shippedCfg, in)
	require.NoError(t, err)
	pod := dep.Spec.Template.Spec
	require.Len(t, pod.Containers, 1, "the web proxy alone: the agent's task is never re-run")
	c := pod.Containers[0]
	assert.Equal(t, "web-proxy", c.Name)
	assert.Equal(t, "ghcr.io/sympozium-ai/sympozium/web-proxy:latest", c.Image)
	assert.Equal(t, corev1.RestartPolicyAlways, pod.RestartPolicy)
	assert.Equal(t, []corev1.EnvVar{
		{Name: "EVENT_BUS_URL", Value: "nats://nats.sympozium-system.svc:4222"},
		{Name: "INSTANCE_NAME", Value: run.Spec.InstanceRef},
		{Name: "WEB_PROXY_API_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: run.Spec.InstanceRef + "-web-proxy-key"}, Key: "api-key"}}},
		{Name: "RATE_LIMIT_RPM", Value: "30"},
		{Name: "SKILL_RATE_LIMIT_RPM", Value: "30"},
		{Name: "SKILL_REPO", Value: "org/app"},
	}, c.Env)
	assert.Equal(t, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}, c.Ports)
	probe := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}
	assert.Equal(t, &corev1.Probe{ProbeHandler: probe, InitialDelaySeconds: 5, PeriodSeconds: 10}, c.LivenessProbe)
	assert.Equal(t, &corev1.Probe{ProbeHandler: probe, InitialDelaySeconds: 3, PeriodSeconds: 5}, c.ReadinessProbe)
	assert.Equal(t, "100m", ptrQ(c.Resources.Requests.Cpu()))
	assert.Equal(t, "128Mi", ptrQ(c.Resources.Requests.Memory()))
	assert.Equal(t, "500m", ptrQ(c.Resources.Limits.Cpu()))
	assert.Equal(t, "256Mi", ptrQ(c.Resources.Limits.Memory()))
	assert.NotContains(t, mountPaths(&c), WorkspacePath, "mountWorkspace: false")
	assert.Contains(t, mountPaths(&c), ServiceAccountTokenPath, "the web proxy creates runs")
	assert.Equal(t, naming.IdentityName(run.Name), pod.ServiceAccountName)

	svc := Service(in)
	assert.Equal(t, []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}}, svc.Spec.Ports)

	secret := ServerAPIKeySecret(in, "sk-abc")
	require.NotNil(t, secret)
	assert.Equal(t, run.Spec.InstanceRef+"-web-proxy-key", secret.Name)
	assert.Equal(t, map[string]string{"api-key": "sk-abc"}, secret.StringData)
	assert.Equal(t, run.UID, secret.OwnerReferences[0].UID)

	grants := RunGrants(in)
	require.Len(t, grants.Roles, 1)
	assert.Len(t, grants.Roles[0].Rules, 3)
	assert.Empty(t, grants.ClusterRoles)

	t.Run("auth_secret_ref: the user's Secret, none generated", func(t *testing.T) {
		run := run.DeepCopy()
		run.Spec.Skills[0].Params = map[string]string{"auth_secret_ref": "mine"}
		in := in
		in.Run = run
		assert.Nil(t, ServerAPIKeySecret(in, "sk-abc"))
		dep, err := Deployment(shippedCfg, in)
		require.NoError(t, err)
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			if e.Name == EnvWebProxyAPIKey {
				assert.Equal(t, "mine", e.ValueFrom.SecretKeyRef.Name)
			}
		}
	})
	t.Run("a task run never runs the server sidecar", func(t *testing.T) {
		in := in
		in.Run = shippedRun("web-endpoint", v1alpha1.ModeTask)
		job, err := Job(shippedCfg, in)
		require.NoError(t, err)
		assert.Nil(t, container(job.Spec.Template.Spec, "skill-web-endpoint"))
		assert.Nil(t, container(job.Spec.Template.Spec, "web-proxy"))
		assert.True(t, RunGrants(in).Empty())
	})
	t.Run("names are valid", func(t *testing.T) {
		assert.Empty(t, validation.IsDNS1123Subdomain(grants.Roles[0].Name))
		assert.Empty(t, validation.IsDNS1123Subdomain(pod.ServiceAccountName))
	})
}

func TestHostAccessDeniedByDefault(t *testing.T) {
	sp := loadShippedSkillPack(t, "llmfit")
	cfg := shippedCfg
	cfg.AllowHostAccess = false
	in := Inputs{Run: shippedRun("llmfit", v1alpha1.ModeTask), Instance: newInstance(),
		SkillPacks: map[string]*v1alpha1.SkillPack{"llmfit": sp}, Now: now}
	_, err := Job(cfg, in)
	require.Error(t, err)
	assert.True(t, IsHostAccessDenied(err))
	assert.Contains(t, err.Error(), "SkillPack llmfit asks for host access")
	assert.Contains(t, err.Error(), "--allow-host-access")
	for _, build := range map[string]func() error{
		"sandbox": func() error { _, err := Sandbox(cfg, in, SandboxGroup+"/v1beta1"); return err },
		"server": func() error {
			in := in
			in.Run = shippedRun("llmfit", v1alpha1.ModeServer)
			_, err := Deployment(cfg, in)
			return err
		},
	} {
		assert.True(t, IsHostAccessDenied(build()))
	}
}

func TestNoEventBusNoBridge(t *testing.T) {
	cfg := shippedCfg
	cfg.EventBusURL = ""
	job, err := Job(cfg, Inputs{Run: shippedRun("k8s-ops", v1alpha1.ModeTask), Now: now})
	require.NoError(t, err)
	assert.Nil(t, container(job.Spec.Template.Spec, IPCBridgeContainerName))

	cfg = shippedCfg
	cfg.IPCBridgeImage = ""
	_, err = Job(cfg, Inputs{Run: shippedRun("k8s-ops", v1alpha1.ModeTask), Now: now})
	assert.ErrorContains(t, err, "--ipc-bridge-image")
}

func TestWithoutRunIdentityNoServiceAccount(t *testing.T) {
	cfg := shippedCfg
	cfg.RunIdentity = false
	sp := loadShippedSkillPack(t, "k8s-ops")
	job, err := Job(cfg, Inputs{Run: shippedRun("k8s-ops", v1alpha1.ModeTask), SkillPacks: map[string]*v1alpha1.SkillPack{"k8s-ops": sp}, Now: now})
	require.NoError(t, err)
	pod := job.Spec.Template.Spec
	assert.Empty(t, pod.ServiceAccountName)
	assert.Nil(t, volume(pod, ServiceAccountTokenVolume))
	for _, c := range pod.Containers {
		assert.NotContains(t, mountPaths(&c), ServiceAccountTokenPath)
	}
}

func TestObservabilityEnv(t *testing.T) {
	inst := newInstance()
	inst.Spec.Observability = &v1alpha1.ObservabilitySpec{Enabled: true, OTLPEndpoint: "http://otel:4318", OTLPProtocol: "http/protobuf",
		ResourceAttributes: map[string]string{"team": "a"}}
	run := shippedRun("none", v1alpha1.ModeTask)
	job, err := Job(shippedCfg, Inputs{Run: run, Instance: inst, Now: now})
	require.NoError(t, err)
	attrs := "k8s.namespace.name=" + run.Namespace + ",sympozium.agent_run.id=" + run.Name + ",sympozium.instance.name=" + run.Spec.InstanceRef + ",team=a"
	for name, service := range map[string]string{"agent": "sympozium-agent-runner", "ipc-bridge": "sympozium-ipc-bridge"} {
		env := envMap(container(job.Spec.Template.Spec, name).Env)
		assert.Equal(t, "true", env["SYMPOZIUM_OTEL_ENABLED"], name)
		assert.Equal(t, "http://otel:4318", env["OTEL_EXPORTER_OTLP_ENDPOINT"], name)
		assert.Equal(t, "http/protobuf", env["OTEL_EXPORTER_OTLP_PROTOCOL"], name)
		assert.Equal(t, service, env["OTEL_SERVICE_NAME"], name)
		assert.Equal(t, attrs, env["OTEL_RESOURCE_ATTRIBUTES"], name)
	}
	inst.Spec.Observability.ServiceName = "mine"
	job, err = Job(shippedCfg, Inputs{Run: run, Instance: inst, Now: now})
	require.NoError(t, err)
	assert.Equal(t, "mine", envMap(job.Spec.Template.Spec.Containers[0].Env)["OTEL_SERVICE_NAME"])
	inst.Spec.Observability.Enabled = false
	job, err = Job(shippedCfg, Inputs{Run: run, Instance: inst, Now: now})
	require.NoError(t, err)
	assert.NotContains(t, envMap(job.Spec.Template.Spec.Containers[0].Env), "OTEL_EXPORTER_OTLP_ENDPOINT")
}

func TestRunContextEnvCannotBeOverridden(t *testing.T) {
	run := shippedRun("none", v1alpha1.ModeTask)
	run.Spec.Env = map[string]string{EnvSourceChannel: "evil", "OTHER": "x"}
	job, err := Job(shippedCfg, Inputs{Run: run, Now: now})
	require.NoError(t, err)
	var channels []string
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		if e.Name == EnvSourceChannel {
			channels = append(channels, e.Value)
		}
	}
	assert.Equal(t, []string{"telegram"}, channels)
	assert.Equal(t, "x", envMap(job.Spec.Template.Spec.Containers[0].Env)["OTHER"])
}

func TestOTelTraceParentAnnotation(t *testing.T) {
	run := shippedRun("none", v1alpha1.ModeTask)
	run.Annotations[AnnotationOTelTraceParent] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	id, tp := TraceParent(run)
	assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", id)
	assert.True(t, strings.HasPrefix(tp, "00-0af7651916cd43dd8448eb211c80319c-"))
}

func TestClusterGrantOrphaned(t *testing.T) {
	sp := loadShippedSkillPack(t, "k8s-ops")
	run := shippedRun("k8s-ops", v1alpha1.ModeTask)
	crb := RunGrants(Inputs{Run: run, SkillPacks: map[string]*v1alpha1.SkillPack{"k8s-ops": sp}, Now: now}).ClusterRoleBindings[0]
	ns, name, uid, ok := ClusterGrantRun(crb)
	require.True(t, ok)
	assert.Equal(t, []string{run.Namespace, run.Name, string(run.UID)}, []string{ns, name, uid})
	for desc, tc := range map[string]struct {
		run  RunRef
		want bool
	}{
		"running":                  {RunRef{Exists: true, UID: "uid-1"}, false},
		"finished (even if kept)":  {RunRef{Exists: true, UID: "uid-1", Finished: true}, true},
		"deleted":                  {RunRef{}, true},
		"recreated under the name": {RunRef{Exists: true, UID: "uid-2"}, true},
	} {
		assert.Equal(t, tc.want, ClusterGrantOrphaned(crb, tc.run), desc)
	}
	foreign := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cluster-admin", Labels: map[string]string{"sympozium.ai/agent-run-uid": "x"}}}
	assert.False(t, ClusterGrantOrphaned(foreign, RunRef{}), "never someone else's")
	assert.NotEqual(t, naming.ClusterGrantName("a", "b.c", "d"), naming.ClusterGrantName("a.b", "c", "d"))
	assert.NotEqual(t, naming.GrantName("a-b", "c"), naming.GrantName("a", "b-c"))
}

func TestClusterRBACOnlyFromTheSkillsNamespace(t *testing.T) {
	sp := loadShippedSkillPack(t, "k8s-ops") // namespace sympozium-system, as shipped
	in := Inputs{Run: shippedRun("k8s-ops", v1alpha1.ModeTask), SkillPacks: map[string]*v1alpha1.SkillPack{"k8s-ops": sp}, Now: now}
	assert.NoError(t, CheckGrants(in, DefaultSkillsNamespace))
	local := sp.DeepCopy()
	local.Namespace = "team-a"
	in.SkillPacks = map[string]*v1alpha1.SkillPack{"k8s-ops": local}
	err := CheckGrants(in, DefaultSkillsNamespace)
	assert.ErrorContains(t, err, "SkillPack k8s-ops in namespace team-a declares clusterRBAC")
	local.Spec.Sidecar.ClusterRBAC = nil
	assert.NoError(t, CheckGrants(in, DefaultSkillsNamespace), "namespaced rbac from the run's namespace is granted there")
}

func TestResolveAndMirrorSkills(t *testing.T) {
	sys := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "k8s-ops", Namespace: DefaultSkillsNamespace}}
	local := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "k8s-ops", Namespace: "team-a"}}
	get := func(packs ...*v1alpha1.SkillPack) func(ns, name string) *v1alpha1.SkillPack {
		return func(ns, name string) *v1alpha1.SkillPack {
			for _, p := range packs {
				if p.Namespace == ns && p.Name == name {
					return p
				}
			}
			return nil
		}
	}
	sp, mirrored := ResolveSkillPack("k8s-ops", "team-a", DefaultSkillsNamespace, get(sys, local))
	assert.Same(t, local, sp)
	assert.False(t, mirrored)
	sp, mirrored = ResolveSkillPack("k8s-ops", "team-a", DefaultSkillsNamespace, get(sys))
	assert.Same(t, sys, sp)
	assert.True(t, mirrored)
	sp, _ = ResolveSkillPack("nope", "team-a", DefaultSkillsNamespace, get(sys))
	assert.Nil(t, sp)

	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "k8s-ops", Namespace: DefaultSkillsNamespace,
		Labels: map[string]string{v1alpha1.LabelSkillPack: "k8s-ops"}}, Data: map[string]string{"a.md": "# A"}}
	r1, r2 := shippedRun("k8s-ops", v1alpha1.ModeTask), shippedRun("k8s-ops", v1alpha1.ModeTask)
	r2.Name, r2.UID = "run-2", "uid-2"
	m := MirrorConfigMap(src, r1)
	assert.Equal(t, r1.Namespace, m.Namespace)
	assert.Equal(t, src.Data, m.Data)
	assert.Nil(t, UpdateMirror(m, src, r1), "up to date")
	up := UpdateMirror(m, src, r2)
	require.NotNil(t, up)
	assert.Len(t, up.OwnerReferences, 2, "the mirror goes with its last run")
	src2 := src.DeepCopy()
	src2.Data["a.md"] = "# A v2"
	up = UpdateMirror(m, src2, r1)
	require.NotNil(t, up)
	assert.Equal(t, "# A v2", up.Data["a.md"])
	assert.Equal(t, "# A", m.Data["a.md"], "input not mutated")
	users := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "k8s-ops", Namespace: "team-a"}}
	assert.Nil(t, UpdateMirror(users, src, r1), "never overwrite a ConfigMap of the user's")
}

func mountPaths(c *corev1.Container) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		out = append(out, m.MountPath)
	}
	return out
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func ptrQ(q interface{ String() string }) string { return q.String() }
