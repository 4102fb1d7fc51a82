package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func TestTimeout(t *testing.T) {
	tests := map[string]struct {
		run  *v1alpha1.AgentRun
		inst *v1alpha1.SympoziumInstance
		def  time.Duration
		want time.Duration
	}{
		"run wins":                 {run: newRun(withTimeout(5 * time.Minute)), inst: newInstance(withRunTimeout(time.Hour)), def: time.Minute, want: 5 * time.Minute},
		"instance default":         {run: newRun(), inst: newInstance(withRunTimeout(time.Hour)), def: time.Minute, want: time.Hour},
		"no instance":              {run: newRun(), def: 3 * time.Minute, want: 3 * time.Minute},
		"instance without timeout": {run: newRun(), inst: newInstance(), def: 3 * time.Minute, want: 3 * time.Minute},
		"zero run timeout skipped": {run: newRun(withTimeout(0)), inst: newInstance(withRunTimeout(time.Hour)), def: time.Minute, want: time.Hour},
		"negative values skipped":  {run: newRun(withTimeout(-time.Second)), inst: newInstance(withRunTimeout(-time.Hour)), def: 2 * time.Minute, want: 2 * time.Minute},
		"no default":               {run: newRun(), def: 0, want: DefaultTimeout},
		"negative default":         {run: newRun(), def: -time.Minute, want: 10 * time.Minute},
		"nil run":                  {run: nil, inst: newInstance(withRunTimeout(time.Hour)), def: time.Minute, want: time.Hour},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Timeout(tc.run, tc.inst, tc.def)
			assert.Equal(t, tc.want, got)
			assert.Positive(t, got)
		})
	}
}

func TestDeadline(t *testing.T) {
	assert.Equal(t, t0.Add(10*time.Minute), Deadline(newRun(), nil, 10*time.Minute))
	assert.Equal(t, t0.Add(90*time.Second), Deadline(newRun(withTimeout(90*time.Second)), newInstance(withRunTimeout(time.Hour)), time.Minute))
	assert.Equal(t, t0.Add(time.Hour), Deadline(newRun(), newInstance(withRunTimeout(time.Hour)), time.Minute))
}

var traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestTraceParent(t *testing.T) {
	run := newRun()
	uid := string(run.UID)
	wantTrace := sha("trace/" + uid)[:32]
	wantSpan := sha("span/" + uid)[:16]

	traceID, tp := TraceParent(run)
	assert.Equal(t, wantTrace, traceID)
	assert.Equal(t, "00-"+wantTrace+"-"+wantSpan+"-01", tp)
	assert.Regexp(t, traceparentRE, tp)

	// deterministic, and independent of everything but the UID
	traceID2, tp2 := TraceParent(newRun(withName("other"), withTimeout(time.Hour)))
	assert.Equal(t, traceID, traceID2)
	assert.Equal(t, tp, tp2)

	// another UID, another trace
	other := newRun()
	other.UID = "6f1c9a52-0000-4000-8000-000000000002"
	otherTrace, otherTP := TraceParent(other)
	assert.NotEqual(t, traceID, otherTrace)
	assert.NotEqual(t, tp, otherTP)

	// no UID yet: falls back to namespace/name
	noUID := newRun()
	noUID.UID = ""
	nt, ntp := TraceParent(noUID)
	assert.Equal(t, sha("trace/team-a/run-1")[:32], nt)
	assert.Regexp(t, traceparentRE, ntp)
}

func TestTraceParentAnnotation(t *testing.T) {
	const parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanOf := func(r *v1alpha1.AgentRun) string { return sha("span/" + string(r.UID))[:16] }
	ownTrace := sha("trace/" + string(newRun().UID))[:32]
	tests := map[string]struct {
		value     string
		wantTrace string
	}{
		"valid":                   {value: "00-" + parentTrace + "-00f067aa0ba902b7-01", wantTrace: parentTrace},
		"valid, not sampled":      {value: "00-" + parentTrace + "-00f067aa0ba902b7-00", wantTrace: parentTrace},
		"surrounding space":       {value: " 00-" + parentTrace + "-00f067aa0ba902b7-01 ", wantTrace: parentTrace},
		"future version":          {value: "01-" + parentTrace + "-00f067aa0ba902b7-01-extra", wantTrace: parentTrace},
		"future version, no tail": {value: "cc-" + parentTrace + "-00f067aa0ba902b7-01", wantTrace: parentTrace},
		"version 00 with tail":    {value: "00-" + parentTrace + "-00f067aa0ba902b7-01-extra", wantTrace: ownTrace},
		"version ff":              {value: "ff-" + parentTrace + "-00f067aa0ba902b7-01", wantTrace: ownTrace},
		"upper case":              {value: "00-" + strings.ToUpper(parentTrace) + "-00f067aa0ba902b7-01", wantTrace: ownTrace},
		"zero trace":              {value: "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01", wantTrace: ownTrace},
		"zero span":               {value: "00-" + parentTrace + "-" + strings.Repeat("0", 16) + "-01", wantTrace: ownTrace},
		"short":                   {value: "00-" + parentTrace[:31] + "-00f067aa0ba902b7-01", wantTrace: ownTrace},
		"bad separators":          {value: "00_" + parentTrace + "_00f067aa0ba902b7_01", wantTrace: ownTrace},
		"not hex":                 {value: "00-" + parentTrace[:31] + "g-00f067aa0ba902b7-01", wantTrace: ownTrace},
		"bad flags":               {value: "00-" + parentTrace + "-00f067aa0ba902b7-0x", wantTrace: ownTrace},
		"empty":                   {value: "", wantTrace: ownTrace},
		"garbage":                 {value: "hello", wantTrace: ownTrace},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			run := newRun(withAnnotation(AnnotationTraceParent, tc.value))
			traceID, tp := TraceParent(run)
			assert.Equal(t, tc.wantTrace, traceID)
			assert.Equal(t, "00-"+tc.wantTrace+"-"+spanOf(run)+"-01", tp)
			assert.Regexp(t, traceparentRE, tp)
		})
	}
}

func TestNonZeroID(t *testing.T) {
	assert.Equal(t, "0000000000000001", nonZeroID("0000000000000000"))
	assert.Equal(t, "00000000000000000000000000000001", nonZeroID(strings.Repeat("0", 32)))
	assert.Equal(t, "0a00", nonZeroID("0a00"))
	assert.Equal(t, "", nonZeroID(""))
}

func TestSkillConfigMaps(t *testing.T) {
	tests := map[string]struct {
		in   Inputs
		want []string
	}{
		"none":          {in: Inputs{Run: newRun()}, want: nil},
		"none, no run":  {in: Inputs{}, want: nil},
		"run only":      {in: Inputs{Run: newRun(withSkills(v1alpha1.SkillRef{SkillPackRef: "web"}))}, want: []string{"web"}},
		"instance only": {in: Inputs{Run: newRun(), Instance: newInstance(withInstanceSkills(v1alpha1.SkillRef{SkillPackRef: "git"}))}, want: []string{"git"}},
		"merged, sorted, deduplicated, overridden": {
			in: Inputs{
				Run: newRun(withSkills(
					v1alpha1.SkillRef{SkillPackRef: "zeta"},
					v1alpha1.SkillRef{SkillPackRef: "web"},
					v1alpha1.SkillRef{SkillPackRef: "custom", ConfigMapRef: "custom-cm"},
					v1alpha1.SkillRef{SkillPackRef: ""},
				)),
				Instance: newInstance(withInstanceSkills(
					v1alpha1.SkillRef{SkillPackRef: "web"},
					v1alpha1.SkillRef{SkillPackRef: "alpha"},
				)),
			},
			want: []string{"alpha", "custom-cm", "web", "zeta"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, SkillConfigMaps(tc.in))
		})
	}
}

func TestLabels(t *testing.T) {
	assert.Equal(t, map[string]string{
		"app.kubernetes.io/managed-by": "sympozium-controller",
		"sympozium.ai/agent-run":       "run-1",
		"sympozium.ai/instance":        "inst",
		"sympozium.ai/component":       "agent",
	}, Labels(newRun()))

	long := strings.Repeat("r", 70)
	longInst := strings.Repeat("i", 100)
	l := Labels(newRun(withName(long), withInstanceRef(longInst)))
	assert.Equal(t, naming.JobName(long), l[v1alpha1.LabelAgentRun])
	assert.Equal(t, naming.JobName(longInst), l[v1alpha1.LabelInstance])
	for k, v := range l {
		assert.Empty(t, validation.IsValidLabelValue(v), "label %s=%q", k, v)
	}

	_, ok := Labels(newRun(withInstanceRef("")))[v1alpha1.LabelInstance]
	assert.False(t, ok, "no instance label without an instanceRef")
}

// TestPodTemplateGolden spells out the whole pod template of a run that
// uses most features.
func TestPodTemplateGolden(t *testing.T) {
	run := newRun(
		withParent("parent-run", "parent-sess", 2),
		withSkills(v1alpha1.SkillRef{SkillPackRef: "web"}, v1alpha1.SkillRef{SkillPackRef: "custom", ConfigMapRef: "custom-cm"}),
		withEnv("ZED", "z", "ALPHA", "a", "TASK", "overridden?", "RUN_TIMEOUT", "9999"),
		withNodeSelector("gpu", "a100", "zone", "run-zone"),
		withAnnotation(AnnotationTraceParent, "not-a-traceparent"),
	)
	run.Spec.SystemPrompt = "be brief"
	run.Spec.Model.BaseURL = "https://llm.internal/v1"
	run.Spec.Model.Thinking = v1alpha1.ThinkingHigh
	run.Spec.ToolPolicy = &v1alpha1.ToolPolicy{Allow: []string{"read", "search"}, Deny: []string{"shell"}}
	inst := newInstance(
		withAuthRefs(v1alpha1.AuthRef{Provider: "anthropic", Secret: "anthropic-key"}, v1alpha1.AuthRef{Provider: "openai", Secret: "openai-key"}),
		withDefaults("ignored", "https://ignored", v1alpha1.ThinkingLow, map[string]string{"zone": "inst-zone", "pool": "agents"}),
		withInstanceSkills(v1alpha1.SkillRef{SkillPackRef: "base"}),
	)
	_, tp := TraceParent(run)

	got, err := PodTemplate(testCfg, Inputs{Run: run, Instance: inst, Now: now})
	require.NoError(t, err)

	want := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{
			"app.kubernetes.io/managed-by": "sympozium-controller",
			"sympozium.ai/agent-run":       "run-1",
			"sympozium.ai/instance":        "inst",
			"sympozium.ai/component":       "agent",
		}},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(false),
			EnableServiceLinks:           new(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				RunAsUser:      new(int64(65532)),
				RunAsGroup:     new(int64(65532)),
				FSGroup:        new(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			NodeSelector: map[string]string{"gpu": "a100", "zone": "run-zone", "pool": "agents"},
			Volumes: []corev1.Volume{
				{Name: "workspace", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "ipc", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "skills", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "base"}, Optional: new(true)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "custom-cm"}, Optional: new(true)}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "web"}, Optional: new(true)}},
				}}}},
			},
			Containers: []corev1.Container{{
				Name:  "agent",
				Image: "ghcr.io/sympozium/agent-runner:v1",
				Env: []corev1.EnvVar{
					{Name: "AGENT_RUN_ID", Value: "run-1"},
					{Name: "AGENT_ID", Value: "default"},
					{Name: "SESSION_KEY", Value: "sess-1"},
					{Name: "INSTANCE_NAME", Value: "inst"},
					{Name: "AGENT_NAMESPACE", Value: "team-a"},
					{Name: "TASK", Value: "summarise the repo"},
					{Name: "SYSTEM_PROMPT", Value: "be brief"},
					{Name: "MODEL_PROVIDER", Value: "openai"},
					{Name: "MODEL_NAME", Value: "gpt-5"},
					{Name: "MODEL_BASE_URL", Value: "https://llm.internal/v1"},
					{Name: "THINKING_MODE", Value: "high"},
					{Name: "TOOLS_ENABLED", Value: "true"},
					{Name: "TOOL_POLICY_ALLOW", Value: "read,search"},
					{Name: "TOOL_POLICY_DENY", Value: "shell"},
					{Name: "RUN_TIMEOUT", Value: "8m29s"},
					{Name: "TRACEPARENT", Value: tp},
					{Name: "PARENT_RUN_NAME", Value: "parent-run"},
					{Name: "PARENT_SESSION_KEY", Value: "parent-sess"},
					{Name: "SPAWN_DEPTH", Value: "2"},
					{Name: "ALPHA", Value: "a"},
					{Name: "ZED", Value: "z"},
				},
				EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "openai-key"},
				}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "workspace", MountPath: "/workspace"},
					{Name: "tmp", MountPath: "/tmp"},
					{Name: "ipc", MountPath: "/ipc"},
					{Name: "skills", MountPath: "/skills", ReadOnly: true},
				},
				TerminationMessagePath:   "/dev/termination-log",
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					ReadOnlyRootFilesystem:   new(true),
					RunAsNonRoot:             new(true),
				},
			}},
		},
	}
	assert.Equal(t, want, got)
	assertRestricted(t, got.Spec)
}

func TestJob(t *testing.T) {
	run := newRun()
	job, err := Job(testCfg, Inputs{Run: run, Instance: newInstance(), Now: now})
	require.NoError(t, err)
	tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Instance: newInstance(), Now: now})
	require.NoError(t, err)

	want := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "run-1",
			Namespace: "team-a",
			Labels: map[string]string{
				"app.kubernetes.io/managed-by": "sympozium-controller",
				"sympozium.ai/agent-run":       "run-1",
				"sympozium.ai/instance":        "inst",
				"sympozium.ai/component":       "agent",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "sympozium.ai/v1alpha1",
				Kind:               "AgentRun",
				Name:               "run-1",
				UID:                run.UID,
				Controller:         new(true),
				BlockOwnerDeletion: new(true),
			}},
		},
		Spec: batchv1.JobSpec{
			// Two replacements of a pod the infrastructure broke (the
			// default); the agent's own exit fails the Job at once.
			BackoffLimit:     new(int32(2)),
			PodFailurePolicy: PodFailurePolicy(),
			Completions:      new(int32(1)),
			Parallelism:      new(int32(1)),
			// 10m timeout from t0, now = t0+90.5s: 509.5s left, rounded up, + 15s slack.
			ActiveDeadlineSeconds: new(int64(525)),
			PodReplacementPolicy:  new(batchv1.Failed),
			Template:              tmpl,
		},
	}
	assert.Equal(t, want, job)
	assert.Nil(t, job.Spec.TTLSecondsAfterFinished)
	assert.Equal(t, "8m29s", envMap(job.Spec.Template.Spec.Containers[0].Env)[EnvRunTimeout])
	// The Job's labels and the template's are equal but not the same map.
	job.Labels["x"] = "y"
	assert.NotContains(t, job.Spec.Template.Labels, "x")
}

func TestJobOwnerRefIgnoresEmptyTypeMeta(t *testing.T) {
	// Objects from an informer cache have an empty TypeMeta; the owner
	// reference must still name the kind.
	run := newRun()
	run.TypeMeta = metav1.TypeMeta{}
	job, err := Job(testCfg, Inputs{Run: run, Now: now})
	require.NoError(t, err)
	require.Len(t, job.OwnerReferences, 1)
	ref := job.OwnerReferences[0]
	assert.Equal(t, "sympozium.ai/v1alpha1", ref.APIVersion)
	assert.Equal(t, "AgentRun", ref.Kind)
	assert.True(t, *ref.Controller)
}

func TestDeadlines(t *testing.T) {
	tests := map[string]struct {
		run        *v1alpha1.AgentRun
		inst       *v1alpha1.SympoziumInstance
		cfg        Config
		now        time.Time
		runTimeout string
		active     int64
	}{
		"just created":        {run: newRun(), cfg: testCfg, now: t0, runTimeout: "10m0s", active: 615},
		"fraction left":       {run: newRun(), cfg: testCfg, now: now, runTimeout: "8m29s", active: 525},
		"run timeout":         {run: newRun(withTimeout(90 * time.Second)), cfg: testCfg, now: t0.Add(30 * time.Second), runTimeout: "1m0s", active: 75},
		"instance timeout":    {run: newRun(), inst: newInstance(withRunTimeout(time.Hour)), cfg: testCfg, now: t0, runTimeout: "1h0m0s", active: 3615},
		"under a second left": {run: newRun(), cfg: testCfg, now: t0.Add(10*time.Minute - time.Millisecond), runTimeout: "1s", active: 16},
		"at the deadline":     {run: newRun(), cfg: testCfg, now: t0.Add(10 * time.Minute), runTimeout: "1s", active: 15},
		"past the deadline":   {run: newRun(), cfg: testCfg, now: t0.Add(10*time.Minute + 5*time.Second), runTimeout: "1s", active: 10},
		"long past":           {run: newRun(), cfg: testCfg, now: t0.Add(time.Hour), runTimeout: "1s", active: 1},
		"no slack":            {run: newRun(), cfg: Config{AgentImage: "a"}, now: now, runTimeout: "8m29s", active: 510},
		"negative slack":      {run: newRun(), cfg: Config{AgentImage: "a", DeadlineSlack: -time.Minute}, now: now, runTimeout: "8m29s", active: 510},
		"fractional slack":    {run: newRun(), cfg: Config{AgentImage: "a", DeadlineSlack: 1500 * time.Millisecond}, now: t0, runTimeout: "10m0s", active: 602},
		"no default timeout":  {run: newRun(), cfg: Config{AgentImage: "a"}, now: t0, runTimeout: "10m0s", active: 600},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			job, err := Job(tc.cfg, Inputs{Run: tc.run, Instance: tc.inst, Now: tc.now})
			require.NoError(t, err, "a run past its deadline is not an error")
			assert.Equal(t, tc.active, *job.Spec.ActiveDeadlineSeconds)
			assert.Equal(t, tc.runTimeout, envMap(job.Spec.Template.Spec.Containers[0].Env)[EnvRunTimeout])
		})
	}
}

func TestEnvOrderAndNoOverride(t *testing.T) {
	base := []string{
		"AGENT_RUN_ID", "AGENT_ID", "SESSION_KEY", "INSTANCE_NAME", "AGENT_NAMESPACE", "TASK",
		"SYSTEM_PROMPT", "MODEL_PROVIDER", "MODEL_NAME", "MODEL_BASE_URL", "THINKING_MODE",
		"TOOLS_ENABLED", "TOOL_POLICY_ALLOW", "TOOL_POLICY_DENY", "RUN_TIMEOUT", "TRACEPARENT",
	}
	sub := []string{"PARENT_RUN_NAME", "PARENT_SESSION_KEY", "SPAWN_DEPTH"}
	assert.Equal(t, append(append([]string{}, base...), sub...), ReservedEnv)

	// every reserved name in spec.env, plus a few extras
	kv := []string{"b_var", "2", "A_VAR", "1", "z.var", "3"}
	for _, n := range ReservedEnv {
		kv = append(kv, n, "evil")
	}
	tests := map[string]struct {
		run       *v1alpha1.AgentRun
		wantNames []string
	}{
		"top-level": {run: newRun(withEnv(kv...)), wantNames: append(append([]string{}, base...), "A_VAR", "b_var", "z.var")},
		"sub-agent": {
			run:       newRun(withEnv(kv...), withParent("p", "ps", 1)),
			wantNames: append(append(append([]string{}, base...), sub...), "A_VAR", "b_var", "z.var"),
		},
		"no spec.env": {run: newRun(), wantNames: base},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl, err := PodTemplate(testCfg, Inputs{Run: tc.run, Now: now})
			require.NoError(t, err)
			env := tmpl.Spec.Containers[0].Env
			assert.Equal(t, tc.wantNames, envNames(env))
			for _, e := range env {
				assert.NotEqual(t, "evil", e.Value, "%s was overridden by spec.env", e.Name)
				assert.Nil(t, e.ValueFrom)
			}
			m := envMap(env)
			assert.Equal(t, "summarise the repo", m[EnvTask])
			assert.Equal(t, "true", m[EnvToolsEnabled])
		})
	}
}

func TestEnvValues(t *testing.T) {
	tests := map[string]struct {
		run  *v1alpha1.AgentRun
		inst *v1alpha1.SympoziumInstance
		want map[string]string
	}{
		"defaults without instance": {
			run:  newRun(),
			want: map[string]string{EnvModelBaseURL: "", EnvThinkingMode: "off", EnvToolPolicyAllow: "", EnvToolPolicyDeny: "", EnvSystemPrompt: "", EnvModelName: "gpt-5"},
		},
		"instance defaults fill gaps": {
			run:  newRun(),
			inst: newInstance(withDefaults("inst-model", "http://inst", v1alpha1.ThinkingMedium, nil)),
			want: map[string]string{EnvModelBaseURL: "http://inst", EnvThinkingMode: "medium", EnvModelName: "gpt-5"},
		},
		"instance model when the run has none": {
			run:  newRun(func(r *v1alpha1.AgentRun) { r.Spec.Model.Model = "" }),
			inst: newInstance(withDefaults("inst-model", "", "", nil)),
			want: map[string]string{EnvModelName: "inst-model", EnvThinkingMode: "off"},
		},
		"run wins": {
			run: newRun(func(r *v1alpha1.AgentRun) {
				r.Spec.Model.BaseURL = "http://run"
				r.Spec.Model.Thinking = v1alpha1.ThinkingLow
			}),
			inst: newInstance(withDefaults("inst-model", "http://inst", v1alpha1.ThinkingHigh, nil)),
			want: map[string]string{EnvModelBaseURL: "http://run", EnvThinkingMode: "low"},
		},
		"tool policy joined": {
			run: newRun(func(r *v1alpha1.AgentRun) {
				r.Spec.ToolPolicy = &v1alpha1.ToolPolicy{Allow: []string{"a", " b ", "", "c"}, Deny: []string{"x", "y"}}
			}),
			want: map[string]string{EnvToolPolicyAllow: "a,b,c", EnvToolPolicyDeny: "x,y"},
		},
		"sub-agent": {
			run:  newRun(withParent("parent", "", 3)),
			want: map[string]string{EnvParentRunName: "parent", EnvParentSessionKey: "", EnvSpawnDepth: "3"},
		},
		"identity": {
			run: newRun(withName("r.x"), withInstanceRef("my-inst")),
			want: map[string]string{EnvAgentRunID: "r.x", EnvAgentID: "default", EnvSessionKey: "sess-1",
				EnvInstanceName: "my-inst", EnvAgentNamespace: "team-a", EnvModelProvider: "openai"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl, err := PodTemplate(testCfg, Inputs{Run: tc.run, Instance: tc.inst, Now: now})
			require.NoError(t, err)
			m := envMap(tmpl.Spec.Containers[0].Env)
			for k, v := range tc.want {
				got, ok := m[k]
				assert.True(t, ok, "%s not set", k)
				assert.Equal(t, v, got, k)
			}
		})
	}
}

func TestAuthSecret(t *testing.T) {
	tests := map[string]struct {
		run  *v1alpha1.AgentRun
		inst *v1alpha1.SympoziumInstance
		want string
	}{
		"run ref wins": {
			run:  newRun(func(r *v1alpha1.AgentRun) { r.Spec.Model.AuthSecretRef = "my-key" }),
			inst: newInstance(withAuthRefs(v1alpha1.AuthRef{Provider: "openai", Secret: "inst-key"})),
			want: "my-key",
		},
		"instance by provider": {
			run:  newRun(),
			inst: newInstance(withAuthRefs(v1alpha1.AuthRef{Provider: "anthropic", Secret: "a-key"}, v1alpha1.AuthRef{Provider: "openai", Secret: "o-key"})),
			want: "o-key",
		},
		"exact match before case-insensitive": {
			run:  newRun(),
			inst: newInstance(withAuthRefs(v1alpha1.AuthRef{Provider: "OpenAI", Secret: "fold-key"}, v1alpha1.AuthRef{Provider: "openai", Secret: "exact-key"})),
			want: "exact-key",
		},
		"case-insensitive fallback": {
			run:  newRun(),
			inst: newInstance(withAuthRefs(v1alpha1.AuthRef{Provider: "OpenAI", Secret: "fold-key"})),
			want: "fold-key",
		},
		"no matching provider": {
			run:  newRun(),
			inst: newInstance(withAuthRefs(v1alpha1.AuthRef{Provider: "anthropic", Secret: "a-key"})),
			want: "",
		},
		"no instance":  {run: newRun(), want: ""},
		"keyless":      {run: newRun(func(r *v1alpha1.AgentRun) { r.Spec.Model.Provider = "ollama" }), inst: newInstance(), want: ""},
		"empty secret": {run: newRun(), inst: newInstance(withAuthRefs(v1alpha1.AuthRef{Provider: "openai"})), want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, AuthSecretName(tc.run, tc.inst))
			tmpl, err := PodTemplate(testCfg, Inputs{Run: tc.run, Instance: tc.inst, Now: now})
			require.NoError(t, err)
			agent := tmpl.Spec.Containers[0]
			if tc.want == "" {
				assert.Empty(t, agent.EnvFrom)
			} else {
				assert.Equal(t, []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: tc.want},
				}}}, agent.EnvFrom)
			}
			// by reference only: no env var carries or points into a Secret
			for _, e := range agent.Env {
				assert.Nil(t, e.ValueFrom, e.Name)
			}
			for _, v := range tmpl.Spec.Volumes {
				assert.Nil(t, v.Secret, "no Secret volume")
			}
		})
	}
}

func TestNodeSelector(t *testing.T) {
	tests := map[string]struct {
		run  *v1alpha1.AgentRun
		inst *v1alpha1.SympoziumInstance
		want map[string]string
	}{
		"none":          {run: newRun(), inst: newInstance(), want: nil},
		"run only":      {run: newRun(withNodeSelector("a", "1")), want: map[string]string{"a": "1"}},
		"instance only": {run: newRun(), inst: newInstance(withDefaults("", "", "", map[string]string{"b": "2"})), want: map[string]string{"b": "2"}},
		"run overlays instance": {
			run:  newRun(withNodeSelector("a", "run", "c", "3")),
			inst: newInstance(withDefaults("", "", "", map[string]string{"a": "inst", "b": "2"})),
			want: map[string]string{"a": "run", "b": "2", "c": "3"},
		},
		"empty maps": {
			run:  newRun(withNodeSelector()),
			inst: newInstance(withDefaults("", "", "", map[string]string{})),
			want: nil,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl, err := PodTemplate(testCfg, Inputs{Run: tc.run, Instance: tc.inst, Now: now})
			require.NoError(t, err)
			assert.Equal(t, tc.want, tmpl.Spec.NodeSelector)
		})
	}
}

func TestLongNames(t *testing.T) {
	long := strings.Repeat("a", 40) + "." + strings.Repeat("b", 100)
	longInst := strings.Repeat("i", 200)
	job, err := Job(testCfg, Inputs{Run: newRun(withName(long), withInstanceRef(longInst)), Now: now})
	require.NoError(t, err)
	assert.Equal(t, naming.JobName(long), job.Name)
	assert.Len(t, job.Name, 63)
	assert.Empty(t, validation.IsDNS1123Subdomain(job.Name))
	for _, labels := range []map[string]string{job.Labels, job.Spec.Template.Labels} {
		assert.Equal(t, naming.JobName(long), labels[v1alpha1.LabelAgentRun])
		assert.Equal(t, naming.JobName(longInst), labels[v1alpha1.LabelInstance])
		for k, v := range labels {
			assert.Empty(t, validation.IsValidLabelValue(v), "%s=%q", k, v)
		}
	}
	// the env keeps the full names
	m := envMap(job.Spec.Template.Spec.Containers[0].Env)
	assert.Equal(t, long, m[EnvAgentRunID])
	assert.Equal(t, longInst, m[EnvInstanceName])
	assert.Equal(t, long, job.OwnerReferences[0].Name)
}

func TestSkillsVolume(t *testing.T) {
	t.Run("no skills, no volume", func(t *testing.T) {
		tmpl, err := PodTemplate(testCfg, Inputs{Run: newRun(), Now: now})
		require.NoError(t, err)
		for _, v := range tmpl.Spec.Volumes {
			assert.NotEqual(t, SkillsVolume, v.Name)
		}
		for _, m := range tmpl.Spec.Containers[0].VolumeMounts {
			assert.NotEqual(t, SkillsPath, m.MountPath)
		}
		assert.Equal(t, []string{"workspace", "tmp", "ipc"}, volumeNames(tmpl.Spec))
	})
	t.Run("a configMapRef alone mounts its ConfigMap, as the original does", func(t *testing.T) {
		run := newRun(withSkills(v1alpha1.SkillRef{ConfigMapRef: "my-skills"}))
		tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Now: now})
		require.NoError(t, err)
		require.Equal(t, []string{"workspace", "tmp", "ipc", "skills"}, volumeNames(tmpl.Spec))
		proj := tmpl.Spec.Volumes[3].Projected
		require.NotNil(t, proj)
		require.Len(t, proj.Sources, 1)
		assert.Equal(t, "my-skills", proj.Sources[0].ConfigMap.Name)
		assert.True(t, *proj.Sources[0].ConfigMap.Optional)
		assert.Empty(t, SkillPackNames(Inputs{Run: run}), "no SkillPack is looked up")
	})
	t.Run("projected, read-only, optional", func(t *testing.T) {
		run := newRun(withSkills(v1alpha1.SkillRef{SkillPackRef: "b"}, v1alpha1.SkillRef{SkillPackRef: "a", ConfigMapRef: "a-override"}, v1alpha1.SkillRef{SkillPackRef: "b"}))
		tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Now: now})
		require.NoError(t, err)
		require.Equal(t, []string{"workspace", "tmp", "ipc", "skills"}, volumeNames(tmpl.Spec))
		proj := tmpl.Spec.Volumes[3].Projected
		require.NotNil(t, proj)
		var names []string
		for _, s := range proj.Sources {
			require.NotNil(t, s.ConfigMap)
			assert.Empty(t, s.ConfigMap.Items, "all keys")
			require.NotNil(t, s.ConfigMap.Optional)
			assert.True(t, *s.ConfigMap.Optional)
			names = append(names, s.ConfigMap.Name)
		}
		assert.Equal(t, []string{"a-override", "b"}, names)
		assert.Contains(t, tmpl.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "skills", MountPath: "/skills", ReadOnly: true})
	})
}

func volumeNames(spec corev1.PodSpec) []string {
	var out []string
	for _, v := range spec.Volumes {
		out = append(out, v.Name)
	}
	return out
}

func TestSandboxSidecar(t *testing.T) {
	restricted := &corev1.SecurityContext{
		AllowPrivilegeEscalation: new(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		ReadOnlyRootFilesystem:   new(true),
		RunAsNonRoot:             new(true),
	}
	tests := map[string]struct {
		sb        *v1alpha1.SandboxSpec
		cfg       Config
		wantImage string
		wantSC    *corev1.SecurityContext
		wantRes   corev1.ResourceRequirements
		wantErr   string
		absent    bool
	}{
		"disabled":      {sb: &v1alpha1.SandboxSpec{Enabled: false, Image: "x"}, cfg: testCfg, absent: true},
		"default image": {sb: &v1alpha1.SandboxSpec{Enabled: true}, cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1", wantSC: restricted},
		"own image and resources": {
			sb:  &v1alpha1.SandboxSpec{Enabled: true, Image: "my/sandbox:2", Resources: resources("100m", "64Mi")},
			cfg: testCfg, wantImage: "my/sandbox:2", wantSC: restricted, wantRes: *resources("100m", "64Mi"),
		},
		"no image at all": {sb: &v1alpha1.SandboxSpec{Enabled: true}, cfg: Config{AgentImage: "a"}, wantErr: "sandbox"},
		"user values win, unset stay restricted": {
			sb: &v1alpha1.SandboxSpec{Enabled: true, SecurityContext: &corev1.SecurityContext{
				ReadOnlyRootFilesystem: new(false),
				RunAsUser:              new(int64(1000)),
				Capabilities:           &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}},
			}},
			cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1",
			wantSC: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem:   new(false),
				RunAsNonRoot:             new(true),
				RunAsUser:                new(int64(1000)),
			},
		},
		"user drop list wins": {
			sb: &v1alpha1.SandboxSpec{Enabled: true, SecurityContext: &corev1.SecurityContext{
				Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: new("sandbox.json")},
			}},
			cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1",
			wantSC: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}},
				ReadOnlyRootFilesystem:   new(true),
				RunAsNonRoot:             new(true),
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: new("sandbox.json")},
			},
		},
		"privileged keeps the pod valid": {
			sb:  &v1alpha1.SandboxSpec{Enabled: true, SecurityContext: &corev1.SecurityContext{Privileged: new(true)}},
			cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1",
			wantSC: &corev1.SecurityContext{
				Privileged:             new(true),
				Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem: new(true),
				RunAsNonRoot:           new(true),
			},
		},
		"SYS_ADMIN keeps the pod valid": {
			sb:  &v1alpha1.SandboxSpec{Enabled: true, SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}},
			cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1",
			wantSC: &corev1.SecurityContext{
				Capabilities:           &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}, Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem: new(true),
				RunAsNonRoot:           new(true),
			},
		},
		"explicit escalation false with privileged is the user's": {
			sb:  &v1alpha1.SandboxSpec{Enabled: true, SecurityContext: &corev1.SecurityContext{Privileged: new(true), AllowPrivilegeEscalation: new(true)}},
			cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1",
			wantSC: &corev1.SecurityContext{
				Privileged:               new(true),
				AllowPrivilegeEscalation: new(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem:   new(true),
				RunAsNonRoot:             new(true),
			},
		},
		"root user can start": {
			sb:  &v1alpha1.SandboxSpec{Enabled: true, SecurityContext: &corev1.SecurityContext{RunAsUser: new(int64(0))}},
			cfg: testCfg, wantImage: "ghcr.io/sympozium/sandbox:v1",
			wantSC: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem:   new(true),
				RunAsNonRoot:             new(false),
				RunAsUser:                new(int64(0)),
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			run := newRun(withSandbox(tc.sb))
			before := run.DeepCopy()
			tmpl, err := PodTemplate(tc.cfg, Inputs{Run: run, Now: now})
			assert.Equal(t, before, run, "input mutated")
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			c := container(tmpl.Spec, SandboxContainerName)
			if tc.absent {
				assert.Nil(t, c)
				assert.Len(t, tmpl.Spec.Containers, 1)
				return
			}
			require.NotNil(t, c)
			assert.Equal(t, "agent", tmpl.Spec.Containers[0].Name, "the agent comes first")
			assert.Equal(t, tc.wantImage, c.Image)
			assert.Equal(t, tc.wantSC, c.SecurityContext)
			assert.Equal(t, tc.wantRes, c.Resources)
			assert.Equal(t, scratchMounts(), c.VolumeMounts)
			assert.Empty(t, c.Env, "the sandbox gets none of the agent's env")
			assert.Empty(t, c.EnvFrom, "nor its API key")
		})
	}
}

func TestSkillSidecars(t *testing.T) {
	longPack := strings.Repeat("p", 80)
	packs := map[string]*v1alpha1.SkillPack{
		"web": newSkillPack("web", &v1alpha1.SkillSidecar{
			Image:          "ghcr.io/x/browser:1",
			Command:        []string{"/browser", "--headless"},
			Env:            []corev1.EnvVar{{Name: "MODE", Value: "fast"}},
			Resources:      &v1alpha1.SidecarResources{CPU: "200m", Memory: "256Mi"},
			MountWorkspace: new(true),
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 9222, Protocol: corev1.ProtocolTCP}},
		}),
		"git":      newSkillPack("git", nil), // no sidecar
		"alpha.v1": newSkillPack("alpha.v1", &v1alpha1.SkillSidecar{Image: "a:1"}),
		longPack:   newSkillPack(longPack, &v1alpha1.SkillSidecar{Image: "l:1"}),
		"unused":   newSkillPack("unused", &v1alpha1.SkillSidecar{Image: "u:1"}),
	}
	run := newRun(
		withSkills(
			v1alpha1.SkillRef{SkillPackRef: "web", ConfigMapRef: "web-cm"},
			v1alpha1.SkillRef{SkillPackRef: "missing"},
			v1alpha1.SkillRef{SkillPackRef: longPack},
			v1alpha1.SkillRef{SkillPackRef: "git"},
		),
		withSandbox(&v1alpha1.SandboxSpec{Enabled: true}),
	)
	inst := newInstance(withInstanceSkills(v1alpha1.SkillRef{SkillPackRef: "web"}, v1alpha1.SkillRef{SkillPackRef: "alpha.v1"}))
	in := Inputs{Run: run, Instance: inst, SkillPacks: packs, Now: now}

	tmpl, err := PodTemplate(testCfg, in)
	require.NoError(t, err)
	var names []string
	for _, c := range tmpl.Spec.Containers {
		names = append(names, c.Name)
		assert.Empty(t, validation.IsDNS1123Label(c.Name), c.Name)
	}
	// agent, sandbox, then sidecars by pack name; one per pack however often referenced
	assert.Equal(t, []string{
		"agent", "sandbox",
		naming.SkillContainerName("alpha.v1"),
		naming.SkillContainerName(longPack),
		"skill-web",
	}, names)
	assert.Len(t, names[3], 63)

	web := container(tmpl.Spec, "skill-web")
	require.NotNil(t, web)
	assert.Equal(t, corev1.Container{
		Name:      "skill-web",
		Image:     "ghcr.io/x/browser:1",
		Command:   []string{"/browser", "--headless"},
		Env:       []corev1.EnvVar{{Name: "MODE", Value: "fast"}},
		Resources: corev1.ResourceRequirements{Requests: *resourceList("200m", "256Mi"), Limits: *resourceList("200m", "256Mi")},
		Ports:     []corev1.ContainerPort{{Name: "http", ContainerPort: 9222, Protocol: corev1.ProtocolTCP}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: IPCVolume, MountPath: IPCPath}, {Name: TmpVolume, MountPath: TmpPath}, {Name: WorkspaceVolume, MountPath: WorkspacePath},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          restrictedContainerSecurityContext(),
	}, *web)
	assertRestricted(t, tmpl.Spec)

	t.Run("sidecar without image", func(t *testing.T) {
		bad := map[string]*v1alpha1.SkillPack{"web": newSkillPack("web", &v1alpha1.SkillSidecar{})}
		_, err := PodTemplate(testCfg, Inputs{Run: run, SkillPacks: bad, Now: now})
		require.ErrorContains(t, err, "SkillPack web")
	})
	t.Run("nil map", func(t *testing.T) {
		tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Instance: inst, Now: now})
		require.NoError(t, err)
		assert.Len(t, tmpl.Spec.Containers, 2)
	})
	t.Run("outputs do not alias inputs", func(t *testing.T) {
		before := make(map[string]*v1alpha1.SkillPack, len(packs))
		for k, v := range packs {
			before[k] = v.DeepCopy()
		}
		tmpl, err := PodTemplate(testCfg, in)
		require.NoError(t, err)
		w := container(tmpl.Spec, "skill-web")
		w.Command[0] = "changed"
		w.Env[0].Value = "changed"
		w.Ports[0].ContainerPort = 1
		w.Resources.Requests[corev1.ResourceCPU] = w.Resources.Limits[corev1.ResourceMemory]
		assert.Equal(t, before, packs)
	})
}

func TestAgentSandbox(t *testing.T) {
	run := newRun(withAgentSandbox(&v1alpha1.AgentSandboxSpec{Enabled: true, RuntimeClass: "gvisor", Resources: resources("1", "1Gi")}))
	tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Now: now})
	require.NoError(t, err)
	require.NotNil(t, tmpl.Spec.RuntimeClassName)
	assert.Equal(t, "gvisor", *tmpl.Spec.RuntimeClassName)
	assert.Equal(t, *resources("1", "1Gi"), tmpl.Spec.Containers[0].Resources)
	assertRestricted(t, tmpl.Spec)

	for name, as := range map[string]*v1alpha1.AgentSandboxSpec{
		"disabled":         {Enabled: false, RuntimeClass: "gvisor", Resources: resources("1", "1Gi")},
		"no runtime class": {Enabled: true},
	} {
		t.Run(name, func(t *testing.T) {
			tmpl, err := PodTemplate(testCfg, Inputs{Run: newRun(withAgentSandbox(as)), Now: now})
			require.NoError(t, err)
			assert.Nil(t, tmpl.Spec.RuntimeClassName)
			assert.Equal(t, corev1.ResourceRequirements{}, tmpl.Spec.Containers[0].Resources)
		})
	}
}

func TestServerModeRestartPolicy(t *testing.T) {
	run := newRun(func(r *v1alpha1.AgentRun) { r.Spec.Mode = v1alpha1.ModeServer })
	tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Now: now})
	require.NoError(t, err)
	assert.Equal(t, corev1.RestartPolicyAlways, tmpl.Spec.RestartPolicy)

	for _, mode := range []v1alpha1.AgentRunMode{"", v1alpha1.ModeTask} {
		run := newRun(func(r *v1alpha1.AgentRun) { r.Spec.Mode = mode })
		tmpl, err := PodTemplate(testCfg, Inputs{Run: run, Now: now})
		require.NoError(t, err)
		assert.Equal(t, corev1.RestartPolicyNever, tmpl.Spec.RestartPolicy, "mode %q", mode)
	}
}

func TestErrors(t *testing.T) {
	tests := map[string]struct {
		cfg  Config
		in   Inputs
		want string
	}{
		"no run":         {cfg: testCfg, in: Inputs{Now: now}, want: "no AgentRun"},
		"no agent image": {cfg: Config{SandboxImage: "s"}, in: Inputs{Run: newRun(), Now: now}, want: "agent image"},
		"no clock":       {cfg: testCfg, in: Inputs{Run: newRun()}, want: "current time"},
		"task too long for execve": {
			cfg:  testCfg,
			in:   Inputs{Run: newRun(func(r *v1alpha1.AgentRun) { r.Spec.Task = strings.Repeat("x", 128*1024-len("TASK=")) }), Now: now},
			want: "environment variable TASK",
		},
		"spec.env too long": {
			cfg:  testCfg,
			in:   Inputs{Run: newRun(withEnv("BIG", strings.Repeat("x", 200*1024))), Now: now},
			want: "environment variable BIG",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl, err := PodTemplate(tc.cfg, tc.in)
			require.ErrorContains(t, err, tc.want)
			assert.Equal(t, corev1.PodTemplateSpec{}, tmpl)
			job, err := Job(tc.cfg, tc.in)
			require.ErrorContains(t, err, tc.want)
			assert.Nil(t, job)
		})
	}
	// the longest task that fits
	_, err := PodTemplate(testCfg, Inputs{Run: newRun(func(r *v1alpha1.AgentRun) { r.Spec.Task = strings.Repeat("x", 128*1024-len("TASK=")-1) }), Now: now})
	assert.NoError(t, err)
}

// fullInputs uses every map and list the builder reads, with many keys, so
// that map-order dependence would show.
func fullInputs() Inputs {
	env := []string{}
	ns := map[string]string{}
	instNS := map[string]string{}
	var skills []v1alpha1.SkillRef
	packs := map[string]*v1alpha1.SkillPack{}
	for i := range 30 {
		k := string(rune('a'+i%26)) + strings.Repeat("k", i/26+1)
		env = append(env, "VAR_"+strings.ToUpper(k), k)
		ns["n/"+k] = k
		instNS["n/"+k] = "inst"
		instNS["i/"+k] = k
		name := "pack-" + k
		skills = append(skills, v1alpha1.SkillRef{SkillPackRef: name, Params: map[string]string{"a": "1", "b": "2"}})
		packs[name] = newSkillPack(name, &v1alpha1.SkillSidecar{Image: name + ":1"})
	}
	run := newRun(withEnv(env...), withSkills(skills...), withSandbox(&v1alpha1.SandboxSpec{Enabled: true}))
	run.Spec.Model.NodeSelector = ns
	run.Labels = map[string]string{"x": "1", "y": "2", "z": "3"}
	inst := newInstance(withDefaults("", "", "", instNS), withInstanceSkills(skills[3:9]...))
	return Inputs{Run: run, Instance: inst, SkillPacks: packs, Now: now}
}

func TestDeterministic(t *testing.T) {
	first, err := Job(testCfg, fullInputs())
	require.NoError(t, err)
	for range 20 {
		again, err := Job(testCfg, fullInputs())
		require.NoError(t, err)
		require.Equal(t, first, again)
	}
	assert.Len(t, first.Spec.Template.Spec.Containers, 32) // agent, sandbox, 30 skill sidecars
}

func TestPure(t *testing.T) {
	in := fullInputs()
	in.Run.Spec.AgentSandbox = nil
	in.Run.Spec.Parent = &v1alpha1.ParentRef{RunName: "p", SpawnDepth: 1}
	in.Run.Spec.Sandbox.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}}
	in.Run.Spec.Sandbox.Resources = resources("1", "1Gi")
	in.Instance.Spec.AuthRefs = []v1alpha1.AuthRef{{Provider: "openai", Secret: "k"}}
	run, inst := in.Run.DeepCopy(), in.Instance.DeepCopy()
	packs := map[string]*v1alpha1.SkillPack{}
	for k, v := range in.SkillPacks {
		packs[k] = v.DeepCopy()
	}

	job, err := Job(testCfg, in)
	require.NoError(t, err)
	assert.Equal(t, run, in.Run)
	assert.Equal(t, inst, in.Instance)
	assert.Equal(t, packs, in.SkillPacks)

	// Scribbling over the output leaves the inputs alone.
	spec := &job.Spec.Template.Spec
	for k := range spec.NodeSelector {
		spec.NodeSelector[k] = "changed"
	}
	spec.Containers[0].Env[0].Value = "changed"
	sb := container(*spec, SandboxContainerName)
	sb.SecurityContext.Capabilities.Add[0] = "SYS_ADMIN"
	sb.Resources.Limits[corev1.ResourceMemory] = sb.Resources.Requests[corev1.ResourceCPU]
	job.Labels[v1alpha1.LabelAgentRun] = "changed"
	assert.Equal(t, run, in.Run)
	assert.Equal(t, inst, in.Instance)
	assert.Equal(t, packs, in.SkillPacks)
}

// assertRestricted checks the fields Pod Security Standards "restricted"
// (latest) looks at, for the pods this package builds.
func assertRestricted(t testingT, spec corev1.PodSpec) {
	t.Helper()
	// baseline
	assert.False(t, spec.HostNetwork || spec.HostPID || spec.HostIPC, "host namespaces")
	require.NotNil(t, spec.SecurityContext)
	assert.Empty(t, spec.SecurityContext.Sysctls)
	if so := spec.SecurityContext.SELinuxOptions; so != nil {
		assert.Empty(t, so.User)
		assert.Empty(t, so.Role)
	}
	allowedVolume := func(v corev1.Volume) bool {
		s := v.VolumeSource
		return s.EmptyDir != nil || s.Projected != nil || s.ConfigMap != nil || s.Secret != nil ||
			s.DownwardAPI != nil || s.CSI != nil || s.PersistentVolumeClaim != nil || s.Ephemeral != nil
	}
	for _, v := range spec.Volumes {
		assert.True(t, allowedVolume(v), "volume %s of a restricted type", v.Name)
	}
	// restricted: pod-level defaults
	podNonRoot := spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	podSeccomp := spec.SecurityContext.SeccompProfile != nil && spec.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
	assert.True(t, podNonRoot, "pod runAsNonRoot")
	assert.True(t, podSeccomp, "pod seccomp RuntimeDefault")
	if u := spec.SecurityContext.RunAsUser; u != nil {
		assert.NotZero(t, *u, "pod runAsUser 0")
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		require.NotNil(t, sc, c.Name)
		for _, p := range c.Ports {
			assert.Zero(t, p.HostPort, c.Name)
		}
		assert.False(t, sc.Privileged != nil && *sc.Privileged, "%s privileged", c.Name)
		require.NotNil(t, sc.AllowPrivilegeEscalation, c.Name)
		assert.False(t, *sc.AllowPrivilegeEscalation, "%s allowPrivilegeEscalation", c.Name)
		require.NotNil(t, sc.Capabilities, c.Name)
		assert.Contains(t, sc.Capabilities.Drop, corev1.Capability("ALL"), c.Name)
		for _, a := range sc.Capabilities.Add {
			assert.Equal(t, corev1.Capability("NET_BIND_SERVICE"), a, c.Name)
		}
		assert.False(t, sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot, "%s runAsNonRoot false", c.Name)
		assert.False(t, sc.RunAsUser != nil && *sc.RunAsUser == 0, "%s runAsUser 0", c.Name)
		if p := sc.SeccompProfile; p != nil {
			assert.Contains(t, []corev1.SeccompProfileType{corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeLocalhost}, p.Type, c.Name)
		}
		assert.True(t, sc.ProcMount == nil || *sc.ProcMount == corev1.DefaultProcMount, c.Name)
		// ours, beyond restricted
		require.NotNil(t, sc.ReadOnlyRootFilesystem, c.Name)
		assert.True(t, *sc.ReadOnlyRootFilesystem, "%s readOnlyRootFilesystem", c.Name)
	}
	require.NotNil(t, spec.AutomountServiceAccountToken)
	assert.False(t, *spec.AutomountServiceAccountToken)
}

func TestRestrictedEverywhere(t *testing.T) {
	in := fullInputs()
	in.Run.Spec.AgentSandbox = nil
	tmpl, err := PodTemplate(testCfg, in)
	require.NoError(t, err)
	assertRestricted(t, tmpl.Spec)

	// and the check itself catches a violation
	for name, breakIt := range map[string]func(*corev1.PodSpec){
		"escalation": func(s *corev1.PodSpec) { s.Containers[1].SecurityContext.AllowPrivilegeEscalation = new(true) },
		"capability": func(s *corev1.PodSpec) {
			s.Containers[2].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_RAW"}
		},
		"root":    func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.RunAsUser = new(int64(0)) },
		"no drop": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities.Drop = nil },
		"host path": func(s *corev1.PodSpec) {
			s.Volumes[0].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}
		},
		"no pod seccomp":  func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil },
		"writable root":   func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.ReadOnlyRootFilesystem = new(false) },
		"no sc":           func(s *corev1.PodSpec) { s.Containers[0].SecurityContext = nil },
		"host network":    func(s *corev1.PodSpec) { s.HostNetwork = true },
		"token automount": func(s *corev1.PodSpec) { s.AutomountServiceAccountToken = new(true) },
	} {
		t.Run("rejects "+name, func(t *testing.T) {
			bad := tmpl.Spec.DeepCopy()
			breakIt(bad)
			rec := &recordingT{}
			func() {
				defer func() {
					if r := recover(); r != nil && r != errFailNow {
						panic(r)
					}
				}()
				assertRestricted(rec, *bad)
			}()
			assert.True(t, rec.failed, "assertRestricted accepted a pod that breaks %q", name)
		})
	}
}

type testingT interface {
	require.TestingT
	Helper()
}

var errFailNow = errors.New("FailNow")

// recordingT records failures instead of failing the test.
type recordingT struct{ failed bool }

func (r *recordingT) Errorf(string, ...any) { r.failed = true }
func (r *recordingT) FailNow()              { r.failed = true; panic(errFailNow) }
func (r *recordingT) Helper()               {}
