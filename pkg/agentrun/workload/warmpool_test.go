package workload

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func warmRun(opts ...runOpt) *v1alpha1.AgentRun {
	r := newRun(opts...)
	r.Spec.AgentSandbox = &v1alpha1.AgentSandboxSpec{Enabled: true, WarmPoolRef: "pool"}
	r.Spec.Env = map[string]string{"SIM_MESSAGE": "done"}
	return r
}

// TestSandboxClaimWarmContract: the claim carries what a stock agent-sandbox
// adopts a warm Sandbox with (no env, no labels in additionalPodMetadata)
// and the run's values as sympozium.ai annotations.
func TestSandboxClaimWarmContract(t *testing.T) {
	u, err := SandboxClaim(testCfg, Inputs{Run: warmRun(), Now: now}, SandboxClaimGroup+"/v1beta1")
	require.NoError(t, err)
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	assert.ElementsMatch(t, []string{"warmPoolRef", "additionalPodMetadata"}, keys(spec), "no env, no volumeClaimTemplates")
	meta, _, _ := unstructured.NestedMap(u.Object, "spec", "additionalPodMetadata")
	assert.ElementsMatch(t, []string{"annotations"}, keys(meta), "no labels")
	ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "additionalPodMetadata", "annotations")
	assert.Equal(t, "run-1", ann[AnnotationWarmRun])
	assert.Equal(t, "summarise the repo", ann[AnnotationWarmTask])
	var env map[string]string
	require.NoError(t, json.Unmarshal([]byte(ann[AnnotationWarmEnv]), &env))
	assert.Equal(t, "summarise the repo", env[EnvTask])
	assert.Equal(t, "run-1", env[EnvAgentRunID])
	assert.Equal(t, "gpt-5", env[EnvModelName])
	assert.Equal(t, "done", env["SIM_MESSAGE"], "spec.env")
	assert.NotEmpty(t, env[EnvRunTimeout])
	assert.Equal(t, "run-1", u.GetName())
	assert.Equal(t, v1alpha1.ManagedByValue, u.GetLabels()[v1alpha1.LabelManagedBy], "the claim itself is labelled for the informer")

	// Deterministic: the same inputs give the same bytes.
	again, err := SandboxClaim(testCfg, Inputs{Run: warmRun(), Now: now}, SandboxClaimGroup+"/v1beta1")
	require.NoError(t, err)
	assert.Equal(t, u, again)
}

// TestSandboxClaimRefusesWhatAWarmPodCannotTake: skills and a node
// selector cannot be applied to a running pod: the builder refuses them,
// naming them.
func TestSandboxClaimRefusesWhatAWarmPodCannotTake(t *testing.T) {
	skills := warmRun()
	skills.Spec.Skills = []v1alpha1.SkillRef{{SkillPackRef: "k8s-ops"}}
	_, err := SandboxClaim(testCfg, Inputs{Run: skills, Now: now}, SandboxClaimGroup+"/v1beta1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "skills")
	assert.Contains(t, err.Error(), "warmPoolRef")

	sel := warmRun()
	sel.Spec.Model.NodeSelector = map[string]string{"gpu": "a100"}
	_, err = SandboxClaim(testCfg, Inputs{Run: sel, Now: now}, SandboxClaimGroup+"/v1beta1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "node selector (gpu)")

	_, err = SandboxClaim(testCfg, Inputs{Run: warmRun(), Now: now}, SandboxClaimGroup+"/v1alpha1")
	assert.Error(t, err)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSandboxLabelledAsTheOriginal: the Sandbox and the SandboxClaim carry
// sympozium.ai/agent-sandbox=true as the original's do
// (internal/controller/agentrun_sandbox.go:311, :408 at 25c0bb2): its
// clients select on it.
func TestSandboxLabelledAsTheOriginal(t *testing.T) {
	sb, err := Sandbox(testCfg, Inputs{Run: newRun(withAgentSandbox(&v1alpha1.AgentSandboxSpec{Enabled: true})), Now: now}, "agents.x-k8s.io/v1beta1")
	require.NoError(t, err)
	assert.Equal(t, "true", sb.GetLabels()[v1alpha1.LabelAgentSandbox])
	assert.Equal(t, "run-1", sb.GetLabels()[v1alpha1.LabelAgentRun])
	claim, err := SandboxClaim(testCfg, Inputs{Run: warmRun(), Now: now}, SandboxClaimGroup+"/v1beta1")
	require.NoError(t, err)
	assert.Equal(t, "true", claim.GetLabels()[v1alpha1.LabelAgentSandbox])
	// The label is on the objects, not on the pods a warm pool adopts.
	_, found, _ := unstructured.NestedMap(claim.Object, "spec", "additionalPodMetadata", "labels")
	assert.False(t, found)
}
