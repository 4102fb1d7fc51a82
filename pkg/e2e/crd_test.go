package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// seedRun is the example of ../shared/seed/AgentRun.md with one value chosen
// where it lists alternatives (mode task, cleanup keep) and only the
// container sandbox enabled.
const seedRun = `apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: my-run-001
spec:
  instanceRef: my-agent
  agentId: default
  sessionKey: session-123
  task: "Sprawdź stan klastra"
  systemPrompt: "Jesteś SRE inżynierem..."
  model:
    provider: anthropic
    model: claude-sonnet-4-20250514
    baseURL: ""
    thinking: "high"
    authSecretRef: anthropic-key
    nodeSelector:
      gpu-type: a100
  mode: task
  parent:
    runName: parent-run
    sessionKey: parent-session
    spawnDepth: 1
  skills:
    - skillPackRef: k8s-ops
  toolPolicy:
    allow: [read_file, list_directory]
    deny: [execute_command]
  timeout: 5m
  cleanup: keep
  sandbox:
    enabled: true
    image: custom-sandbox:v1
  agentSandbox:
    enabled: false
    runtimeClass: gvisor
    warmPoolRef: wp-my-agent
  env:
    MY_VAR: my-value
`

func TestCRDsEstablished(t *testing.T) {
	e := requireE2E(t)
	for _, crd := range []string{"agentruns", "sympoziuminstances", "skillpacks"} {
		out := e.kubectl(t, "get", "crd", crd+".sympozium.ai",
			"-o", `jsonpath={.status.conditions[?(@.type=="Established")].status}{" "}{.status.conditions[?(@.type=="NamesAccepted")].status}`)
		assert.Equal(t, "True True", out, crd)
	}
}

func TestSeedExampleRoundTrip(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.apply(t, strings.Replace(seedRun, "metadata:\n", "metadata:\n  namespace: "+ns+"\n", 1))

	got := e.getRun(t, ns, "my-run-001")
	want := v1alpha1.AgentRunSpec{
		InstanceRef: "my-agent", AgentID: "default", SessionKey: "session-123",
		Task: "Sprawdź stan klastra", SystemPrompt: "Jesteś SRE inżynierem...",
		Model: v1alpha1.ModelSpec{Provider: "anthropic", Model: "claude-sonnet-4-20250514", Thinking: v1alpha1.ThinkingHigh,
			AuthSecretRef: "anthropic-key", NodeSelector: map[string]string{"gpu-type": "a100"}},
		Mode:         v1alpha1.ModeTask,
		Parent:       &v1alpha1.ParentRef{RunName: "parent-run", SessionKey: "parent-session", SpawnDepth: 1},
		Skills:       []v1alpha1.SkillRef{{SkillPackRef: "k8s-ops"}},
		ToolPolicy:   &v1alpha1.ToolPolicy{Allow: []string{"read_file", "list_directory"}, Deny: []string{"execute_command"}},
		Timeout:      &metav1.Duration{Duration: 5 * time.Minute},
		Cleanup:      v1alpha1.CleanupKeep,
		Sandbox:      &v1alpha1.SandboxSpec{Enabled: true, Image: "custom-sandbox:v1"},
		AgentSandbox: &v1alpha1.AgentSandboxSpec{Enabled: false, RuntimeClass: "gvisor", WarmPoolRef: "wp-my-agent"},
		Env:          map[string]string{"MY_VAR": "my-value"},
	}
	assert.Equal(t, want, got.Spec)

	// And a fully populated object written through the typed client reads
	// back the same.
	full := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "typed", Namespace: ns},
		Spec:       *want.DeepCopy(),
	}
	full.Spec.Sandbox = &v1alpha1.SandboxSpec{Enabled: true, Image: "sb:1",
		SecurityContext: &corev1.SecurityContext{RunAsNonRoot: new(true), ReadOnlyRootFilesystem: new(true)},
		Resources:       &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}
	full.Spec.Skills = []v1alpha1.SkillRef{{SkillPackRef: "a", ConfigMapRef: "cm-a", Params: map[string]string{"k": "v"}}}
	created, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Create(context.Background(), full, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, full.Spec, created.Spec)
	read := e.getRun(t, ns, "typed")
	assert.Equal(t, full.Spec, read.Spec)
}

func TestDefaultsApplied(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.apply(t, minimalRun(ns, "defaults", ""))
	r := e.getRun(t, ns, "defaults")
	assert.Equal(t, v1alpha1.ModeTask, r.Spec.Mode)
	assert.Equal(t, v1alpha1.CleanupDelete, r.Spec.Cleanup)

	e.apply(t, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata: {name: inst, namespace: %s}
spec: {}
`, ns))
	inst, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(context.Background(), "inst", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, inst.Spec.RunHistoryLimit)
	assert.EqualValues(t, 50, *inst.Spec.RunHistoryLimit)
	s := inst.Spec.Agents.Default.Subagents
	require.NotNil(t, s.MaxDepth)
	require.NotNil(t, s.MaxConcurrent)
	require.NotNil(t, s.MaxChildrenPerAgent)
	assert.EqualValues(t, 2, *s.MaxDepth)
	assert.EqualValues(t, 5, *s.MaxConcurrent)
	assert.EqualValues(t, 3, *s.MaxChildrenPerAgent)
}

// minimalRun is a valid run; extra is appended under spec.
func minimalRun(ns, name, extra string) string {
	return fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: %s
  namespace: %s
spec:
  instanceRef: inst
  agentId: default
  sessionKey: s1
  task: do something
  model:
    provider: openai
    model: gpt-4o
%s`, name, ns, extra)
}

func TestInvalidRunsRejected(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	cases := []struct {
		name     string
		manifest string
		// want are substrings of kubectl's error: the field and the rule.
		want []string
	}{
		{"server with agent sandbox", minimalRun(ns, "x", "  mode: server\n  agentSandbox: {enabled: true}\n"),
			[]string{"spec.agentSandbox.enabled", "mode: server"}},
		{"spawnDepth zero", minimalRun(ns, "x", "  parent: {runName: p, spawnDepth: 0}\n"),
			[]string{"spec.parent.spawnDepth", "greater than or equal to 1"}},
		{"spawnDepth negative", minimalRun(ns, "x", "  parent: {runName: p, spawnDepth: -2}\n"),
			[]string{"spec.parent.spawnDepth", "greater than or equal to 1"}},
		{"timeout zero", minimalRun(ns, "x", "  timeout: 0s\n"), []string{"spec.timeout", "positive duration"}},
		{"timeout negative", minimalRun(ns, "x", "  timeout: -5m\n"), []string{"spec.timeout", "should match"}},
		{"timeout malformed", minimalRun(ns, "x", "  timeout: five minutes\n"), []string{"spec.timeout", "should match"}},
		{"timeout without unit", minimalRun(ns, "x", "  timeout: \"300\"\n"), []string{"spec.timeout", "should match"}},
		{"empty task", strings.Replace(minimalRun(ns, "x", ""), "task: do something", `task: ""`, 1),
			[]string{"spec.task", "at least 1 chars"}},
		{"missing task", strings.Replace(minimalRun(ns, "x", ""), "  task: do something\n", "", 1),
			[]string{"spec.task", "Required value"}},
		{"missing instanceRef", strings.Replace(minimalRun(ns, "x", ""), "  instanceRef: inst\n", "", 1),
			[]string{"spec.instanceRef", "Required value"}},
		{"missing model provider", strings.Replace(minimalRun(ns, "x", ""), "    provider: openai\n", "", 1),
			[]string{"spec.model.provider", "Required value"}},
		{"bad mode", minimalRun(ns, "x", "  mode: batch\n"), []string{"spec.mode", "Unsupported value", `"task", "server"`}},
		{"bad cleanup", minimalRun(ns, "x", "  cleanup: never\n"), []string{"spec.cleanup", "Unsupported value"}},
		{"bad thinking", strings.Replace(minimalRun(ns, "x", ""), "    model: gpt-4o\n", "    model: gpt-4o\n    thinking: max\n", 1),
			[]string{"spec.model.thinking", "Unsupported value"}},
		{"env overrides a contract variable", minimalRun(ns, "x", "  env: {TASK: other}\n"),
			[]string{"spec.env", "cannot override"}},
		{"env key invalid", minimalRun(ns, "x", "  env: {\"1 bad\": v}\n"), []string{"spec.env", "valid environment variable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.kubectlInput(tc.manifest, "apply", "-f", "-")
			require.Error(t, err, "accepted:\n%s", tc.manifest)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
		})
	}
	// Nothing was stored.
	out := e.kubectl(t, "get", "agentruns", "-n", ns, "-o", "name")
	assert.Empty(t, strings.TrimSpace(out))
}

func TestSpecImmutableInTaskMode(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.apply(t, minimalRun(ns, "imm", ""))
	out, err := e.kubectlErr("patch", "agentrun", "imm", "-n", ns, "--type=merge", "-p", `{"spec":{"task":"other"}}`)
	require.Error(t, err)
	assert.Contains(t, out, "immutable")
	e.apply(t, minimalRun(ns, "srv", "  mode: server\n"))
	e.kubectl(t, "patch", "agentrun", "srv", "-n", ns, "--type=merge", "-p", `{"spec":{"task":"other"}}`)
}

func TestPrinterColumnsAndCategory(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.apply(t, minimalRun(ns, "cols", ""))
	e.apply(t, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata: {name: inst, namespace: %[1]s}
---
apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata: {name: pack, namespace: %[1]s}
spec:
  skills: [{name: k8s, content: "# Kubernetes"}]
`, ns))
	// Status written through the status subresource shows in the columns.
	r := e.getRun(t, ns, "cols")
	r.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning, PodName: "cols-abcde",
		TokenUsage: &v1alpha1.TokenUsage{InputTokens: 10, OutputTokens: 5, TotalTokens: 15}}
	_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).UpdateStatus(context.Background(), r, metav1.UpdateOptions{})
	require.NoError(t, err)

	out := e.kubectl(t, "get", "agentruns", "-n", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, []string{"NAME", "INSTANCE", "PHASE", "POD", "TOKENS", "AGE"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"cols", "inst", "Running", "cols-abcde", "15"}, strings.Fields(lines[1])[:5])

	out = e.kubectl(t, "get", "sympozium", "-n", ns, "-o", "name")
	assert.ElementsMatch(t, []string{"agentrun.sympozium.ai/cols", "sympoziuminstance.sympozium.ai/inst", "skillpack.sympozium.ai/pack"},
		strings.Fields(out))

	out = e.kubectl(t, "explain", "agentrun.spec.timeout")
	assert.Contains(t, out, "counted from its creation")
}

// TestSamplesValid: every sample of manifests/samples is accepted by the
// real API server (server-side dry run, so the CRD schemas and CEL rules
// apply).
func TestSamplesValid(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	out := e.kubectl(t, "apply", "--dry-run=server", "-n", ns, "-f", e.root+"/manifests/samples")
	for _, want := range []string{"agentrun.sympozium.ai/check-cluster", "agentrun.sympozium.ai/chat-server",
		"agentrun.sympozium.ai/sandboxed-check", "agentrun.sympozium.ai/gvisor-check",
		"sympoziuminstance.sympozium.ai/my-agent", "skillpack.sympozium.ai/k8s-ops"} {
		assert.Contains(t, out, want)
	}
}
