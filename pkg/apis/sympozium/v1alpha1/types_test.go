package v1alpha1_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/fake"
	"github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
)

// fullRun sets every field of AgentRun, spec and status.
func fullRun() *v1alpha1.AgentRun {
	t0 := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Local()) // metav1.Time decodes to Local
	t1 := metav1.NewTime(t0.Add(time.Minute))
	return &v1alpha1.AgentRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", Labels: map[string]string{"a": "b"}},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: "inst", AgentID: "default", SessionKey: "s", Task: "t", SystemPrompt: "sp",
			Model: v1alpha1.ModelSpec{Provider: "anthropic", Model: "m", BaseURL: "http://x", Thinking: v1alpha1.ThinkingLow,
				AuthSecretRef: "key", NodeSelector: map[string]string{"gpu": "a100"}},
			Mode:       v1alpha1.ModeServer,
			Parent:     &v1alpha1.ParentRef{RunName: "p", SessionKey: "ps", SpawnDepth: 2},
			Skills:     []v1alpha1.SkillRef{{SkillPackRef: "k8s", ConfigMapRef: "cm", Params: map[string]string{"x": "y"}}},
			ToolPolicy: &v1alpha1.ToolPolicy{Allow: []string{"a"}, Deny: []string{"b"}},
			Timeout:    &metav1.Duration{Duration: 90 * time.Minute},
			Cleanup:    v1alpha1.CleanupKeep,
			Sandbox: &v1alpha1.SandboxSpec{Enabled: true, Image: "img",
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: new(true)},
				Resources:       &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}},
			AgentSandbox: &v1alpha1.AgentSandboxSpec{Enabled: false, RuntimeClass: "gvisor", WarmPoolRef: "wp",
				Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}},
			Env: map[string]string{"MY_VAR": "v"},
		},
		Status: v1alpha1.AgentRunStatus{
			ObservedGeneration: 3, Phase: v1alpha1.PhaseFailed,
			PodName: "pod", JobName: "job", SandboxName: "sb", SandboxClaimName: "claim", DeploymentName: "d", ServiceName: "svc",
			StartedAt: &t0, CompletedAt: &t1, Result: "res", ResultTruncated: true, Error: "err", ExitCode: ptr.To[int32](3),
			TokenUsage: &v1alpha1.TokenUsage{InputTokens: 1, OutputTokens: 2, TotalTokens: 3, ToolCalls: 4, DurationMs: 5},
			TraceID:    "0123456789abcdef0123456789abcdef",
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAgentFailed,
				Message: "m", LastTransitionTime: t1, ObservedGeneration: 3}},
		},
	}
}

func TestAgentRunJSONRoundTrip(t *testing.T) {
	in := fullRun()
	b, err := json.Marshal(in)
	require.NoError(t, err)
	var out v1alpha1.AgentRun
	require.NoError(t, json.Unmarshal(b, &out))
	assert.Equal(t, in, &out)
	// The timeout is a duration string on the wire.
	assert.Contains(t, string(b), `"timeout":"1h30m0s"`)
	// Deep copies are equal and independent.
	cp := in.DeepCopy()
	assert.Equal(t, in, cp)
	cp.Spec.Env["MY_VAR"] = "changed"
	assert.Equal(t, "v", in.Spec.Env["MY_VAR"])
}

func TestPhases(t *testing.T) {
	for _, p := range []v1alpha1.AgentRunPhase{v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed} {
		assert.True(t, p.IsTerminal(), p)
	}
	for _, p := range []v1alpha1.AgentRunPhase{"", v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseServing} {
		assert.False(t, p.IsTerminal(), p)
	}
}

func TestFakeClientsetAndInformers(t *testing.T) {
	ctx := t.Context()
	client := fake.NewSimpleClientset()
	run := fullRun()
	run.Status = v1alpha1.AgentRunStatus{}
	_, err := client.SympoziumV1alpha1().AgentRuns("ns").Create(ctx, run, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = client.SympoziumV1alpha1().SympoziumInstances("ns").Create(ctx,
		&v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "ns"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = client.SympoziumV1alpha1().SkillPacks("ns").Create(ctx,
		&v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "k8s", Namespace: "ns"},
			Spec: v1alpha1.SkillPackSpec{Skills: []v1alpha1.Skill{{Name: "a", Content: "c"}}}}, metav1.CreateOptions{})
	require.NoError(t, err)

	f := externalversions.NewSharedInformerFactory(client, 0)
	runs := f.Sympozium().V1alpha1().AgentRuns()
	insts := f.Sympozium().V1alpha1().SympoziumInstances()
	packs := f.Sympozium().V1alpha1().SkillPacks()
	runs.Informer()
	insts.Informer()
	packs.Informer()
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		require.True(t, ok, typ)
	}
	got, err := runs.Lister().AgentRuns("ns").Get("r")
	require.NoError(t, err)
	assert.Equal(t, run.Spec, got.Spec)
	all, err := runs.Lister().List(labels.SelectorFromSet(labels.Set{"a": "b"}))
	require.NoError(t, err)
	assert.Len(t, all, 1)
	_, err = insts.Lister().SympoziumInstances("ns").Get("inst")
	require.NoError(t, err)
	p, err := packs.Lister().SkillPacks("ns").Get("k8s")
	require.NoError(t, err)
	assert.Equal(t, "a", p.Spec.Skills[0].Name)

	// Status goes through the status subresource.
	got = got.DeepCopy()
	got.Status.Phase = v1alpha1.PhasePending
	_, err = client.SympoziumV1alpha1().AgentRuns("ns").UpdateStatus(ctx, got, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, err := runs.Lister().AgentRuns("ns").Get("r")
		return err == nil && r.Status.Phase == v1alpha1.PhasePending
	}, 5*time.Second, 10*time.Millisecond)
}
