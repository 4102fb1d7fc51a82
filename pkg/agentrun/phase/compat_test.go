package phase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// originalJob is the Job sympozium's own controller creates for run
// (agentrun_controller.go:1228-1275 at 25c0bb2), as the cache holds it:
// named like the run, controlled by it, with its labels.
func originalJob(run *v1alpha1.AgentRun, opts ...func(*batchv1.Job)) *batchv1.Job {
	j := jobFor(run, opts...)
	j.Labels = map[string]string{
		v1alpha1.LabelAgentRun: run.Name, v1alpha1.LabelInstance: run.Spec.InstanceRef,
		v1alpha1.LabelComponent: workload.ComponentOriginal, v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
	}
	return j
}

// originalRunning is the status sympozium's controller writes once it
// created the Job (agentrun_controller.go:385-395) and saw its pod: no
// conditions.
func originalRunning() runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning, JobName: r.Name, PodName: "run-pod",
			StartedAt: new(metav1.NewTime(t0.Add(3 * time.Second))), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	}
}

func TestNextAdoptsTheOriginalsJob(t *testing.T) {
	const adopted = "Job run was created by sympozium's own controller; adopted: its agent container decides the run"
	run := newRun(originalRunning())
	cases := map[string]struct {
		in        Observed
		wantPhase v1alpha1.AgentRunPhase
		wantCond  []string
		events    []string
		delete    bool
		check     func(t *testing.T, d Decision)
	}{
		"running: adopted, followed": {
			in:        Observed{Run: run, Instance: newInstance(), Objects: Objects{KindJob: originalJob(run)}, Pod: newPod(agentRunning(t0.Add(3 * time.Second)))},
			wantPhase: v1alpha1.PhaseRunning, wantCond: []string{v1alpha1.ConditionAdmitted}, events: []string{v1alpha1.ReasonJobCreated},
		},
		"finished: the agent's report decides": {
			in: Observed{Run: run, Instance: newInstance(), Objects: Objects{KindJob: originalJob(run, jobCond(batchv1.JobComplete, "CompletionsReached"))},
				Pod: newPod(agentExited(0, `{"status":"success","response":"done","metrics":{"inputTokens":3,"outputTokens":4}}`))},
			wantPhase: v1alpha1.PhaseSucceeded, wantCond: []string{v1alpha1.ConditionAdmitted, v1alpha1.ConditionRunning, v1alpha1.ConditionComplete},
			events: []string{v1alpha1.ReasonJobCreated, v1alpha1.ReasonSucceeded}, delete: true,
			check: func(t *testing.T, d Decision) {
				assert.Equal(t, "done", d.Status.Result)
				assert.EqualValues(t, 7, d.Status.TokenUsage.TotalTokens)
			},
		},
		"finished, the report only in the log (sympozium's runner)": {
			in: Observed{Run: run, Instance: newInstance(), Objects: Objects{KindJob: originalJob(run)},
				Pod:     newPod(agentExited(1, "")),
				LogTail: "thinking...\n__SYMPOZIUM_RESULT__{\"status\":\"error\",\"error\":\"model refused\"}__SYMPOZIUM_END__\n"},
			wantPhase: v1alpha1.PhaseFailed, wantCond: []string{v1alpha1.ConditionAdmitted, v1alpha1.ConditionFailed},
			events: []string{v1alpha1.ReasonJobCreated, v1alpha1.ReasonAgentFailed}, delete: true,
			check: func(t *testing.T, d Decision) { assert.Contains(t, d.Status.Error, "model refused") },
		},
		"its status never written (the Job only)": {
			in:        Observed{Run: newRun(), Instance: newInstance(), Objects: Objects{KindJob: originalJob(newRun())}},
			wantPhase: v1alpha1.PhasePending, wantCond: []string{v1alpha1.ConditionAdmitted}, events: []string{v1alpha1.ReasonJobCreated},
		},
		"Job gone (its TTL): JobLost": {
			in:        Observed{Run: run, Instance: newInstance()},
			wantPhase: v1alpha1.PhaseFailed, wantCond: []string{v1alpha1.ConditionFailed}, events: []string{v1alpha1.ReasonJobLost},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.in.Config, tc.in.Now = testConfig, now
			d := Next(tc.in)
			assert.Equal(t, tc.wantPhase, d.Status.Phase)
			var conds []string
			for _, c := range d.Status.Conditions {
				conds = append(conds, c.Type)
			}
			assert.Equal(t, tc.wantCond, conds)
			assert.Equal(t, tc.events, eventReasons(d))
			assert.Equal(t, tc.delete, acts(d, Delete, KindJob), "delete")
			assert.False(t, acts(d, Create, KindJob), "never creates a second Job")
			assert.Equal(t, "run", d.Status.JobName)
			if tc.in.Run.Status.TraceID != "" {
				assert.Equal(t, tc.in.Run.Status.TraceID, d.Status.TraceID, "the original's trace is kept")
			}
			if c := findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted); c != nil {
				assert.Equal(t, metav1.ConditionTrue, c.Status)
				assert.Equal(t, v1alpha1.ReasonJobCreated, c.Reason)
				assert.Equal(t, adopted, c.Message)
				assert.Equal(t, adopted, d.Events[0].Message)
			}
			if tc.check != nil {
				tc.check(t, d)
			}
			assertIdempotent(t, tc.in, d)
		})
	}
}

// A Job of this controller's own, recorded but without an Admitted
// condition (never happens), is not "adopted".
func TestNextOwnJobIsNotAdopted(t *testing.T) {
	run := newRun(originalRunning())
	d := Next(Observed{Run: run, Instance: newInstance(), Objects: Objects{KindJob: jobFor(run)}, Pod: newPod(agentRunning(t0.Add(3 * time.Second))),
		Config: testConfig, Now: now})
	assert.Empty(t, d.Events)
	assert.Nil(t, findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted))
}

// Both sandboxes enabled (admitted, as sympozium's CRD does): the agent
// sandbox runs the agent, and the admission says spec.sandbox was ignored.
func TestNextBothSandboxes(t *testing.T) {
	run := newRun(withAgentSandbox(""), func(r *v1alpha1.AgentRun) { r.Spec.Sandbox = &v1alpha1.SandboxSpec{Enabled: true} })
	require.Equal(t, BackendSandbox, BackendOf(run))
	in := Observed{Run: run, Instance: newInstance(), SandboxAPI: SandboxAPI{Sandbox: "agents.x-k8s.io/v1alpha1"}, Config: testConfig, Now: now}
	d := Next(in)
	require.Equal(t, v1alpha1.PhasePending, d.Status.Phase)
	sb := action[*unstructured.Unstructured](d, Create, KindSandbox)
	require.NotNil(t, sb)
	const want = "Sandbox run created; spec.sandbox ignored: agentSandbox is enabled too and replaces the container sandbox"
	c := findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted)
	require.NotNil(t, c)
	assert.Equal(t, want, c.Message)
	require.Len(t, d.Events, 1)
	assert.Equal(t, want, d.Events[0].Message)
	assertIdempotent(t, in, d)

	// Only the agent sandbox: no note.
	plain := newRun(withAgentSandbox(""))
	d = Next(Observed{Run: plain, Instance: newInstance(), SandboxAPI: in.SandboxAPI, Config: testConfig, Now: now})
	assert.Equal(t, "Sandbox run created", findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted).Message)
}
