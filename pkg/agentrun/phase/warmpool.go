package phase

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// PoolTemplate is what the machine reads of the SandboxTemplate of a run's
// warm pool. It is looked up for every run with warmPoolRef, before its
// claim is created: a warm pod runs what its pool's template says, so
// agentSandbox.runtimeClass and resources are applied only when the
// template already says the same (sympozium's own clients set them
// together, so the CRD admits them), and a template whose pod cannot
// receive the task (the README's warm-pool contract: a downward API volume
// of the pod's annotations mounted in container agent) fails the run at
// once instead of leaving it to wait for its timeout.
type PoolTemplate struct {
	// Name is the SandboxTemplate's name; "" when the pool or its template
	// was not found, Why then says which.
	Name string
	Why  string
	// RuntimeClassName is the template pod's runtimeClassName.
	RuntimeClassName string
	// Agent is the resources of the template's container "agent"; nil
	// when it has none.
	Agent *corev1.ResourceRequirements
	// HasAgent reports whether the template's pod has a container agent;
	// AgentMounts are its volume mounts and Volumes the pod's volumes (what
	// the task's delivery is checked against).
	HasAgent    bool
	AgentMounts []corev1.VolumeMount
	Volumes     []corev1.Volume
}

// NeedsPoolTemplate reports whether a run's claim may be created only once
// its pool's template has been read: every run on a warm pool.
func NeedsPoolTemplate(run *v1alpha1.AgentRun) bool {
	as := run.Spec.AgentSandbox
	return as != nil && as.Enabled && as.WarmPoolRef != ""
}

// setsPoolSettings reports whether run sets agentSandbox.runtimeClass or
// resources with warmPoolRef, which only a template that runs them allows.
func setsPoolSettings(run *v1alpha1.AgentRun) bool {
	as := run.Spec.AgentSandbox
	return NeedsPoolTemplate(run) && (as.RuntimeClass != "" || as.Resources != nil)
}

// poolMismatch says why run cannot be claimed from its warm pool's
// template: its agentSandbox.runtimeClass or resources are not what the
// template runs, or the template's pod cannot receive the task (see
// podInfoLack); "" when it can. A template that could not be read (the
// pool or template missing) stops only a run that sets runtimeClass or
// resources; for others the claim is created and agent-sandbox's own
// answer (WarmPoolNotFound, ...) decides.
func poolMismatch(run *v1alpha1.AgentRun, t *PoolTemplate) string {
	if !NeedsPoolTemplate(run) {
		return ""
	}
	as := run.Spec.AgentSandbox
	if (t == nil || t.Name == "") && !setsPoolSettings(run) {
		return ""
	}
	if t == nil || t.Name == "" {
		why := "its template could not be read"
		if t != nil && t.Why != "" {
			why = t.Why
		}
		return fmt.Sprintf("agentSandbox.runtimeClass and resources with warmPoolRef must be what warm pool %s's SandboxTemplate runs, which cannot be checked: %s", as.WarmPoolRef, why)
	}
	if as.RuntimeClass != "" && as.RuntimeClass != t.RuntimeClassName {
		return fmt.Sprintf("agentSandbox.runtimeClass %q is not what warm pool %s runs (SandboxTemplate %s: runtimeClassName %q): a warm pod already runs; set it in the template, or drop runtimeClass or warmPoolRef",
			as.RuntimeClass, as.WarmPoolRef, t.Name, t.RuntimeClassName)
	}
	if as.Resources != nil && (t.Agent == nil || !sameQuantities(as.Resources.Limits, t.Agent.Limits) || !sameQuantities(as.Resources.Requests, t.Agent.Requests)) {
		return fmt.Sprintf("agentSandbox.resources are not what warm pool %s's container agent has (SandboxTemplate %s): a warm pod already runs; set them in the template, or drop resources or warmPoolRef",
			as.WarmPoolRef, t.Name)
	}
	if lack := podInfoLack(t); lack != "" {
		return fmt.Sprintf("warm pool %s cannot receive the run's task: its SandboxTemplate %s %s; the task reaches a warm pod only as the pod's annotations, through a downward API volume of metadata.annotations (file %s) mounted in container %s at %s (see the README's warm-pool contract and manifests/samples/warm-pool)",
			as.WarmPoolRef, t.Name, lack, workload.WarmPodInfoFile, v1alpha1.AgentContainerName, workload.WarmPodInfoPath)
	}
	return ""
}

// podInfoLack says what template t lacks for the warm-pool contract's
// delivery of the task, "" when nothing: a container agent mounting, at
// workload.WarmPodInfoPath, a volume that exposes metadata.annotations as
// file workload.WarmPodInfoFile (a downwardAPI volume, or a projected one
// with a downwardAPI source).
func podInfoLack(t *PoolTemplate) string {
	if !t.HasAgent {
		return "has no container " + v1alpha1.AgentContainerName
	}
	var podInfo []string
	for _, v := range t.Volumes {
		if exposesAnnotations(v) {
			podInfo = append(podInfo, v.Name)
		}
	}
	if len(podInfo) == 0 {
		return "has no downward API volume of metadata.annotations (file " + workload.WarmPodInfoFile + ")"
	}
	for _, m := range t.AgentMounts {
		if m.MountPath == workload.WarmPodInfoPath && slices.Contains(podInfo, m.Name) {
			return ""
		}
	}
	return fmt.Sprintf("does not mount its downward API volume %s in container %s at %s", podInfo[0], v1alpha1.AgentContainerName, workload.WarmPodInfoPath)
}

// exposesAnnotations reports whether v holds the pod's annotations as file
// workload.WarmPodInfoFile.
func exposesAnnotations(v corev1.Volume) bool {
	var files []corev1.DownwardAPIVolumeFile
	if d := v.DownwardAPI; d != nil {
		files = append(files, d.Items...)
	}
	if p := v.Projected; p != nil {
		for _, s := range p.Sources {
			if s.DownwardAPI != nil {
				files = append(files, s.DownwardAPI.Items...)
			}
		}
	}
	for _, f := range files {
		if f.Path == workload.WarmPodInfoFile && f.FieldRef != nil && f.FieldRef.FieldPath == "metadata.annotations" {
			return true
		}
	}
	return false
}

func sameQuantities(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, q := range a {
		o, ok := b[k]
		if !ok || q.Cmp(o) != 0 {
			return false
		}
	}
	return true
}
