package phase

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// PoolTemplate is what the machine reads of the SandboxTemplate of a run's
// warm pool. It is looked up only for a run that sets
// agentSandbox.runtimeClass or resources with warmPoolRef, before its claim
// is created: a warm pod runs what its pool's template says, so those
// settings are applied only when the template already says the same
// (sympozium's own clients set them together, so the CRD admits them).
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
}

// NeedsPoolTemplate reports whether a run's claim may be created only once
// its pool's template is known to match it.
func NeedsPoolTemplate(run *v1alpha1.AgentRun) bool {
	as := run.Spec.AgentSandbox
	return as != nil && as.Enabled && as.WarmPoolRef != "" && (as.RuntimeClass != "" || as.Resources != nil)
}

// poolMismatch says why run's agentSandbox.runtimeClass or resources are
// not what its warm pool's template runs; "" when they are (or are not
// set).
func poolMismatch(run *v1alpha1.AgentRun, t *PoolTemplate) string {
	if !NeedsPoolTemplate(run) {
		return ""
	}
	as := run.Spec.AgentSandbox
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
	return ""
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
