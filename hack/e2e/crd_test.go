package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

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

// TestInvalidRunsRejected is the catalogue of bad runs: each gets exactly the
// messages listed, one per mistake, as the API server words them (kubectl
// prints the same lines). No CEL internals, and no "<nil>: Invalid value:
// null: some validation rules were not checked" line: required fields and
// allowed values are CEL rules, not the schema's required list and enums,
// because those would make the API server skip every CEL rule and say so.
func TestInvalidRunsRejected(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	without := func(line string) string {
		m := minimalRun(ns, "x", "")
		require.Contains(t, m, line)
		return strings.Replace(m, line, "", 1)
	}
	with := func(extra string) string { return minimalRun(ns, "x", extra) }
	model := func(extra string) string {
		return strings.Replace(minimalRun(ns, "x", ""), "    model: gpt-4o\n", "    model: gpt-4o\n"+extra, 1)
	}
	cases := []struct {
		name     string
		manifest string
		want     []string
	}{
		{"missing task", without("  task: do something\n"),
			[]string{"spec.task: Required value: task is required: the instruction given to the agent"}},
		{"empty task", strings.Replace(minimalRun(ns, "x", ""), "task: do something", `task: ""`, 1),
			[]string{`spec.task: Invalid value: "": spec.task in body should be at least 1 chars long`}},
		{"missing agentId", without("  agentId: default\n"),
			[]string{"spec.agentId: Required value: agentId is required: the agent of the instance (it may be empty)"}},
		{"missing sessionKey", without("  sessionKey: s1\n"),
			[]string{"spec.sessionKey: Required value: sessionKey is required: the conversation of the run (it may be empty)"}},
		{"missing instanceRef", without("  instanceRef: inst\n"),
			[]string{"spec.instanceRef: Required value: instanceRef is required: the SympoziumInstance the run belongs to"}},
		{"missing model", without("  model:\n    provider: openai\n    model: gpt-4o\n"),
			[]string{"spec.model: Required value: model is required: its provider and model name"}},
		{"missing model provider", without("    provider: openai\n"),
			[]string{"spec.model.provider: Required value: provider is required: openai, anthropic, azure-openai, ollama, ..."}},
		{"missing model name", without("    model: gpt-4o\n"),
			[]string{"spec.model.model: Required value: model is required: the provider's model name"}},
		{"bad thinking", model("    thinking: max\n"),
			[]string{`spec.model.thinking: Invalid value: "max": thinking must be off, low, medium or high`}},
		{"bad mode", with("  mode: batch\n"),
			[]string{`spec.mode: Invalid value: "batch": mode must be task or server`}},
		{"bad cleanup", with("  cleanup: never\n"),
			[]string{`spec.cleanup: Invalid value: "never": cleanup must be delete or keep`}},
		{"timeout malformed", with("  timeout: five minutes\n"),
			[]string{`spec.timeout: Invalid value: "five minutes": timeout must be a duration such as 90s, 5m or 1h30m`}},
		{"timeout without unit", with("  timeout: \"300\"\n"),
			[]string{`spec.timeout: Invalid value: "300": timeout must be a duration such as 90s, 5m or 1h30m`}},
		{"timeout negative", with("  timeout: -5m\n"),
			[]string{`spec.timeout: Invalid value: "-5m": timeout must be a duration such as 90s, 5m or 1h30m`}},
		{"timeout zero", with("  timeout: 0s\n"),
			[]string{`spec.timeout: Invalid value: "0s": timeout must be greater than zero`}},
		{"parent without runName", with("  parent: {spawnDepth: 1}\n"),
			[]string{"spec.parent.runName: Required value: runName is required: the parent AgentRun"}},
		{"parent without spawnDepth", with("  parent: {runName: p}\n"),
			[]string{"spec.parent.spawnDepth: Required value: spawnDepth is required: 1 for a direct child"}},
		{"spawnDepth zero", with("  parent: {runName: p, spawnDepth: 0}\n"),
			[]string{"spec.parent.spawnDepth: Invalid value: 0: spec.parent.spawnDepth in body should be greater than or equal to 1"}},
		{"spawnDepth negative", with("  parent: {runName: p, spawnDepth: -2}\n"),
			[]string{"spec.parent.spawnDepth: Invalid value: -2: spec.parent.spawnDepth in body should be greater than or equal to 1"}},
		{"server with agent sandbox", with("  mode: server\n  agentSandbox: {enabled: true}\n"),
			[]string{"spec.agentSandbox.enabled: Forbidden: agentSandbox.enabled is not supported with mode: server"}},
		{"env overrides a contract variable", with("  env: {TASK: other}\n"),
			[]string{"spec.env: Invalid value: env cannot override a variable the controller sets (AGENT_RUN_ID, TASK, MODEL_NAME, RUN_TIMEOUT, ...)"}},
		{"env key invalid", with("  env: {\"1 bad\": v}\n"),
			[]string{"spec.env: Invalid value: env keys must be valid environment variable names"}},
		{"retry beyond its bound", with("  retry: {infrastructure: 11}\n"),
			[]string{`spec.retry.infrastructure: Invalid value: 11: infrastructure must be between 0 and 10`}},
		{"negative retry", with("  retry: {infrastructure: -1}\n"),
			[]string{`spec.retry.infrastructure: Invalid value: -1: infrastructure must be between 0 and 10`}},
		{"retry of an agent sandbox", with("  retry: {infrastructure: 1}\n  agentSandbox: {enabled: true}\n"),
			[]string{"spec.retry.infrastructure: Forbidden: retry.infrastructure is not supported with agentSandbox.enabled: a lost sandbox pod fails the run"}},
		{"negative ttlSecondsAfterFinished", with("  ttlSecondsAfterFinished: -1\n"),
			[]string{`spec.ttlSecondsAfterFinished: Invalid value: -1: ttlSecondsAfterFinished must be 0 or more`}},
		{"skill with neither skillPackRef nor configMapRef", with("  skills: [{params: {k: v}}]\n"),
			[]string{"spec.skills[0]: Required value: a skill needs skillPackRef or configMapRef"}},
		{"two mistakes, two messages", with("  mode: batch\n  timeout: soon\n"),
			[]string{`spec.mode: Invalid value: "batch": mode must be task or server`,
				`spec.timeout: Invalid value: "soon": timeout must be a duration such as 90s, 5m or 1h30m`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.ElementsMatch(t, tc.want, e.rejections(t, tc.manifest))
		})
	}
	// Nothing was stored.
	out := e.kubectl(t, "get", "agentruns", "-n", ns, "-o", "name")
	assert.Empty(t, strings.TrimSpace(out))
}

// TestSkillConfigMapRefAlone: a skill given as a configMapRef alone, as
// sympozium's design document writes one and its CRD admits, is admitted on
// an instance and on a run, and kept as written (issue 24).
func TestSkillConfigMapRefAlone(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.apply(t, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: inst
  namespace: %s
spec:
  skills:
  - skillPackRef: k8s
  - skillPackRef: web
    configMapRef: web-cm
  - configMapRef: my-skills
`, ns))
	e.apply(t, minimalRun(ns, "r", "  skills: [{configMapRef: my-skills}]\n"))
	inst, err := e.client.SympoziumV1alpha1().SympoziumInstances(ns).Get(context.Background(), "inst", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, v1alpha1.SkillRef{ConfigMapRef: "my-skills"}, inst.Spec.Skills[2])
	run := e.getRun(t, ns, "r")
	assert.Equal(t, []v1alpha1.SkillRef{{ConfigMapRef: "my-skills"}}, run.Spec.Skills)
}

// rejections creates the object of manifest and returns the API server's
// reasons for refusing it, one "field: message" line per cause, as kubectl
// prints them.
func (e *env) rejections(t *testing.T, manifest string) []string {
	t.Helper()
	var obj map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(manifest), &obj))
	body, err := json.Marshal(obj)
	require.NoError(t, err)
	meta := obj["metadata"].(map[string]any)
	resource := strings.ToLower(obj["kind"].(string)) + "s" // AgentRun, SympoziumInstance
	err = e.client.SympoziumV1alpha1().RESTClient().Post().Namespace(meta["namespace"].(string)).
		Resource(resource).Body(body).SetHeader("Content-Type", "application/json").Do(context.Background()).Error()
	require.Error(t, err, "accepted:\n%s", manifest)
	var status apierrors.APIStatus
	require.True(t, errors.As(err, &status), "%v", err)
	var got []string
	for _, c := range status.Status().Details.Causes {
		got = append(got, c.Field+": "+c.Message)
	}
	require.NotEmpty(t, got, "%v", err)
	return got
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

	// spec.cancel is the one field of a task-mode run that may change, one
	// way only; cancelling does not open the other fields.
	out, err = e.kubectlErr("patch", "agentrun", "imm", "-n", ns, "--type=merge", "-p", `{"spec":{"cancel":true,"task":"other"}}`)
	require.Error(t, err)
	assert.Contains(t, out, "spec is immutable once created, except for runs in mode: server")
	e.kubectl(t, "patch", "agentrun", "imm", "-n", ns, "--type=merge", "-p", `{"spec":{"cancel":true}}`)
	e.kubectl(t, "patch", "agentrun", "imm", "-n", ns, "--type=merge", "-p", `{"spec":{"cancel":true}}`) // idempotent
	for _, undo := range []string{`{"spec":{"cancel":false}}`, `{"spec":{"cancel":null}}`} {
		out, err = e.kubectlErr("patch", "agentrun", "imm", "-n", ns, "--type=merge", "-p", undo)
		require.Error(t, err, undo)
		assert.Contains(t, out, "spec.cancel: Forbidden: cancel cannot be undone: a cancelled run stays cancelled", undo)
	}
	// A server-mode run too: its other fields stay mutable, cancel stays one-way.
	e.kubectl(t, "patch", "agentrun", "srv", "-n", ns, "--type=merge", "-p", `{"spec":{"cancel":true}}`)
	out, err = e.kubectlErr("patch", "agentrun", "srv", "-n", ns, "--type=merge", "-p", `{"spec":{"cancel":false}}`)
	require.Error(t, err)
	assert.Contains(t, out, "spec.cancel: Forbidden: cancel cannot be undone")
	assert.True(t, e.getRun(t, ns, "srv").Spec.Cancel)
}

// TestRunControlFieldsValidatedAndExplained: the run-control fields are
// documented for kubectl explain, and a bad maxConcurrentRuns is refused
// with the field named.
func TestRunControlFieldsValidatedAndExplained(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	out := e.kubectl(t, "explain", "agentrun.spec.cancel")
	assert.Contains(t, out, "cancel, set to true, stops the run and keeps its record")
	assert.Contains(t, out, "cannot be set back to false")
	out = e.kubectl(t, "explain", "sympoziuminstance.spec.maxConcurrentRuns")
	assert.Contains(t, out, "caps the instance's admitted, unfinished runs")
	assert.Contains(t, out, "WaitingForCapacity")

	for _, n := range []string{"0", "-3"} {
		assert.Equal(t, []string{"spec.maxConcurrentRuns: Invalid value: " + n + ": maxConcurrentRuns must be at least 1 (leave it unset for no limit)"},
			e.rejections(t, instanceYAML(ns, "bad", "  maxConcurrentRuns: "+n+"\n")), n)
	}
	// A type error is the schema's (the API server then adds its "some
	// validation rules were not checked" line, as for any wrong type).
	assert.Contains(t, e.rejections(t, minimalRun(ns, "x", "  cancel: yes please\n")),
		`spec.cancel: Invalid value: "string": spec.cancel in body must be of type boolean: "string"`)
	e.apply(t, instanceYAML(ns, "ok", "  maxConcurrentRuns: 1\n"))
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
	// A failed run shows the reason of its Failed condition.
	e.apply(t, minimalRun(ns, "failed", ""))
	r = e.getRun(t, ns, "failed")
	r.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseFailed, PodName: "failed-xyz",
		Conditions: []metav1.Condition{{Type: "Failed", Status: metav1.ConditionTrue, Reason: "Timeout",
			Message: "Timeout: the run did not finish within 10m", LastTransitionTime: metav1.Now()}}}
	_, err = e.client.SympoziumV1alpha1().AgentRuns(ns).UpdateStatus(context.Background(), r, metav1.UpdateOptions{})
	require.NoError(t, err)

	out := e.kubectl(t, "get", "agentruns", "-n", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Equal(t, []string{"NAME", "INSTANCE", "PHASE", "POD", "TOKENS", "REASON", "AGE"}, strings.Fields(lines[0]))
	// kubectl leaves an empty cell blank: read the cells by the header's offsets.
	cells := func(line string) []string {
		var got []string
		for _, col := range []string{"NAME", "INSTANCE", "PHASE", "POD", "TOKENS", "REASON"} {
			at := strings.Index(lines[0], col)
			got = append(got, strings.Fields(line[at:] + " ")[0:1]...)
			if line[at] == ' ' {
				got[len(got)-1] = ""
			}
		}
		return got
	}
	assert.Equal(t, []string{"cols", "inst", "Running", "cols-abcde", "15", ""}, cells(lines[1]))
	assert.Equal(t, []string{"failed", "inst", "Failed", "failed-xyz", "", "Timeout"}, cells(lines[2]))

	out = e.kubectl(t, "get", "sympozium", "-n", ns, "-o", "name")
	assert.ElementsMatch(t, []string{"agentrun.sympozium.ai/cols", "agentrun.sympozium.ai/failed", "sympoziuminstance.sympozium.ai/inst", "skillpack.sympozium.ai/pack"},
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
