package phase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
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
			wantPhase: v1alpha1.PhaseRunning, wantCond: []string{v1alpha1.ConditionAdmitted, v1alpha1.ConditionRunning}, events: []string{v1alpha1.ReasonJobCreated},
			check: func(t *testing.T, d Decision) {
				c := findCondition(d.Status.Conditions, v1alpha1.ConditionRunning)
				assert.Equal(t, metav1.ConditionTrue, c.Status)
				assert.Equal(t, "agent container started in pod run-pod", c.Message)
			},
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
			wantPhase: v1alpha1.PhaseFailed, wantCond: []string{v1alpha1.ConditionAdmitted, v1alpha1.ConditionRunning, v1alpha1.ConditionFailed},
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
				assert.False(t, d.Events[0].Progress, "an adoption is recorded as an Event")
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
	assert.False(t, d.Events[0].Progress, "the note is recorded as an Event")
	assertIdempotent(t, in, d)

	// Only the agent sandbox: no note, and the admission is progress only.
	plain := newRun(withAgentSandbox(""))
	d = Next(Observed{Run: plain, Instance: newInstance(), SandboxAPI: in.SandboxAPI, Config: testConfig, Now: now})
	assert.Equal(t, "Sandbox run created", findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted).Message)
	require.Len(t, d.Events, 1)
	assert.True(t, d.Events[0].Progress)
}

// A server sympozium's controller started (Deployment and Service
// "<run>-server", controlled by the run, its labels): adopted and kept as
// it is (its selector is immutable and selects its pods); its availability
// decides.
func TestNextAdoptsTheOriginalsServer(t *testing.T) {
	run := newRun(withMode(v1alpha1.ModeServer), withFinalizer(), func(r *v1alpha1.AgentRun) {
		r.Status = v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseServing, DeploymentName: "run-server", ServiceName: "run-server",
			StartedAt: new(metav1.NewTime(t0.Add(3 * time.Second)))}
	})
	in := Observed{Run: run, Instance: newInstance(), Config: testConfig, Now: now}
	dep, svc := serverObjects(&in, nil)
	labels := map[string]string{v1alpha1.LabelAgentRun: "run", v1alpha1.LabelInstance: "inst",
		v1alpha1.LabelComponent: workload.ComponentOriginalServer, v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	dep.Labels, svc.Labels = labels, labels
	dep.Annotations, svc.Annotations = nil, nil // no spec hash of ours
	dep.Spec.Selector = &metav1.LabelSelector{MatchLabels: labels}
	svc.Spec.Selector = labels
	dep.Status.AvailableReplicas, dep.Status.ReadyReplicas = 1, 1
	dep.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}
	in.Objects = Objects{KindDeployment: dep, KindService: svc}

	d := Next(in)
	assert.Equal(t, v1alpha1.PhaseServing, d.Status.Phase)
	assert.Empty(t, d.Actions, "neither rebuilt nor replaced")
	c := findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted)
	require.NotNil(t, c)
	assert.Equal(t, "Deployment run-server was created by sympozium's own controller; adopted: kept as it is, its availability decides while the run serves", c.Message)
	c = findCondition(d.Status.Conditions, v1alpha1.ConditionServing)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assertIdempotent(t, in, d)

	// Deleting it: Succeeded, its Deployment and Service deleted like ours.
	in.Run = withDeletedCopy(run)
	d = Next(in)
	assert.Equal(t, v1alpha1.PhaseSucceeded, d.Status.Phase)
	assert.True(t, acts(d, Delete, KindDeployment))
	assert.True(t, acts(d, Delete, KindService))
}

func withDeletedCopy(r *v1alpha1.AgentRun) *v1alpha1.AgentRun {
	c := r.DeepCopy()
	withDeleted()(c)
	return c
}

// An agent-sandbox run sympozium's controller started names a Sandbox
// ("sb-<run>") this controller never makes: it fails saying so, instead of
// as if its Sandbox had been deleted.
func TestNextForeignSandbox(t *testing.T) {
	for name, tc := range map[string]struct {
		pool string
		set  func(*v1alpha1.AgentRunStatus)
		want string
	}{
		"Sandbox":      {set: func(st *v1alpha1.AgentRunStatus) { st.SandboxName = "sb-run" }, want: "Sandbox sb-run"},
		"SandboxClaim": {pool: "pool", set: func(st *v1alpha1.AgentRunStatus) { st.SandboxClaimName = "sbc-run" }, want: "SandboxClaim sbc-run"},
	} {
		t.Run(name, func(t *testing.T) {
			run := newRun(withAgentSandbox(tc.pool), func(r *v1alpha1.AgentRun) {
				r.Status.Phase = v1alpha1.PhaseRunning
				tc.set(&r.Status)
			})
			in := Observed{Run: run, Instance: newInstance(), Config: testConfig, Now: now,
				SandboxAPI: SandboxAPI{Sandbox: "agents.x-k8s.io/v1beta1", Claim: "extensions.agents.x-k8s.io/v1beta1"}}
			d := Next(in)
			assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
			assert.Equal(t, v1alpha1.ReasonJobLost, failedReason(&d.Status))
			assert.Contains(t, d.Status.Error, "the status names "+tc.want+", which this controller did not create")
			assert.Contains(t, d.Status.Error, "sympozium's own controller started the run")
			assert.Empty(t, d.Actions)
			assertIdempotent(t, in, d)
		})
	}
	// Its own name, gone: lost as before.
	run := newRun(withAgentSandbox(""), func(r *v1alpha1.AgentRun) { r.Status.Phase, r.Status.SandboxName = v1alpha1.PhaseRunning, "run" })
	d := Next(Observed{Run: run, Instance: newInstance(), Config: testConfig, Now: now, SandboxAPI: SandboxAPI{Sandbox: "agents.x-k8s.io/v1beta1"}})
	assert.Contains(t, d.Status.Error, "was deleted before the run finished")
}
