package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// DefaultTimeout is the run timeout when neither the run, its instance nor
// Config.DefaultTimeout gives a positive one.
const DefaultTimeout = 10 * time.Minute

// Names and paths of the agent pod contract.
const (
	// SandboxContainerName is the container-level sandbox sidecar.
	SandboxContainerName = "sandbox"

	WorkspaceVolume = "workspace"
	TmpVolume       = "tmp"
	IPCVolume       = "ipc"
	SkillsVolume    = "skills"

	WorkspacePath = "/workspace"
	TmpPath       = "/tmp"
	IPCPath       = "/ipc"
	SkillsPath    = "/skills"

	// TerminationMessagePath is where the agent writes its report.
	TerminationMessagePath = "/dev/termination-log"

	// ComponentAgent is the value of v1alpha1.LabelComponent on agent pods
	// and their Jobs.
	ComponentAgent = "agent"

	// AnnotationTraceParent, on an AgentRun, holds the W3C traceparent of
	// the caller; the run's trace then continues the caller's trace.
	AnnotationTraceParent = "sympozium.ai/traceparent"

	// NonRootID is the user, group and fsGroup of every container (the
	// distroless "nonroot" user).
	NonRootID int64 = 65532
)

// Environment variables the controller sets on the agent container, in the
// order they appear. spec.env cannot override them.
const (
	EnvAgentRunID       = "AGENT_RUN_ID"
	EnvAgentID          = "AGENT_ID"
	EnvSessionKey       = "SESSION_KEY"
	EnvInstanceName     = "INSTANCE_NAME"
	EnvAgentNamespace   = "AGENT_NAMESPACE"
	EnvTask             = "TASK"
	EnvSystemPrompt     = "SYSTEM_PROMPT"
	EnvModelProvider    = "MODEL_PROVIDER"
	EnvModelName        = "MODEL_NAME"
	EnvModelBaseURL     = "MODEL_BASE_URL"
	EnvThinkingMode     = "THINKING_MODE"
	EnvToolsEnabled     = "TOOLS_ENABLED"
	EnvToolPolicyAllow  = "TOOL_POLICY_ALLOW"
	EnvToolPolicyDeny   = "TOOL_POLICY_DENY"
	EnvRunTimeout       = "RUN_TIMEOUT"
	EnvTraceParent      = "TRACEPARENT"
	EnvParentRunName    = "PARENT_RUN_NAME"
	EnvParentSessionKey = "PARENT_SESSION_KEY"
	EnvSpawnDepth       = "SPAWN_DEPTH"
)

// ReservedEnv lists, in order, every variable the controller may set on the
// agent container.
var ReservedEnv = []string{
	EnvAgentRunID, EnvAgentID, EnvSessionKey, EnvInstanceName, EnvAgentNamespace,
	EnvTask, EnvSystemPrompt, EnvModelProvider, EnvModelName, EnvModelBaseURL,
	EnvThinkingMode, EnvToolsEnabled, EnvToolPolicyAllow, EnvToolPolicyDeny,
	EnvRunTimeout, EnvTraceParent, EnvParentRunName, EnvParentSessionKey, EnvSpawnDepth,
}

// maxEnvEntryBytes is Linux's MAX_ARG_STRLEN: the longest "NAME=value\0"
// execve accepts. A longer variable makes the container fail to start
// (E2BIG), so Job refuses to build such a pod.
const maxEnvEntryBytes = 128 * 1024

// Config is the controller's configuration of agent workloads.
type Config struct {
	// AgentImage is the agent container's image (--agent-image). Required.
	AgentImage string
	// SandboxImage is the default image of the sandbox sidecar; needed
	// only by runs with sandbox.enabled and no sandbox.image.
	SandboxImage string
	// DefaultTimeout is the timeout of runs whose spec and instance give
	// none (--default-timeout); DefaultTimeout (10m) when not positive.
	DefaultTimeout time.Duration
	// DeadlineSlack is added to the Job's activeDeadlineSeconds so that the
	// controller's own deadline fires first and the Job's is a backstop.
	DeadlineSlack time.Duration
	// EventBusURL is sympozium's event bus (--event-bus-url, e.g.
	// nats://nats.sympozium-system.svc:4222). When set, every agent pod
	// gets the ipc-bridge sidecar (image IPCBridgeImage, then required)
	// that publishes the agent's result as agent.run.completed, which
	// sympozium's channel router and web proxy wait for.
	EventBusURL    string
	IPCBridgeImage string
	// AllowHostAccess lets SkillPack sidecars with hostAccess run
	// (--allow-host-access). Such pods break Pod Security "restricted";
	// without it, a run mounting one fails (HostAccessDeniedError).
	AllowHostAccess bool
	// RunIdentity is set when the controller gives each run whose sidecars
	// need the API its own ServiceAccount (naming.IdentityName) with the
	// grants of its SkillPacks (identity.go): the pod then runs as that
	// ServiceAccount, and the sidecars that declare RBAC rules, only they,
	// get its token. When false, pods run as the namespace's default
	// ServiceAccount without any token.
	RunIdentity bool
	// MemoryWaitImage is the image of the wait-for-memory init container
	// of runs whose instance runs a memory server (memory.go);
	// DefaultMemoryWaitImage when empty.
	MemoryWaitImage string
}

// Inputs is what a workload is built from.
type Inputs struct {
	// Run is the AgentRun; read-only.
	Run *v1alpha1.AgentRun
	// Instance is the run's SympoziumInstance; nil when unknown. Read-only.
	Instance *v1alpha1.SympoziumInstance
	// SkillPacks holds the SkillPacks mounted by the run, by name, for
	// their sidecars; a missing entry just means no sidecar. Read-only.
	SkillPacks map[string]*v1alpha1.SkillPack
	// Parent is the parent run of a sub-agent run; nil when there is none
	// (or it is not known). Its deadline caps the run's. Read-only.
	Parent *v1alpha1.AgentRun
	// Now is the clock reading RUN_TIMEOUT and activeDeadlineSeconds are
	// computed from. Required.
	Now time.Time
}

// Timeout is the run's timeout: spec.timeout, else the instance's
// agents.default.runTimeout, else def, else DefaultTimeout. Non-positive
// values are skipped, so the result is always positive.
func Timeout(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance, def time.Duration) time.Duration {
	if run != nil && run.Spec.Timeout != nil && run.Spec.Timeout.Duration > 0 {
		return run.Spec.Timeout.Duration
	}
	if inst != nil {
		if d := inst.Spec.Agents.Default.RunTimeout; d != nil && d.Duration > 0 {
			return d.Duration
		}
	}
	if def > 0 {
		return def
	}
	return DefaultTimeout
}

// Deadline is when the run times out: its creation (admission) plus
// Timeout. The timeout counts from admission so that a run stuck waiting
// (for capacity, an instance, a node) ends as well.
func Deadline(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance, def time.Duration) time.Time {
	return run.CreationTimestamp.Add(Timeout(run, inst, def))
}

// EffectiveDeadline is the run's Deadline, or its parent's when that is
// earlier: a sub-agent never outlives its parent's budget. The parent's
// timeout is read with the run's instance when both belong to the same one
// (sub-agents always do), else with the defaults alone.
func EffectiveDeadline(in Inputs, def time.Duration) time.Time {
	d := Deadline(in.Run, in.Instance, def)
	if p := in.Parent; p != nil && in.Run.Spec.Parent != nil {
		inst := in.Instance
		if p.Spec.InstanceRef != in.Run.Spec.InstanceRef {
			inst = nil
		}
		if pd := Deadline(p, inst, def); pd.Before(d) {
			d = pd
		}
	}
	return d
}

// TraceParent returns the run's OpenTelemetry trace ID and the W3C
// traceparent ("00-<32 hex trace ID>-<16 hex span ID>-01") the agent gets
// in TRACEPARENT. Both are derived from sha256 of the run's UID, so they are
// stable across reconciles and restarts. When the run's
// sympozium.ai/traceparent annotation holds a valid traceparent, its trace
// ID is kept (the run joins the caller's trace) and only the span ID is
// derived. IDs are never all zeros.
func TraceParent(run *v1alpha1.AgentRun) (traceID, traceparent string) {
	seed := string(run.UID)
	if seed == "" {
		// Not yet persisted (only in tests): fall back to the name.
		seed = run.Namespace + "/" + run.Name
	}
	traceID, ok := parentTraceID(run.Annotations[AnnotationTraceParent])
	if !ok {
		traceID, ok = parentTraceID(run.Annotations[AnnotationOTelTraceParent])
	}
	if !ok {
		traceID = hexID("trace/"+seed, 32)
	}
	spanID := hexID("span/"+seed, 16)
	return traceID, "00-" + traceID + "-" + spanID + "-01"
}

// hexID returns n hex digits of sha256(s), never all zeros.
func hexID(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return nonZeroID(hex.EncodeToString(sum[:])[:n])
}

// nonZeroID makes an all-zero ID (invalid in W3C Trace Context) valid by
// setting its last digit to 1.
func nonZeroID(id string) string {
	if id != "" && strings.Trim(id, "0") == "" {
		return id[:len(id)-1] + "1"
	}
	return id
}

// parentTraceID returns the trace ID of a valid W3C traceparent
// (version-traceid-parentid-flags, lowercase hex, neither ID all zeros,
// version not ff; a future version may append fields after a '-').
func parentTraceID(tp string) (string, bool) {
	tp = strings.TrimSpace(tp)
	if len(tp) < 55 || (len(tp) > 55 && tp[55] != '-') {
		return "", false
	}
	version, trace, span, flags := tp[0:2], tp[3:35], tp[36:52], tp[53:55]
	if tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return "", false
	}
	if !isLowerHex(version) || version == "ff" || (version == "00" && len(tp) != 55) {
		return "", false
	}
	if !isLowerHex(trace) || !isLowerHex(span) || !isLowerHex(flags) {
		return "", false
	}
	if strings.Trim(trace, "0") == "" || strings.Trim(span, "0") == "" {
		return "", false
	}
	return trace, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// skillRefs returns the instance's and then the run's skill references.
func skillRefs(in Inputs) []v1alpha1.SkillRef {
	var refs []v1alpha1.SkillRef
	if in.Instance != nil {
		refs = append(refs, in.Instance.Spec.Skills...)
	}
	if in.Run != nil {
		refs = append(refs, in.Run.Spec.Skills...)
	}
	return refs
}

// SkillConfigMaps returns the sorted, de-duplicated names of the ConfigMaps
// the agent pod mounts at /skills: one per skill reference of the instance
// and of the run, its configMapRef when set, else its SkillPack's name.
func SkillConfigMaps(in Inputs) []string {
	var names []string
	for _, ref := range skillRefs(in) {
		name := ref.ConfigMapRef
		if name == "" {
			name = ref.SkillPackRef
		}
		if name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// SkillPackNames returns the sorted, de-duplicated SkillPacks mounted.
func SkillPackNames(in Inputs) []string {
	var names []string
	for _, ref := range skillRefs(in) {
		if ref.SkillPackRef != "" {
			names = append(names, ref.SkillPackRef)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Labels returns the labels of a run's Job and agent pod.
func Labels(run *v1alpha1.AgentRun) map[string]string {
	l := map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelAgentRun:  naming.LabelValue(run.Name),
		v1alpha1.LabelComponent: ComponentAgent,
	}
	if run.Spec.InstanceRef != "" {
		l[v1alpha1.LabelInstance] = naming.LabelValue(run.Spec.InstanceRef)
	}
	return l
}

// remaining is the time left until the run's deadline at in.Now.
func remaining(cfg Config, in Inputs) time.Duration {
	return EffectiveDeadline(in, cfg.DefaultTimeout).Sub(in.Now)
}

// RunTimeout is the RUN_TIMEOUT of a pod built at in.Now: the time left
// until the deadline, in whole seconds (at least 1s), in the form of Go's
// time.Duration.String ("9m59s"), which sympozium's agent-runner reads with
// time.ParseDuration.
func RunTimeout(cfg Config, in Inputs) string {
	return max(time.Second, remaining(cfg, in).Truncate(time.Second)).String()
}

// ActiveDeadlineSeconds is the activeDeadlineSeconds of a Job built at
// in.Now: the seconds left until the deadline, rounded up, plus
// cfg.DeadlineSlack (rounded up); at least 1.
func ActiveDeadlineSeconds(cfg Config, in Inputs) int64 {
	return max(1, ceilSeconds(remaining(cfg, in))+ceilSeconds(max(0, cfg.DeadlineSlack)))
}

func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

func validate(cfg Config, in Inputs) error {
	switch {
	case in.Run == nil:
		return errors.New("no AgentRun to build a workload for")
	case cfg.AgentImage == "":
		return errors.New("no agent image configured (--agent-image)")
	case in.Now.IsZero():
		return errors.New("building a workload needs the current time")
	}
	return validateBridge(cfg)
}

// PodTemplate builds the agent pod template of the run (SPEC §3). The Job,
// and the agent-sandbox Sandbox backend, use it as is; a server-mode run's
// Deployment gets restartPolicy Always, as Deployments require.
//
// Besides the agent, the pod holds the ipc-bridge (Config.EventBusURL), the
// sandbox sidecar and the sidecars of the mounted SkillPacks (TaskSidecars,
// see skills.go).
//
// Errors are configuration errors that retrying does not fix: no agent
// image, an event bus without a bridge image, a sandbox without an image, a
// skill sidecar without an image or with resources that are not
// quantities, host access the controller does not allow
// (HostAccessDeniedError), an environment variable too long for execve. A
// run already past its deadline is not an error: RUN_TIMEOUT is then 1s.
func PodTemplate(cfg Config, in Inputs) (corev1.PodTemplateSpec, error) {
	if err := validate(cfg, in); err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	run := in.Run
	spec := &run.Spec
	sidecars := TaskSidecars(in)
	if err := checkHostAccess(cfg, sidecars); err != nil {
		return corev1.PodTemplateSpec{}, err
	}

	agent := corev1.Container{
		Name:                     v1alpha1.AgentContainerName,
		Image:                    cfg.AgentImage,
		Env:                      agentEnv(cfg, in),
		EnvFrom:                  authEnvFrom(run, in.Instance),
		VolumeMounts:             scratchMounts(),
		TerminationMessagePath:   TerminationMessagePath,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          restrictedContainerSecurityContext(),
	}
	for _, e := range agent.Env {
		if n := len(e.Name) + 1 + len(e.Value) + 1; n > maxEnvEntryBytes {
			return corev1.PodTemplateSpec{}, fmt.Errorf("environment variable %s is %d bytes, more than the %d a process can receive; shorten it", e.Name, n, maxEnvEntryBytes)
		}
	}

	volumes := []corev1.Volume{
		emptyDir(WorkspaceVolume), emptyDir(TmpVolume), emptyDir(IPCVolume),
	}
	if cms := SkillConfigMaps(in); len(cms) > 0 {
		sources := make([]corev1.VolumeProjection, 0, len(cms))
		for _, cm := range cms {
			sources = append(sources, corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: cm},
				// Optional, as in the original: the controller admits a
				// run only once its ConfigMaps exist (or are mirrored), so
				// one removed later does not keep the pod from starting.
				Optional: new(true),
			}})
		}
		volumes = append(volumes, corev1.Volume{
			Name:         SkillsVolume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}},
		})
		agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: SkillsVolume, MountPath: SkillsPath, ReadOnly: true})
	}
	if LegacyMemory(in.Instance) {
		volumes = append(volumes, memoryVolume(run))
		agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: MemoryVolume, MountPath: MemoryPath, ReadOnly: true})
	}

	podSpec := corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyNever,
		AutomountServiceAccountToken: new(false),
		EnableServiceLinks:           new(false),
		SecurityContext:              podSecurityContext(),
		NodeSelector:                 nodeSelector(run, in.Instance),
		Volumes:                      volumes,
	}
	if spec.Mode == v1alpha1.ModeServer {
		podSpec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if MemoryServer(in) {
		podSpec.InitContainers = []corev1.Container{memoryWaitContainer(cfg, run)}
	}
	podSpec.HostNetwork, podSpec.HostPID = podHostAccess(sidecars)
	if podSpec.HostNetwork {
		podSpec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	}
	if as := spec.AgentSandbox; as != nil && as.Enabled {
		if as.RuntimeClass != "" {
			podSpec.RuntimeClassName = new(as.RuntimeClass)
		}
		if as.Resources != nil {
			agent.Resources = *as.Resources.DeepCopy()
		}
	}
	podSpec.Containers = append(podSpec.Containers, agent)
	if cfg.EventBusURL != "" {
		podSpec.Containers = append(podSpec.Containers, ipcBridgeContainer(cfg, in))
	}

	if sb := spec.Sandbox; sb != nil && sb.Enabled && !ContainerSandboxIgnored(run) {
		c, err := sandboxContainer(cfg, sb)
		if err != nil {
			return corev1.PodTemplateSpec{}, err
		}
		podSpec.Containers = append(podSpec.Containers, c)
	}
	for _, s := range sidecars {
		c, err := skillContainer(cfg, s)
		if err != nil {
			return corev1.PodTemplateSpec{}, err
		}
		podSpec.Containers = append(podSpec.Containers, c)
	}
	podSpec.Volumes = append(podSpec.Volumes, sidecarVolumes(sidecars)...)
	applyIdentity(cfg, run, sidecars, &podSpec)

	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: Labels(run)},
		Spec:       podSpec,
	}, nil
}

// Job builds the Job of a task-mode run: named naming.JobName, in the run's
// namespace, controlled by the run, running PodTemplate once (a pod the
// infrastructure broke is replaced up to InfrastructureRetries times, see
// PodFailurePolicy) and an active deadline just after the run's own. It has no
// ttlSecondsAfterFinished: the controller deletes it per spec.cleanup.
func Job(cfg Config, in Inputs) (*batchv1.Job, error) {
	tmpl, err := PodTemplate(cfg, in)
	if err != nil {
		return nil, err
	}
	run := in.Run
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.JobName(run.Name),
			Namespace:       run.Namespace,
			Labels:          Labels(run),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:          new(InfrastructureRetries(run, in.Instance)),
			PodFailurePolicy:      PodFailurePolicy(),
			Completions:           new(int32(1)),
			Parallelism:           new(int32(1)),
			ActiveDeadlineSeconds: new(ActiveDeadlineSeconds(cfg, in)),
			PodReplacementPolicy:  new(batchv1.Failed),
			Template:              tmpl,
		},
	}, nil
}

// agentEnv is the agent container's environment, in contract order, then
// spec.env sorted by name without the reserved names.
func agentEnv(cfg Config, in Inputs) []corev1.EnvVar {
	run, inst := in.Run, in.Instance
	spec := &run.Spec
	var def v1alpha1.AgentConfig
	if inst != nil {
		def = inst.Spec.Agents.Default
	}
	model := spec.Model.Model
	if model == "" {
		model = def.Model
	}
	baseURL := spec.Model.BaseURL
	if baseURL == "" {
		baseURL = def.BaseURL
	}
	thinking := spec.Model.Thinking
	if thinking == "" {
		thinking = def.Thinking
	}
	if thinking == "" {
		thinking = v1alpha1.ThinkingOff
	}
	var allow, deny []string
	if tp := spec.ToolPolicy; tp != nil {
		allow, deny = tp.Allow, tp.Deny
	}
	_, traceparent := TraceParent(run)

	env := []corev1.EnvVar{
		{Name: EnvAgentRunID, Value: run.Name},
		{Name: EnvAgentID, Value: AgentID(run)},
		{Name: EnvSessionKey, Value: SessionKey(run)},
		{Name: EnvInstanceName, Value: spec.InstanceRef},
		{Name: EnvAgentNamespace, Value: run.Namespace},
		{Name: EnvTask, Value: spec.Task},
		{Name: EnvSystemPrompt, Value: spec.SystemPrompt},
		{Name: EnvModelProvider, Value: spec.Model.Provider},
		{Name: EnvModelName, Value: model},
		{Name: EnvModelBaseURL, Value: baseURL},
		{Name: EnvThinkingMode, Value: string(thinking)},
		{Name: EnvToolsEnabled, Value: "true"},
		{Name: EnvToolPolicyAllow, Value: joinList(allow)},
		{Name: EnvToolPolicyDeny, Value: joinList(deny)},
		{Name: EnvRunTimeout, Value: RunTimeout(cfg, in)},
		{Name: EnvTraceParent, Value: traceparent},
	}
	if p := spec.Parent; p != nil {
		env = append(env,
			corev1.EnvVar{Name: EnvParentRunName, Value: p.RunName},
			corev1.EnvVar{Name: EnvParentSessionKey, Value: ParentSessionKey(run, in.Parent)},
			corev1.EnvVar{Name: EnvSpawnDepth, Value: strconv.FormatInt(int64(p.SpawnDepth), 10)},
		)
	}
	env = append(env, runContextEnv(run)...)
	env = append(env, memoryEnv(in)...)
	env = append(env, otelEnv(run, inst, OTelAgentServiceName)...)
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		set := slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == k })
		if k != "" && !set && !slices.Contains(ReservedEnv, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: spec.Env[k]})
	}
	return env
}

// joinList joins the non-empty, trimmed items with ",".
func joinList(items []string) string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return strings.Join(out, ",")
}

// AuthSecretName is the Secret whose keys become the agent's environment
// (the API key): spec.model.authSecretRef, else the instance's authRefs
// entry for spec.model.provider (an exact match first, else one differing
// only in case), else "" (a keyless model).
func AuthSecretName(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance) string {
	if s := run.Spec.Model.AuthSecretRef; s != "" {
		return s
	}
	if inst == nil {
		return ""
	}
	provider := run.Spec.Model.Provider
	for _, ref := range inst.Spec.AuthRefs {
		if ref.Provider == provider && ref.Secret != "" {
			return ref.Secret
		}
	}
	for _, ref := range inst.Spec.AuthRefs {
		if strings.EqualFold(ref.Provider, provider) && ref.Secret != "" {
			return ref.Secret
		}
	}
	return ""
}

// authEnvFrom references the API key Secret; its values are never copied.
// The reference is not optional: a missing Secret keeps the container
// from starting (CreateContainerConfigError), which the run reports.
func authEnvFrom(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance) []corev1.EnvFromSource {
	name := AuthSecretName(run, inst)
	if name == "" {
		return nil
	}
	return []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: name},
	}}}
}

// nodeSelector is the instance's default node selector overlaid with the
// run's; nil when both are empty.
func nodeSelector(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance) map[string]string {
	var out map[string]string
	put := func(m map[string]string) {
		for k, v := range m {
			if out == nil {
				out = make(map[string]string, len(m))
			}
			out[k] = v
		}
	}
	if inst != nil {
		put(inst.Spec.Agents.Default.NodeSelector)
	}
	put(run.Spec.Model.NodeSelector)
	return out
}

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

// scratchMounts mounts the writable emptyDirs every container shares.
func scratchMounts() []corev1.VolumeMount {
	return []corev1.VolumeMount{
		{Name: WorkspaceVolume, MountPath: WorkspacePath},
		{Name: TmpVolume, MountPath: TmpPath},
		{Name: IPCVolume, MountPath: IPCPath},
	}
}

// podSecurityContext runs every container as NonRootID with seccomp
// RuntimeDefault (containers may override, e.g. a sidecar with host access).
func podSecurityContext() *corev1.PodSecurityContext {
	return &corev1.PodSecurityContext{
		RunAsNonRoot:   new(true),
		RunAsUser:      new(NonRootID),
		RunAsGroup:     new(NonRootID),
		FSGroup:        new(NonRootID),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// restrictedContainerSecurityContext is what Pod Security "restricted"
// requires of a container, plus a read-only root filesystem.
func restrictedContainerSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		ReadOnlyRootFilesystem:   new(true),
		RunAsNonRoot:             new(true),
	}
}

// mergeSecurityContext lays user over the restricted defaults: every field
// the user sets wins, every field left unset keeps its restricted value
// unless that value contradicts one the user set (see the end). The
// capabilities merge field by field (the user may add capabilities and
// still drop ALL by default).
func mergeSecurityContext(user *corev1.SecurityContext) *corev1.SecurityContext {
	sc := restrictedContainerSecurityContext()
	if user == nil {
		return sc
	}
	u := user.DeepCopy()
	if u.Capabilities != nil {
		if u.Capabilities.Add != nil {
			sc.Capabilities.Add = u.Capabilities.Add
		}
		if u.Capabilities.Drop != nil {
			sc.Capabilities.Drop = u.Capabilities.Drop
		}
	}
	if u.Privileged != nil {
		sc.Privileged = u.Privileged
	}
	if u.SELinuxOptions != nil {
		sc.SELinuxOptions = u.SELinuxOptions
	}
	if u.WindowsOptions != nil {
		sc.WindowsOptions = u.WindowsOptions
	}
	if u.RunAsUser != nil {
		sc.RunAsUser = u.RunAsUser
	}
	if u.RunAsGroup != nil {
		sc.RunAsGroup = u.RunAsGroup
	}
	if u.RunAsNonRoot != nil {
		sc.RunAsNonRoot = u.RunAsNonRoot
	}
	if u.ReadOnlyRootFilesystem != nil {
		sc.ReadOnlyRootFilesystem = u.ReadOnlyRootFilesystem
	}
	if u.AllowPrivilegeEscalation != nil {
		sc.AllowPrivilegeEscalation = u.AllowPrivilegeEscalation
	}
	if u.ProcMount != nil {
		sc.ProcMount = u.ProcMount
	}
	if u.SeccompProfile != nil {
		sc.SeccompProfile = u.SeccompProfile
	}
	if u.AppArmorProfile != nil {
		sc.AppArmorProfile = u.AppArmorProfile
	}
	// A default must not turn the user's explicit choice into a pod the API
	// server rejects or the kubelet cannot start: allowPrivilegeEscalation
	// false is invalid with privileged or CAP_SYS_ADMIN, and runAsNonRoot
	// true contradicts runAsUser 0.
	if u.AllowPrivilegeEscalation == nil && (ptrTrue(u.Privileged) || addsSysAdmin(u.Capabilities)) {
		sc.AllowPrivilegeEscalation = nil
	}
	if u.RunAsNonRoot == nil && u.RunAsUser != nil && *u.RunAsUser == 0 {
		sc.RunAsNonRoot = new(false)
	}
	return sc
}

func ptrTrue(b *bool) bool { return b != nil && *b }

func addsSysAdmin(c *corev1.Capabilities) bool {
	if c == nil {
		return false
	}
	return slices.ContainsFunc(c.Add, func(cp corev1.Capability) bool {
		return strings.EqualFold(string(cp), "CAP_SYS_ADMIN") || strings.EqualFold(string(cp), "SYS_ADMIN")
	})
}

func sandboxContainer(cfg Config, sb *v1alpha1.SandboxSpec) (corev1.Container, error) {
	image := sb.Image
	if image == "" {
		image = cfg.SandboxImage
	}
	if image == "" {
		return corev1.Container{}, errors.New("sandbox.enabled needs sandbox.image or a default sandbox image in the controller's configuration")
	}
	c := corev1.Container{
		Name:                     SandboxContainerName,
		Image:                    image,
		VolumeMounts:             scratchMounts(),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          mergeSecurityContext(sb.SecurityContext),
	}
	if sb.Resources != nil {
		c.Resources = *sb.Resources.DeepCopy()
	}
	return c, nil
}
