package workload

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// A server whose SkillPack declares it (sidecar.requiresServer, as
// sympozium's web-endpoint does) runs that server, as the original does,
// instead of the agent: the web proxy answers HTTP requests by creating
// task runs, so a restart never re-runs a one-shot task.
const (
	// WebProxyContainerName is the container running the server sidecar.
	WebProxyContainerName = "web-proxy"

	// EnvWebProxyAPIKey holds the API key clients present, from the Secret
	// ServerAPIKeySecretName, key ServerAPIKeySecretKey.
	EnvWebProxyAPIKey     = "WEB_PROXY_API_KEY"
	ServerAPIKeySecretKey = "api-key"
	// ServerAPIKeySuffix ends the generated Secret's name:
	// "<instance>-web-proxy-key", the name sympozium's docs and UI use.
	ServerAPIKeySuffix = "-web-proxy-key"
	// ParamAuthSecretRef, a skill param, names a Secret of the user's
	// instead of the generated one.
	ParamAuthSecretRef = "auth_secret_ref"
	// ParamRateLimitRPM and ParamRateLimitBurst, skill params, become
	// RATE_LIMIT_RPM and RATE_LIMIT_BURST.
	ParamRateLimitRPM   = "rate_limit_rpm"
	ParamRateLimitBurst = "rate_limit_burst"

	// ServerHealthPath is probed on the server's first declared port
	// (DefaultServerPort when it declares none).
	ServerHealthPath = "/healthz"

	// ComponentServer labels a generated API-key Secret.
	ComponentServer = "web-proxy"
)

// ServerAPIKeySecretName is the Secret holding the API key of the run's
// server sidecar: the skill param auth_secret_ref when set, else
// "<instance>-web-proxy-key".
func ServerAPIKeySecretName(run *v1alpha1.AgentRun, s Sidecar) string {
	if ref := s.Params[ParamAuthSecretRef]; ref != "" {
		return ref
	}
	return run.Spec.InstanceRef + ServerAPIKeySuffix
}

// ServerAPIKeySecret builds the generated API-key Secret of a server-mode
// run whose server sidecar names no Secret of its own (nil otherwise):
// ServerAPIKeySecretName, key api-key holding apiKey, controlled by the run.
// The caller generates apiKey (the original: "sk-" and 48 random hex
// digits) and creates the Secret only when it does not exist: an existing
// one, from an earlier run of the instance, keeps its key.
func ServerAPIKeySecret(in Inputs, apiKey string) *corev1.Secret {
	s, ok := ServerSidecar(in)
	if !ok || s.Params[ParamAuthSecretRef] != "" {
		return nil
	}
	run := in.Run
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ServerAPIKeySecretName(run, s),
			Namespace: run.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
				v1alpha1.LabelComponent: ComponentServer,
				v1alpha1.LabelInstance:  Labels(run)[v1alpha1.LabelInstance],
			},
			OwnerReferences: controllerRef(run),
		},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{ServerAPIKeySecretKey: apiKey},
	}
}

// serverSidecarPorts are the server sidecar's ports, DefaultServerPort
// named DefaultServerPortName when it declares none.
func serverSidecarPorts(s Sidecar) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, p := range s.Spec.Ports {
		if p.ContainerPort <= 0 {
			continue
		}
		p := *p.DeepCopy()
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		out = []corev1.ContainerPort{{Name: DefaultServerPortName, ContainerPort: DefaultServerPort, Protocol: corev1.ProtocolTCP}}
	}
	return out
}

// serverSidecarTemplate is the pod template of a server-mode run that
// mounts a server sidecar: that sidecar alone, as container web-proxy, with
// its env, EVENT_BUS_URL (Config.EventBusURL, unless its env sets it),
// INSTANCE_NAME, WEB_PROXY_API_KEY from ServerAPIKeySecretName,
// RATE_LIMIT_RPM/RATE_LIMIT_BURST and SKILL_<KEY> from its params, its
// ports, liveness and readiness probes on /healthz, its resources as
// requests (limits 500m and 256Mi, or the request when larger), the
// restricted security context, and the token of the run's ServiceAccount
// when its SkillPack declares RBAC rules (the web proxy creates runs).
func serverSidecarTemplate(cfg Config, in Inputs, s Sidecar) (corev1.PodTemplateSpec, error) {
	if err := checkHostAccess(cfg, []Sidecar{s}); err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	c, err := skillContainer(cfg, s)
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	run := in.Run
	c.Name = WebProxyContainerName
	c.Ports = serverSidecarPorts(s)
	c.Env = nil
	for i := range s.Spec.Env {
		c.Env = append(c.Env, *s.Spec.Env[i].DeepCopy())
	}
	if cfg.EventBusURL != "" && !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == EnvEventBusURL }) {
		c.Env = append(c.Env, corev1.EnvVar{Name: EnvEventBusURL, Value: cfg.EventBusURL})
	}
	c.Env = append(c.Env,
		corev1.EnvVar{Name: EnvInstanceName, Value: run.Spec.InstanceRef},
		corev1.EnvVar{Name: EnvWebProxyAPIKey, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: ServerAPIKeySecretName(run, s)},
			Key:                  ServerAPIKeySecretKey,
		}}},
	)
	if v, ok := s.Params[ParamRateLimitRPM]; ok {
		c.Env = append(c.Env, corev1.EnvVar{Name: "RATE_LIMIT_RPM", Value: v})
	}
	if v, ok := s.Params[ParamRateLimitBurst]; ok {
		c.Env = append(c.Env, corev1.EnvVar{Name: "RATE_LIMIT_BURST", Value: v})
	}
	c.Env = append(c.Env, skillParamEnv(s.Params)...)
	for _, r := range []struct {
		name corev1.ResourceName
		max  string
	}{{corev1.ResourceCPU, "500m"}, {corev1.ResourceMemory, "256Mi"}} {
		limit := resource.MustParse(r.max)
		if req := c.Resources.Requests[r.name]; req.Cmp(limit) > 0 {
			limit = req
		}
		c.Resources.Limits[r.name] = limit
	}
	probe := func(initial, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: ServerHealthPath, Port: intstr.FromInt32(c.Ports[0].ContainerPort),
			}},
			InitialDelaySeconds: initial, PeriodSeconds: period,
		}
	}
	c.LivenessProbe, c.ReadinessProbe = probe(5, 10), probe(3, 5)

	podSpec := corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyAlways,
		AutomountServiceAccountToken: new(false),
		EnableServiceLinks:           new(false),
		SecurityContext:              podSecurityContext(),
		NodeSelector:                 nodeSelector(run, in.Instance),
		Volumes:                      []corev1.Volume{emptyDir(IPCVolume), emptyDir(TmpVolume)},
		Containers:                   []corev1.Container{c},
	}
	if mountsWorkspace(s.Spec) {
		podSpec.Volumes = append(podSpec.Volumes, emptyDir(WorkspaceVolume))
	}
	podSpec.HostNetwork, podSpec.HostPID = podHostAccess([]Sidecar{s})
	if podSpec.HostNetwork {
		podSpec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	podSpec.Volumes = append(podSpec.Volumes, sidecarVolumes([]Sidecar{s})...)
	applyIdentity(cfg, run, []Sidecar{s}, &podSpec)
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: Labels(run)}, Spec: podSpec}, nil
}
