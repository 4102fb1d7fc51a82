package workload

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// What a SkillPack's sidecar gets, as the original sympozium controller
// (25c0bb2) gives it.
const (
	// SkillEnvPrefix starts the variables a sidecar gets from its skill
	// reference's params: SKILL_<KEY> with KEY upper-cased.
	SkillEnvPrefix = "SKILL_"

	// SecretMountRoot is where sidecar.secretRef is mounted when
	// secretMountPath is empty: /secrets/<secretRef>.
	SecretMountRoot = "/secrets/"

	// DefaultSidecarCPU and DefaultSidecarMemory are a sidecar's request
	// and limit when its resources leave them empty.
	DefaultSidecarCPU    = "100m"
	DefaultSidecarMemory = "128Mi"

	// ServiceAccountTokenVolume holds the run's ServiceAccount token, CA
	// and namespace, mounted only in the sidecars whose SkillPack declares
	// RBAC rules, at ServiceAccountTokenPath (where client-go's in-cluster
	// configuration reads them).
	ServiceAccountTokenVolume = "sympozium-api-access"
	ServiceAccountTokenPath   = "/var/run/secrets/kubernetes.io/serviceaccount"

	// ServiceAccountTokenSeconds is the lifetime of that token; the kubelet
	// renews it at 80% of it, and it dies with the pod.
	ServiceAccountTokenSeconds int64 = 3600
)

// HostAccessDeniedError says that a mounted SkillPack asks for host access
// (sidecar.hostAccess.enabled) and the controller does not allow it
// (Config.AllowHostAccess, --allow-host-access). Retrying does not help:
// the run fails with the message.
type HostAccessDeniedError struct {
	// SkillPacks asking for host access, sorted.
	SkillPacks []string
}

func (e *HostAccessDeniedError) Error() string {
	return fmt.Sprintf("SkillPack %s asks for host access (sidecar.hostAccess), which this controller does not allow (start it with --allow-host-access)",
		strings.Join(e.SkillPacks, ", "))
}

// IsHostAccessDenied reports whether err is (or wraps) a HostAccessDeniedError.
func IsHostAccessDenied(err error) bool {
	var d *HostAccessDeniedError
	return errors.As(err, &d)
}

// Sidecar is a mounted SkillPack's sidecar with the params of its skill
// reference.
type Sidecar struct {
	// Pack is the SkillPack's name, Namespace where it was found (the
	// run's namespace or the skills namespace).
	Pack      string
	Namespace string
	// Spec is the SkillPack's spec.sidecar; read-only.
	Spec *v1alpha1.SkillSidecar
	// Params are the skill reference's params: the instance's, overlaid
	// with the run's.
	Params map[string]string
}

// NeedsAPI reports whether the sidecar talks to the Kubernetes API: its
// SkillPack declares RBAC rules (namespaced or cluster-wide).
func (s Sidecar) NeedsAPI() bool {
	return len(s.Spec.RBAC) > 0 || len(s.Spec.ClusterRBAC) > 0
}

// HostAccess reports whether the sidecar asks for host access.
func (s Sidecar) HostAccess() bool {
	return s.Spec.HostAccess != nil && s.Spec.HostAccess.Enabled
}

// Sidecars returns the sidecars of the mounted SkillPacks present in
// in.SkillPacks, sorted by SkillPack name, with their params.
func Sidecars(in Inputs) []Sidecar {
	params := map[string]map[string]string{}
	for _, ref := range skillRefs(in) { // the instance's, then the run's: the run wins
		if ref.SkillPackRef == "" {
			continue
		}
		if params[ref.SkillPackRef] == nil {
			params[ref.SkillPackRef] = map[string]string{}
		}
		maps.Copy(params[ref.SkillPackRef], ref.Params)
	}
	var out []Sidecar
	for _, name := range SkillPackNames(in) {
		pack := in.SkillPacks[name]
		if pack == nil || pack.Spec.Sidecar == nil {
			continue
		}
		p := params[name]
		if len(p) == 0 {
			p = nil
		}
		out = append(out, Sidecar{Pack: name, Namespace: pack.Namespace, Spec: pack.Spec.Sidecar, Params: p})
	}
	return out
}

// TaskSidecars are the sidecars of an agent pod: every mounted SkillPack's
// sidecar except those that only make sense in a server
// (sidecar.requiresServer), as the original does.
func TaskSidecars(in Inputs) []Sidecar {
	var out []Sidecar
	for _, s := range Sidecars(in) {
		if !s.Spec.RequiresServer {
			out = append(out, s)
		}
	}
	return out
}

// ServerSidecar returns the first mounted SkillPack sidecar (by name) that
// requires a server, such as web-endpoint's web proxy; ok is false when
// there is none.
func ServerSidecar(in Inputs) (s Sidecar, ok bool) {
	for _, s := range Sidecars(in) {
		if s.Spec.RequiresServer {
			return s, true
		}
	}
	return Sidecar{}, false
}

// NeedsAPI reports whether any of the sidecars talks to the API server.
func NeedsAPI(sidecars []Sidecar) bool {
	return slices.ContainsFunc(sidecars, Sidecar.NeedsAPI)
}

// checkHostAccess returns a HostAccessDeniedError when a sidecar asks for
// host access and cfg does not allow it.
func checkHostAccess(cfg Config, sidecars []Sidecar) error {
	if cfg.AllowHostAccess {
		return nil
	}
	var packs []string
	for _, s := range sidecars {
		if s.HostAccess() {
			packs = append(packs, s.Pack)
		}
	}
	if len(packs) > 0 {
		return &HostAccessDeniedError{SkillPacks: packs}
	}
	return nil
}

// skillParamEnv is SKILL_<KEY>=value for each param, sorted by name.
func skillParamEnv(params map[string]string) []corev1.EnvVar {
	keys := slices.Sorted(maps.Keys(params))
	out := make([]corev1.EnvVar, 0, len(keys))
	for _, k := range keys {
		out = append(out, corev1.EnvVar{Name: SkillEnvPrefix + strings.ToUpper(k), Value: params[k]})
	}
	return out
}

// sidecarResources is the sidecar's resources: its requests and limits,
// sympozium's cpu/memory shorthand as both request and limit, and
// DefaultSidecarCPU and DefaultSidecarMemory as both for a resource that
// neither names.
func sidecarResources(pack string, r *v1alpha1.SidecarResources) (corev1.ResourceRequirements, error) {
	if r != nil {
		for field, v := range map[string]string{"cpu": r.CPU, "memory": r.Memory} {
			if _, err := resource.ParseQuantity(v); v != "" && err != nil {
				return corev1.ResourceRequirements{}, fmt.Errorf("SkillPack %s: sidecar.resources.%s %q is not a quantity", pack, field, v)
			}
		}
	}
	out := r.Requirements()
	for name, def := range map[corev1.ResourceName]string{corev1.ResourceCPU: DefaultSidecarCPU, corev1.ResourceMemory: DefaultSidecarMemory} {
		_, req := out.Requests[name]
		_, lim := out.Limits[name]
		if req || lim {
			continue
		}
		q := resource.MustParse(def)
		if out.Requests == nil {
			out.Requests = corev1.ResourceList{}
		}
		if out.Limits == nil {
			out.Limits = corev1.ResourceList{}
		}
		out.Requests[name], out.Limits[name] = q, q.DeepCopy()
	}
	return out, nil
}

// secretMountPath is where the sidecar's secretRef is mounted.
func secretMountPath(sc *v1alpha1.SkillSidecar) string {
	if sc.SecretMountPath != "" {
		return sc.SecretMountPath
	}
	return SecretMountRoot + sc.SecretRef
}

// skillContainer is a SkillPack's sidecar container: its image, command
// (the image's entrypoint when empty), env then SKILL_<KEY> from the params,
// /ipc and /tmp (and /workspace with mountWorkspace), its Secret at
// secretMountPath, its host mounts, its resources, and the token of the
// run's ServiceAccount when it declares RBAC rules and the run has its
// own identity (Config.RunIdentity).
func skillContainer(cfg Config, s Sidecar) (corev1.Container, error) {
	sc := s.Spec
	if sc.Image == "" {
		return corev1.Container{}, fmt.Errorf("SkillPack %s has a sidecar without an image", s.Pack)
	}
	res, err := sidecarResources(s.Pack, sc.Resources)
	if err != nil {
		return corev1.Container{}, err
	}
	c := corev1.Container{
		Name:    naming.SkillContainerName(s.Pack),
		Image:   sc.Image,
		Command: slices.Clone(sc.Command),
		VolumeMounts: []corev1.VolumeMount{
			{Name: IPCVolume, MountPath: IPCPath},
			{Name: TmpVolume, MountPath: TmpPath},
		},
		Resources:                res,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          restrictedContainerSecurityContext(),
	}
	if mountsWorkspace(sc) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: WorkspaceVolume, MountPath: WorkspacePath})
	}
	if ha := sc.HostAccess; ha != nil && ha.Enabled {
		for i, m := range ha.Mounts {
			if m.HostPath == "" || m.MountPath == "" {
				continue
			}
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
				Name: naming.HostPathVolumeName(s.Pack, i), MountPath: m.MountPath, ReadOnly: m.ReadOnly == nil || *m.ReadOnly,
			})
		}
		c.SecurityContext = hostAccessSecurityContext(ha)
	}
	if sc.SecretRef != "" {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
			Name: naming.SkillSecretVolumeName(s.Pack), MountPath: secretMountPath(sc), ReadOnly: true,
		})
	}
	if cfg.RunIdentity && s.NeedsAPI() {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
			Name: ServiceAccountTokenVolume, MountPath: ServiceAccountTokenPath, ReadOnly: true,
		})
	}
	for i := range sc.Env {
		c.Env = append(c.Env, *sc.Env[i].DeepCopy())
	}
	c.Env = append(c.Env, skillParamEnv(s.Params)...)
	for i := range sc.Ports {
		c.Ports = append(c.Ports, *sc.Ports[i].DeepCopy())
	}
	return c, nil
}

// hostAccessSecurityContext is the original's security context of a
// sidecar with host access: privileged (with privilege escalation and
// seccomp Unconfined) and/or root, and nothing else, so that host probes
// keep the capabilities and the writable root they need. Without either,
// the restricted context stays.
func hostAccessSecurityContext(ha *v1alpha1.HostAccessSpec) *corev1.SecurityContext {
	if !ha.Privileged && !ha.RunAsRoot {
		return restrictedContainerSecurityContext()
	}
	sc := &corev1.SecurityContext{}
	if ha.Privileged {
		sc.Privileged = new(true)
		sc.AllowPrivilegeEscalation = new(true)
		sc.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
	}
	if ha.RunAsRoot {
		sc.RunAsUser = new(int64(0))
		sc.RunAsNonRoot = new(false)
	}
	return sc
}

// sidecarVolumes are the pod volumes the sidecars need: each secretRef
// (optional, as in the original: a sidecar whose credentials are absent
// still starts), then each host mount.
func sidecarVolumes(sidecars []Sidecar) []corev1.Volume {
	var out []corev1.Volume
	for _, s := range sidecars {
		if s.Spec.SecretRef == "" {
			continue
		}
		out = append(out, corev1.Volume{Name: naming.SkillSecretVolumeName(s.Pack), VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: s.Spec.SecretRef, Optional: new(true)},
		}})
	}
	for _, s := range sidecars {
		if !s.HostAccess() {
			continue
		}
		for i, m := range s.Spec.HostAccess.Mounts {
			if m.HostPath == "" || m.MountPath == "" {
				continue
			}
			out = append(out, corev1.Volume{Name: naming.HostPathVolumeName(s.Pack, i), VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: m.HostPath},
			}})
		}
	}
	return out
}

// tokenVolume is the run's ServiceAccount token as the kubelet's own
// automount would project it (token, the cluster CA, the namespace), for
// the sidecars that need the API only.
func tokenVolume() corev1.Volume {
	return corev1.Volume{Name: ServiceAccountTokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: new(ServiceAccountTokenSeconds)}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}},
			}}},
		},
	}}}
}

// podHostAccess is the pod's hostNetwork and hostPID: set when any sidecar
// with host access asks for it.
func podHostAccess(sidecars []Sidecar) (hostNetwork, hostPID bool) {
	for _, s := range sidecars {
		if s.HostAccess() {
			hostNetwork = hostNetwork || s.Spec.HostAccess.HostNetwork
			hostPID = hostPID || s.Spec.HostAccess.HostPID
		}
	}
	return hostNetwork, hostPID
}

// applyIdentity runs the pod as the run's own ServiceAccount when a
// sidecar needs the API and the controller gives runs their own identity;
// the token is then projected into those sidecars only (the pod's
// automountServiceAccountToken stays false, so the agent never holds it).
func applyIdentity(cfg Config, run *v1alpha1.AgentRun, sidecars []Sidecar, spec *corev1.PodSpec) {
	if !cfg.RunIdentity || !NeedsAPI(sidecars) {
		return
	}
	spec.ServiceAccountName = naming.IdentityName(run.Name)
	spec.Volumes = append(spec.Volumes, tokenVolume())
}

// mountsWorkspace says whether the sidecar mounts /workspace: unless
// mountWorkspace is false, as in sympozium, whose schema defaults it to true.
func mountsWorkspace(sc *v1alpha1.SkillSidecar) bool {
	return sc.MountWorkspace == nil || *sc.MountWorkspace
}
