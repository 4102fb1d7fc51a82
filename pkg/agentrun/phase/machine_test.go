package phase

import (
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

const reportJSON = `{"status":"success","response":"the cluster is healthy","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":45000}}`

type want struct {
	phase     v1alpha1.AgentRunPhase
	condition string // a condition type that must be present with reason
	reason    string
	condTrue  bool
	create    bool
	delete    bool
	owner     bool
	requeue   time.Duration // exact; 0 = none
	events    []string      // reasons, in order
	check     func(t *testing.T, d Decision)
}

func TestNext(t *testing.T) {
	parent := newRun(func(r *v1alpha1.AgentRun) { r.Name, r.UID = "parent", "parent-uid" }, running())
	cases := map[string]struct {
		in   Observed
		want want
	}{
		"new run is admitted: Pending written and its Job created": {
			in: Observed{Run: newRun(), Instance: newInstance()},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				create: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, "run", d.Status.JobName)
					assert.Len(t, d.Status.TraceID, 32)
					assert.Equal(t, "run", action[*batchv1.Job](d, Create, KindJob).Name)
					assert.True(t, metav1.IsControlledBy(action[*batchv1.Job](d, Create, KindJob), newRun()))
					assert.EqualValues(t, 1, d.Status.ObservedGeneration)
				}},
		},
		"instance missing: waits in Pending": {
			in: Observed{Run: newRun()},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonInstanceNotFound,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonInstanceNotFound}},
		},
		"instance still missing at the deadline: Timeout": {
			in: Observed{Run: newRun(withPhase(v1alpha1.PhasePending), withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonInstanceNotFound)),
				Now: t0.Add(10 * time.Minute)},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTimeout, condTrue: true,
				events: []string{v1alpha1.ReasonTimeout},
				check: func(t *testing.T, d Decision) {
					assert.Contains(t, d.Status.Error, "InstanceNotFound")
					assert.Contains(t, d.Status.Error, "Timeout: ")
				}},
		},
		"the instance's runTimeout is the default": {
			in: Observed{Run: newRun(), Instance: newInstance(func(i *v1alpha1.SympoziumInstance) {
				i.Spec.Agents.Default.RunTimeout = &metav1.Duration{Duration: 3 * time.Minute}
			})},
			want: want{phase: v1alpha1.PhasePending, create: true, requeue: 2 * time.Minute, events: []string{v1alpha1.ReasonJobCreated}},
		},
		"created Job not in the cache yet: nothing to do": {
			in:   Observed{Run: newRun(admitted()), Instance: newInstance(), WorkloadExpected: true},
			want: want{phase: v1alpha1.PhasePending, requeue: 9 * time.Minute},
		},
		"Job present, no pod yet": {
			in:   Observed{Run: newRun(admitted()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}},
			want: want{phase: v1alpha1.PhasePending, requeue: 9 * time.Minute},
		},
		"Job found without a recorded name (earlier crash): adopted": {
			in: Observed{Run: newRun(), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, "run", d.Status.JobName)
					assert.Len(t, d.Status.TraceID, 32)
				}},
		},
		"Job created but the admitting status write lost: admission recorded": {
			in: Observed{Run: newRun(), Instance: newInstance(), WorkloadExpected: true},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated},
				check: func(t *testing.T, d Decision) { assert.Equal(t, "run", d.Status.JobName) }},
		},
		"agent container running: Running": {
			in: Observed{Run: newRun(admitted()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentRunning(t0.Add(5 * time.Second)))},
			want: want{phase: v1alpha1.PhaseRunning, condition: v1alpha1.ConditionRunning, reason: v1alpha1.ReasonStarted, condTrue: true,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonStarted},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, "run-pod", d.Status.PodName)
					assert.Equal(t, t0.Add(5*time.Second), d.Status.StartedAt.Time)
				}},
		},
		"agent exit 0: Succeeded with result and usage, Job deleted": {
			in: Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentExited(0, reportJSON))},
			want: want{phase: v1alpha1.PhaseSucceeded, condition: v1alpha1.ConditionComplete, reason: v1alpha1.ReasonSucceeded, condTrue: true,
				delete: true, events: []string{v1alpha1.ReasonSucceeded},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, "the cluster is healthy", d.Status.Result)
					assert.Equal(t, &v1alpha1.TokenUsage{InputTokens: 1500, OutputTokens: 800, TotalTokens: 2300, ToolCalls: 5, DurationMs: 45000}, d.Status.TokenUsage)
					assert.Equal(t, ptr.To[int32](0), d.Status.ExitCode)
					assert.Equal(t, now, d.Status.CompletedAt.Time)
					assert.Empty(t, d.Status.Error)
					c := findCondition(d.Status.Conditions, v1alpha1.ConditionRunning)
					require.NotNil(t, c)
					assert.Equal(t, metav1.ConditionFalse, c.Status)
				}},
		},
		"agent exit 0 with cleanup keep: Job kept": {
			in: Observed{Run: newRun(running(), withCleanup(v1alpha1.CleanupKeep)), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentExited(0, reportJSON))},
			want: want{phase: v1alpha1.PhaseSucceeded, reason: v1alpha1.ReasonSucceeded, condition: v1alpha1.ConditionComplete, condTrue: true, events: []string{v1alpha1.ReasonSucceeded},
				check: func(t *testing.T, d Decision) { assertRetires(t, d, "Job/run", "Pod/run-pod") }},
		},
		"agent exit 0 while a sidecar still runs: Succeeded": {
			in:   Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentExited(0, reportJSON), sidecarRunning())},
			want: want{phase: v1alpha1.PhaseSucceeded, condition: v1alpha1.ConditionComplete, reason: v1alpha1.ReasonSucceeded, condTrue: true, delete: true, events: []string{v1alpha1.ReasonSucceeded}},
		},
		"agent exit 3: Failed AgentFailed with exit code and the agent's error": {
			in: Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())},
				Pod: newPod(agentExited(3, `{"status":"error","error":"model refused","metrics":{"inputTokens":10}}`))},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonAgentFailed, condTrue: true,
				delete: true, events: []string{v1alpha1.ReasonAgentFailed},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, ptr.To[int32](3), d.Status.ExitCode)
					assert.Contains(t, d.Status.Error, "AgentFailed: ")
					assert.Contains(t, d.Status.Error, "code 3")
					assert.Contains(t, d.Status.Error, "model refused")
					assert.EqualValues(t, 10, d.Status.TokenUsage.TotalTokens)
				}},
		},
		"agent finished before it was ever seen running: straight to Succeeded": {
			in: Observed{Run: newRun(admitted()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentExited(0, reportJSON))},
			want: want{phase: v1alpha1.PhaseSucceeded, condition: v1alpha1.ConditionComplete, reason: v1alpha1.ReasonSucceeded, condTrue: true,
				delete: true, events: []string{v1alpha1.ReasonStarted, v1alpha1.ReasonSucceeded},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, t0.Add(5*time.Second), d.Status.StartedAt.Time)
					assert.Equal(t, "run-pod", d.Status.PodName)
				}},
		},
		"no report in the message: the log marker is read": {
			in: Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentExited(0, "")),
				LogTail: "starting\n__SYMPOZIUM_RESULT__" + reportJSON + "__SYMPOZIUM_END__\nbye\n"},
			want: want{phase: v1alpha1.PhaseSucceeded, condition: v1alpha1.ConditionComplete, reason: v1alpha1.ReasonSucceeded, condTrue: true, delete: true,
				events: []string{v1alpha1.ReasonSucceeded},
				check:  func(t *testing.T, d Decision) { assert.Equal(t, "the cluster is healthy", d.Status.Result) }},
		},
		"timeout while Running: Failed Timeout and the Job deleted even with cleanup keep": {
			in: Observed{Run: newRun(running(), withTimeout(2*time.Minute), withCleanup(v1alpha1.CleanupKeep)), Instance: newInstance(),
				Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentRunning(t0)), Now: t0.Add(2 * time.Minute)},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTimeout, condTrue: true, delete: true,
				events: []string{v1alpha1.ReasonTimeout},
				check: func(t *testing.T, d Decision) {
					assert.Contains(t, d.Status.Error, "still running")
					assert.Nil(t, d.Status.ExitCode)
				}},
		},
		"timeout of a pod that never scheduled: Timeout naming Unschedulable": {
			in: Observed{Run: newRun(admitted(), withTimeout(time.Minute)), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())},
				Pod: newPod(podCond(corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable, "0/2 nodes are available")),
				Now: t0.Add(time.Minute)},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTimeout, condTrue: true, delete: true,
				events: []string{v1alpha1.ReasonTimeout},
				check: func(t *testing.T, d Decision) {
					assert.Contains(t, d.Status.Error, "Unschedulable: 0/2 nodes are available")
				}},
		},
		"Job's own deadline fired first: Timeout": {
			in:   Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun(), jobCond("Failed", "DeadlineExceeded"))}},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTimeout, condTrue: true, delete: true, events: []string{v1alpha1.ReasonTimeout}},
		},
		"pod deleted under a running agent: PodLost": {
			in:   Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonPodLost, condTrue: true, delete: true, events: []string{v1alpha1.ReasonPodLost}},
		},
		"pod being deleted: PodLost": {
			in: Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())},
				Pod: newPod(agentRunning(t0), func(p *corev1.Pod) { p.DeletionTimestamp = new(metav1.NewTime(now)) })},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonPodLost, condTrue: true, delete: true, events: []string{v1alpha1.ReasonPodLost}},
		},
		"pod evicted: PodLost even though the agent was killed with an exit code": {
			in: Observed{Run: newRun(running()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())},
				Pod: newPod(agentExited(137, ""), func(p *corev1.Pod) { p.Status.Reason, p.Status.Message = "Evicted", "low on memory" })},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonPodLost, condTrue: true, delete: true,
				events: []string{v1alpha1.ReasonPodLost},
				check: func(t *testing.T, d Decision) {
					assert.Contains(t, d.Status.Error, "Evicted")
					assert.Equal(t, ptr.To[int32](137), d.Status.ExitCode)
				}},
		},
		"Job deleted under the run: JobLost": {
			in:   Observed{Run: newRun(running()), Instance: newInstance()},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonJobLost, condTrue: true, events: []string{v1alpha1.ReasonJobLost}},
		},
		"a Job of the same name that is not ours: ChildNameConflict": {
			in: Observed{Run: newRun(), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun(), func(j *batchJob) { j.OwnerReferences = nil })}},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonChildNameConflict, condTrue: true,
				events: []string{v1alpha1.ReasonChildNameConflict},
				check: func(t *testing.T, d Decision) {
					c := findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted)
					require.NotNil(t, c)
					assert.Equal(t, metav1.ConditionFalse, c.Status)
				}},
		},
		"image pull failing within the grace: wait": {
			in: Observed{Run: newRun(admitted()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())},
				Pod: newPod(agentWaiting("ImagePullBackOff")), Now: t0.Add(12 * time.Second)},
			want: want{phase: v1alpha1.PhasePending, requeue: 20 * time.Second},
		},
		"image pull failing past the grace: ImagePullFailed": {
			in: Observed{Run: newRun(admitted()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentWaiting("ErrImagePull"))},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonImagePullFailed, condTrue: true, delete: true,
				events: []string{v1alpha1.ReasonImagePullFailed}},
		},
		"missing Secret past the grace: ConfigError": {
			in: Observed{Run: newRun(admitted()), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentWaiting("CreateContainerConfigError"))},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonConfigError, condTrue: true, delete: true,
				events: []string{v1alpha1.ReasonConfigError}},
		},
		"missing skill ConfigMap within the grace: wait, no Job": {
			in: Observed{Run: newRun(), Instance: newInstance(), MissingConfigMaps: []string{"k8s-ops"}, Now: t0.Add(10 * time.Second)},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonConfigError,
				requeue: 20 * time.Second, events: []string{v1alpha1.ReasonConfigError}},
		},
		"missing skill ConfigMap past the grace: ConfigError": {
			in: Observed{Run: newRun(), Instance: newInstance(), MissingConfigMaps: []string{"k8s-ops"}},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonConfigError, condTrue: true,
				events: []string{v1alpha1.ReasonConfigError},
				check:  func(t *testing.T, d Decision) { assert.Contains(t, d.Status.Error, "k8s-ops") }},
		},
		"Job rejected by the API server: InvalidSpec": {
			in: Observed{Run: newRun(), Instance: newInstance(), Refused: Refusal{Kind: RefusedInvalid, Reason: "spec.template: invalid"}},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonInvalidSpec, condTrue: true,
				events: []string{v1alpha1.ReasonInvalidSpec}},
		},
		"server mode is admitted: Deployment and Service created, no Job": {
			in: Observed{Run: newRun(withMode(v1alpha1.ModeServer)), Instance: newInstance()},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, "run-server", action[*appsv1.Deployment](d, Create, KindDeployment).Name)
					assert.Equal(t, "run-server", action[*corev1.Service](d, Create, KindService).Name)
					assert.True(t, d.AddFinalizer)
					assert.Equal(t, "run-server", d.Status.DeploymentName)
				}},
		},
		"sub-agent too deep: SpawnDepthExceeded": {
			in: Observed{Run: newRun(withParent("parent", 3), withOwner(parent)), Instance: newInstance(), Parent: parent},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonSpawnDepthExceeded, condTrue: true,
				events: []string{v1alpha1.ReasonSpawnDepthExceeded}},
		},
		"sub-agent beyond maxChildrenPerAgent: TooManyChildren": {
			in: Observed{Run: newRun(withParent("parent", 1), withOwner(parent)), Instance: newInstance(), Parent: parent, ChildRank: 3},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTooManyChildren, condTrue: true,
				events: []string{v1alpha1.ReasonTooManyChildren}},
		},
		"sub-agent when the instance is at maxConcurrent: waits for capacity": {
			in: Observed{Run: newRun(withParent("parent", 1), withOwner(parent)), Instance: newInstance(withLimits(2, 2, 3)), Parent: parent, ActiveSubagents: 2},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonWaitingForCapacity,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonWaitingForCapacity}},
		},
		"sub-agent with a free slot but an older run waiting: still waits": {
			in: Observed{Run: newRun(withParent("parent", 1), withOwner(parent)), Instance: newInstance(withLimits(2, 2, 3)), Parent: parent,
				ActiveSubagents: 1, WaitingAhead: 1},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonWaitingForCapacity,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonWaitingForCapacity}},
		},
		"waiting sub-agent whose slot freed: admitted": {
			in: Observed{Run: newRun(withParent("parent", 1), withOwner(parent), withPhase(v1alpha1.PhasePending),
				withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)),
				Instance: newInstance(withLimits(2, 2, 3)), Parent: parent, ActiveSubagents: 1},
			want: want{phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				create: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated},
				check: func(t *testing.T, d Decision) {
					c := findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted)
					assert.Equal(t, now, c.LastTransitionTime.Time)
					assert.Contains(t, envOf(action[*batchv1.Job](d, Create, KindJob)), "PARENT_RUN_NAME=parent")
				}},
		},
		"sub-agent not yet owned by its parent: ownerReference added": {
			in: Observed{Run: newRun(withParent("parent", 1)), Instance: newInstance(), Parent: parent},
			want: want{phase: v1alpha1.PhasePending, owner: true, create: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated},
				check: func(t *testing.T, d Decision) {
					assert.Equal(t, parent.UID, d.SetOwner.UID)
					assert.Nil(t, d.SetOwner.Controller)
				}},
		},
		"sub-agent whose parent does not exist past the grace: Failed": {
			in: Observed{Run: newRun(withParent("ghost", 1)), Instance: newInstance()},
			want: want{phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonInvalidSpec, condTrue: true,
				events: []string{v1alpha1.ReasonInvalidSpec}},
		},
		"Succeeded absorbs: cleanup of a Job left behind": {
			in: Observed{Run: newRun(running(), withPhase(v1alpha1.PhaseSucceeded)), Instance: newInstance(), Objects: Objects{KindJob: jobFor(newRun())},
				Pod: newPod(agentExited(1, ""))},
			want: want{phase: v1alpha1.PhaseSucceeded, delete: true},
		},
		"Failed absorbs: nothing brings it back": {
			in: Observed{Run: newRun(running(), withPhase(v1alpha1.PhaseFailed), withCleanup(v1alpha1.CleanupKeep)), Instance: newInstance(),
				Objects: Objects{KindJob: jobFor(newRun())}, Pod: newPod(agentExited(0, reportJSON))},
			want: want{phase: v1alpha1.PhaseFailed,
				// Only the kept children are retired (they leave the caches).
				check: func(t *testing.T, d Decision) { assertRetires(t, d, "Job/run", "Pod/run-pod") }},
		},
		"a retired child is not retired again": {
			in: Observed{Run: newRun(running(), withPhase(v1alpha1.PhaseSucceeded), withCleanup(v1alpha1.CleanupKeep)), Instance: newInstance(),
				Objects: Objects{KindJob: retired(jobFor(newRun()))}, Pod: retired(newPod(agentExited(0, reportJSON)))},
			want: want{phase: v1alpha1.PhaseSucceeded, check: func(t *testing.T, d Decision) { assertRetires(t, d) }},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := tc.in
			if in.Now.IsZero() {
				in.Now = now
			}
			in.Config = testConfig
			before := in.Run.DeepCopy()
			d := Next(in)
			assert.Equal(t, before, in.Run, "Next mutated its input")
			w := tc.want
			assert.Equal(t, w.phase, d.Status.Phase)
			if w.condition != "" {
				c := findCondition(d.Status.Conditions, w.condition)
				require.NotNil(t, c, "condition %s", w.condition)
				assert.Equal(t, w.reason, c.Reason)
				assert.Equal(t, w.condTrue, c.Status == metav1.ConditionTrue)
				assert.Contains(t, v1alpha1.Reasons, c.Reason)
			}
			assert.Equal(t, w.create, action[*batchv1.Job](d, Create, KindJob) != nil, "create")
			assert.Equal(t, w.delete, acts(d, Delete, KindJob), "delete")
			assert.Equal(t, w.owner, d.SetOwner != nil, "owner")
			assert.Equal(t, w.requeue, d.RequeueAfter, "requeue")
			var reasons []string
			for _, e := range d.Events {
				reasons = append(reasons, e.Reason)
				assert.Contains(t, v1alpha1.Reasons, e.Reason)
			}
			assert.Equal(t, w.events, reasons, "events")
			if d.Status.Phase == v1alpha1.PhaseFailed && !in.Run.Status.Phase.IsTerminal() {
				assert.NotEmpty(t, d.Status.Error)
				assert.NotNil(t, d.Status.CompletedAt)
			}
			if w.check != nil {
				w.check(t, d)
			}
			assertIdempotent(t, in, d)
		})
	}
}

// assertIdempotent applies d to the observation and decides again: the
// status must come back the same, with no action and no event.
func assertIdempotent(t *testing.T, in Observed, d Decision) {
	t.Helper()
	again := Next(applied(in, d))
	assert.True(t, apiequality.Semantic.DeepEqual(d.Status, again.Status), "status changed on the second pass:\nfirst:  %+v\nsecond: %+v", d.Status, again.Status)
	assertNoActions(t, again)
}

func envOf(j *batchJob) []string {
	var out []string
	for _, c := range j.Spec.Template.Spec.Containers {
		if c.Name != v1alpha1.AgentContainerName {
			continue
		}
		for _, e := range c.Env {
			out = append(out, e.Name+"="+e.Value)
		}
	}
	return out
}

func TestRequeueNeverBelowMinimum(t *testing.T) {
	d := Next(Observed{Run: newRun(), Instance: newInstance(), Config: testConfig, Now: t0.Add(10*time.Minute - time.Millisecond)})
	assert.Equal(t, MinRequeue, d.RequeueAfter)
}

func TestLimitsDefaults(t *testing.T) {
	assert.Equal(t, SubagentLimits{MaxDepth: 2, MaxConcurrent: 5, MaxChildrenPerAgent: 3}, Limits(nil))
	assert.Equal(t, SubagentLimits{MaxDepth: 1, MaxConcurrent: 7, MaxChildrenPerAgent: 0}, Limits(newInstance(withLimits(1, 7, 0))))
	assert.Equal(t, 50, HistoryLimit(nil))
	assert.Equal(t, 3, HistoryLimit(newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.RunHistoryLimit = ptr.To[int32](3) })))
}

// assertRetires checks that d retires exactly the objects named kind/name,
// in order, and deletes nothing.
func assertRetires(t *testing.T, d Decision, want ...string) {
	t.Helper()
	var got []string
	for _, a := range d.Actions {
		require.Equal(t, Retire, a.Verb, "%s %s/%s", a.Verb, a.Kind, a.Object.GetName())
		require.NotEmpty(t, a.Object.GetUID(), "a retire carries the UID precondition")
		got = append(got, string(a.Kind)+"/"+a.Object.GetName())
	}
	assert.Equal(t, want, got)
}

func retired[T metav1.Object](obj T) T {
	l := maps.Clone(obj.GetLabels())
	if l == nil {
		l = map[string]string{}
	}
	l[v1alpha1.LabelRetired] = "true"
	obj.SetLabels(l)
	return obj
}
