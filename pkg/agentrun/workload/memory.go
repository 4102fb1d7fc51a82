package workload

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The agent pod's memory, as the original builds it
// (internal/controller/agentrun_controller.go at 25c0bb2):
//
//   - the instance's memory.enabled (the "legacy" memory, :258-268): the
//     ConfigMap <instance>-memory mounted read-only at /memory (volume
//     "memory", optional, :1895-1909) and MEMORY_ENABLED=true (:1428-1436);
//   - the memory skill (:1438-1474): MEMORY_SERVER_URL, the memory server's
//     Service, and the init container wait-for-memory that waits up to 60 s
//     for its /health before the agent starts.
//
// The original wires the memory server when the run's own skills list the
// SkillPack "memory" (agentRunHasMemorySkill, :2011-2019; a run without
// skills inherits the instance's, :283-287). Here the pod mounts the
// instance's skills and the run's (SkillConfigMaps), and the memory server
// exists only for an instance that lists the skill (instancephase): the pod
// is told about the server when its instance lists the skill, that is when
// there is one. A run that lists the skill on an instance that does not
// gets the skill's instructions only, where the original waited 60 s for a
// server that never came and failed the run.
const (
	EnvMemoryEnabled   = "MEMORY_ENABLED"
	EnvMemoryServerURL = "MEMORY_SERVER_URL"

	MemoryVolume = "memory"
	MemoryPath   = "/memory"

	// MemoryWaitContainerName is the init container that waits for the
	// memory server.
	MemoryWaitContainerName = "wait-for-memory"
	// DefaultMemoryWaitImage is its image when Config.MemoryWaitImage is
	// empty: the original's.
	DefaultMemoryWaitImage = "busybox:1.36"
	// MemoryServerPort is the memory server's Service port.
	MemoryServerPort = 8080
)

// LegacyMemory reports whether the instance has memory.enabled: the agent
// then reads its memory ConfigMap at /memory.
func LegacyMemory(inst *v1alpha1.SympoziumInstance) bool {
	return inst != nil && inst.Spec.Memory != nil && inst.Spec.Memory.Enabled
}

// MemoryServer reports whether the run's instance runs a memory server
// (it lists the SkillPack "memory", instancephase.MemorySkill).
func MemoryServer(in Inputs) bool {
	return in.Instance != nil && slices.ContainsFunc(in.Instance.Spec.Skills, func(s v1alpha1.SkillRef) bool {
		return s.SkillPackRef == instancephase.MemorySkill
	})
}

// MemoryServerURL is the URL of the memory server of the run's instance, as
// the original builds it (:1440).
func MemoryServerURL(run *v1alpha1.AgentRun) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", instancephase.MemoryName(run.Spec.InstanceRef), run.Namespace, MemoryServerPort)
}

// memoryEnv is the agent's memory environment (see above), in the
// original's order.
func memoryEnv(in Inputs) []corev1.EnvVar {
	var env []corev1.EnvVar
	if LegacyMemory(in.Instance) {
		env = append(env, corev1.EnvVar{Name: EnvMemoryEnabled, Value: "true"})
	}
	if MemoryServer(in) {
		env = append(env, corev1.EnvVar{Name: EnvMemoryServerURL, Value: MemoryServerURL(in.Run)})
	}
	return env
}

// memoryVolume is the memory ConfigMap's volume (optional: a pod whose
// ConfigMap is not there yet starts without memories, as in the original).
func memoryVolume(run *v1alpha1.AgentRun) corev1.Volume {
	return corev1.Volume{Name: MemoryVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: instancephase.MemoryName(run.Spec.InstanceRef)},
		Optional:             new(true),
	}}}
}

// MemoryWaitCommand is the original's wait-for-memory script (:1461): up to
// 60 s of wget --spider on <url>/health every 2 s, then exit 1.
func MemoryWaitCommand(url string) []string {
	return []string{"sh", "-c", fmt.Sprintf("elapsed=0; until wget -q --spider --timeout=2 %s/health; do echo 'waiting for memory server...'; sleep 2; elapsed=$((elapsed+2)); if [ $elapsed -ge 60 ]; then echo 'ERROR: memory server not ready after 60s'; exit 1; fi; done", url)}
}

// memoryWaitContainer is the original's init container (:1445-1473): its
// image, command and resources. Its security context is this pod's
// restricted one (the original's read-only root, no escalation, drop ALL,
// plus runAsNonRoot; the pod runs it as NonRootID), and its last log line
// is its termination message, so a server that never came says so in
// the pod's status. A non-zero exit fails the Job at once
// (PodFailurePolicy), and the run with it.
func memoryWaitContainer(cfg Config, run *v1alpha1.AgentRun) corev1.Container {
	image := cfg.MemoryWaitImage
	if image == "" {
		image = DefaultMemoryWaitImage
	}
	return corev1.Container{
		Name:                     MemoryWaitContainerName,
		Image:                    image,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		Command:                  MemoryWaitCommand(MemoryServerURL(run)),
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          restrictedContainerSecurityContext(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
	}
}
