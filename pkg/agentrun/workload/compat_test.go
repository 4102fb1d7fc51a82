package workload

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// scheduledRun is a run as sympozium's schedule controller writes it
// (internal/controller/sympoziumschedule_controller.go:169-186 at 25c0bb2):
// no sessionKey.
func scheduledRun() *v1alpha1.AgentRun {
	return newRun(withName("nightly-3"), func(r *v1alpha1.AgentRun) {
		r.Spec.AgentID = "schedule-nightly"
		r.Spec.SessionKey = ""
	})
}

// tuiRun is a run as sympozium's TUI writes it (cmd/sympozium/main.go:
// 7659-7680): neither agentId nor sessionKey.
func tuiRun() *v1alpha1.AgentRun {
	return newRun(withName("inst-run-1767225600"), func(r *v1alpha1.AgentRun) {
		r.Spec.AgentID, r.Spec.SessionKey = "", ""
	})
}

func TestAgentIDAndSessionKeyDefaults(t *testing.T) {
	uid := "6f1c9a52-0000-4000-8000-000000000001"
	tests := map[string]struct {
		run                  *v1alpha1.AgentRun
		wantAgent, wantSess  string
		wantParentSessionKey string
	}{
		"both set":           {run: newRun(), wantAgent: "default", wantSess: "sess-1"},
		"schedule":           {run: scheduledRun(), wantAgent: "schedule-nightly", wantSess: "agentrun:team-a/nightly-3:" + uid},
		"tui":                {run: tuiRun(), wantAgent: DefaultAgentID, wantSess: "agentrun:team-a/inst-run-1767225600:" + uid},
		"not yet persisted":  {run: newRun(func(r *v1alpha1.AgentRun) { r.UID, r.Spec.SessionKey = "", "" }), wantAgent: "default", wantSess: "agentrun:team-a/run-1"},
		"sub-agent, set":     {run: newRun(withParent("p", "ps", 1)), wantAgent: "default", wantSess: "sess-1", wantParentSessionKey: "ps"},
		"sub-agent, spawner": {run: newRun(withParent("p", "", 1)), wantAgent: "default", wantSess: "sess-1", wantParentSessionKey: "agentrun:team-a/p:p-uid"},
	}
	parent := newRun(withName("p"), func(r *v1alpha1.AgentRun) { r.UID, r.Spec.SessionKey = "p-uid", "" })
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.wantAgent, AgentID(tc.run))
			assert.Equal(t, tc.wantSess, SessionKey(tc.run))
			assert.Equal(t, tc.wantParentSessionKey, ParentSessionKey(tc.run, parent))

			// What the agent receives, in every workload, on every build.
			for i := range 2 {
				job, err := Job(testCfg, Inputs{Run: tc.run, Parent: parent, Now: now.Add(time.Duration(i) * time.Minute)})
				require.NoError(t, err)
				env := envMap(job.Spec.Template.Spec.Containers[0].Env)
				assert.Equal(t, tc.wantAgent, env[EnvAgentID])
				assert.Equal(t, tc.wantSess, env[EnvSessionKey])
				if tc.run.Spec.Parent != nil {
					assert.Equal(t, tc.wantParentSessionKey, env[EnvParentSessionKey])
				}
			}
			srv := tc.run.DeepCopy()
			srv.Spec.Mode = v1alpha1.ModeServer
			dep, err := Deployment(testCfg, Inputs{Run: srv, Parent: parent, Now: now})
			require.NoError(t, err)
			env := envMap(container(dep.Spec.Template.Spec, v1alpha1.AgentContainerName).Env)
			assert.Equal(t, tc.wantSess, env[EnvSessionKey])
			assert.Equal(t, tc.wantAgent, env[EnvAgentID])
		})
	}
	// The spec is never written: the default lives in the pod only.
	run := scheduledRun()
	_, _ = Job(testCfg, Inputs{Run: run, Now: now})
	assert.Empty(t, run.Spec.SessionKey)

	// Another run (another UID) under the same name is another session.
	again := scheduledRun()
	again.UID = "6f1c9a52-0000-4000-8000-000000000002"
	assert.NotEqual(t, SessionKey(scheduledRun()), SessionKey(again))

	// A parent that is not the one named gives nothing rather than a wrong key.
	assert.Empty(t, ParentSessionKey(newRun(withParent("other", "", 1)), parent))
	assert.Empty(t, ParentSessionKey(newRun(withParent("p", "", 1)), nil))
}

func TestBothSandboxesAgentSandboxWins(t *testing.T) {
	both := newRun(withSandbox(&v1alpha1.SandboxSpec{Enabled: true, Image: "sandbox:custom"}),
		withAgentSandbox(&v1alpha1.AgentSandboxSpec{Enabled: true, RuntimeClass: "kata"}))
	tests := map[string]struct {
		run         *v1alpha1.AgentRun
		ignored     bool
		wantSidecar bool
	}{
		"container sandbox only": {run: newRun(withSandbox(&v1alpha1.SandboxSpec{Enabled: true})), wantSidecar: true},
		"agent sandbox only":     {run: newRun(withAgentSandbox(&v1alpha1.AgentSandboxSpec{Enabled: true}))},
		"both":                   {run: both, ignored: true},
		"container sandbox disabled, agent sandbox": {run: newRun(withSandbox(&v1alpha1.SandboxSpec{}),
			withAgentSandbox(&v1alpha1.AgentSandboxSpec{Enabled: true}))},
		"agent sandbox disabled": {run: newRun(withSandbox(&v1alpha1.SandboxSpec{Enabled: true}), withAgentSandbox(&v1alpha1.AgentSandboxSpec{})), wantSidecar: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.ignored, ContainerSandboxIgnored(tc.run))
			if tc.ignored {
				assert.Equal(t, "spec.sandbox ignored: agentSandbox is enabled too and replaces the container sandbox", IgnoredSandboxNote(tc.run))
			} else {
				assert.Empty(t, IgnoredSandboxNote(tc.run))
			}
			tmpl, err := PodTemplate(testCfg, Inputs{Run: tc.run, Now: now})
			require.NoError(t, err)
			assert.Equal(t, tc.wantSidecar, container(tmpl.Spec, SandboxContainerName) != nil)
		})
	}
	// The agent sandbox's own settings still apply.
	sb, err := Sandbox(testCfg, Inputs{Run: both, Now: now}, "agents.x-k8s.io/v1alpha1")
	require.NoError(t, err)
	rc, _, _ := unstructured.NestedString(sb.Object, "spec", "podTemplate", "spec", "runtimeClassName")
	assert.Equal(t, "kata", rc)
}

func TestCreatedByOriginal(t *testing.T) {
	ours, err := Job(testCfg, Inputs{Run: newRun(), Now: now})
	require.NoError(t, err)
	assert.False(t, CreatedByOriginal(ours))
	// The labels of sympozium's Job (agentrun_controller.go:1228-1234).
	original := &metav1.ObjectMeta{Name: "run-1", Labels: map[string]string{
		"sympozium.ai/agent-run": "run-1", "sympozium.ai/instance": "inst", "sympozium.ai/component": "agent-run",
		"app.kubernetes.io/part-of": "sympozium", "app.kubernetes.io/managed-by": "sympozium-controller",
	}}
	assert.True(t, CreatedByOriginal(original))
	assert.Equal(t, "Job run-1 was created by sympozium's own controller; adopted: its agent container decides the run", AdoptedNote("Job", original))
}

// The otel.dev/traceparent annotation sympozium's channel router writes
// continues the caller's trace in status.traceID and TRACEPARENT, as
// sympozium.ai/traceparent does; an invalid one gives the run its own.
func TestOTelTraceParentContinuesTheTrace(t *testing.T) {
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	own, _ := TraceParent(newRun())
	tests := map[string]struct {
		annotations map[string]string
		want        string
	}{
		"otel valid":                 {map[string]string{AnnotationOTelTraceParent: "00-" + caller + "-00f067aa0ba902b7-01"}, caller},
		"otel invalid":               {map[string]string{AnnotationOTelTraceParent: "00-" + caller + "-0000000000000000-01"}, own},
		"otel garbage":               {map[string]string{AnnotationOTelTraceParent: "trace-me"}, own},
		"ours wins over otel":        {map[string]string{AnnotationTraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", AnnotationOTelTraceParent: "00-" + caller + "-00f067aa0ba902b7-01"}, "0af7651916cd43dd8448eb211c80319c"},
		"ours invalid, otel is used": {map[string]string{AnnotationTraceParent: "bad", AnnotationOTelTraceParent: "00-" + caller + "-00f067aa0ba902b7-01"}, caller},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			run := newRun()
			run.Annotations = tc.annotations
			id, tp := TraceParent(run)
			assert.Equal(t, tc.want, id)
			assert.Regexp(t, traceparentRE, tp)
			job, err := Job(testCfg, Inputs{Run: run, Now: now})
			require.NoError(t, err)
			assert.Equal(t, tp, envMap(job.Spec.Template.Spec.Containers[0].Env)[EnvTraceParent])
			assert.Contains(t, tp, "-"+tc.want+"-")
		})
	}
}
