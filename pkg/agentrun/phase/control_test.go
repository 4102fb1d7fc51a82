package phase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func withCancel() runOpt { return func(r *v1alpha1.AgentRun) { r.Spec.Cancel = true } }

func withMaxRuns(n int32) func(*v1alpha1.SympoziumInstance) {
	return func(i *v1alpha1.SympoziumInstance) { i.Spec.MaxConcurrentRuns = new(n) }
}

// withFailed is a finished, failed status (no workload left).
func withFailed(reason string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Status.Phase = v1alpha1.PhaseFailed
		r.Status.ObservedGeneration = r.Generation
		r.Status.CompletedAt = new(metav1.NewTime(t0.Add(30 * time.Second)))
		r.Status.Error = reason + ": m"
		withCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, reason)(r)
	}
}

// parentRun is the parent of the sub-agent runs below, with opts applied.
func parentRun(opts ...runOpt) *v1alpha1.AgentRun {
	p := newRun(opts...)
	p.Name, p.UID = "parent", "parent-uid"
	return p
}

func child(k kit, parent *v1alpha1.AgentRun, opts ...runOpt) *v1alpha1.AgentRun {
	return k.run(append([]runOpt{withParent(parent.Name, 1), withOwner(parent)}, opts...)...)
}

// running is the agent's pod while it runs.
func agentPodRunning() *corev1.Pod { return newPod(agentRunning(t0.Add(5 * time.Second))) }

// control is the run-control table (spec.cancel, a parent's end and
// deadline, maxConcurrentRuns), run over every backend.
var control = []lifecycleStep{
	{
		name: "cancel while waiting for the instance: Cancelled, nothing created",
		in: func(k kit) Observed {
			return Observed{Run: k.run(withCancel(), withPhase(v1alpha1.PhasePending),
				withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonInstanceNotFound))}
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonCancelled,
			condTrue: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "cancelled (spec.cancel) while waiting (InstanceNotFound)"}},
	},
	{
		name: "cancel while waiting for capacity: Cancelled, nothing created",
		in: func(k kit) Observed {
			return Observed{Run: k.run(withCancel(), withPhase(v1alpha1.PhasePending),
				withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)),
				Instance: newInstance(withMaxRuns(1)), Runs: Load{Active: 1}}
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonCancelled,
			events: []string{v1alpha1.ReasonCancelled}, errorHas: "while waiting (WaitingForCapacity)"}},
	},
	{
		name: "cancelled by a schedule (Replace): the message names it",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.started, withCancel(), func(r *v1alpha1.AgentRun) {
				r.Annotations = map[string]string{v1alpha1.AnnotationCancelledBy: "SympoziumSchedule hb (concurrencyPolicy Replace)"}
			}), Instance: newInstance()}
			k.workload(&in, agentPodRunning())
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionRunning, reason: v1alpha1.ReasonCancelled,
				deletes: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "cancelled (spec.cancel) by SympoziumSchedule hb (concurrencyPolicy Replace) while running"},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionServing, reason: v1alpha1.ReasonCancelled,
				deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "by SympoziumSchedule hb (concurrencyPolicy Replace) while serving"},
		},
	},
	{
		name: "cancel at creation: never admitted",
		in:   func(k kit) Observed { return Observed{Run: k.run(withCancel()), Instance: newInstance()} },
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonCancelled,
			condTrue: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "before it was admitted"}},
	},
	{
		name: "cancel an admitted run: its workload goes even with cleanup keep",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.admitted, withCancel(), withCleanup(v1alpha1.CleanupKeep)), Instance: newInstance()}
			k.workload(&in, newPod())
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonCancelled, condTrue: true,
				deletes: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "before the agent started"},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonCancelled, condTrue: true,
				deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "before the agent started"},
		},
	},
	{
		name: "cancel a running (serving) run: its workload goes even with cleanup keep",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.started, withCancel(), withCleanup(v1alpha1.CleanupKeep)), Instance: newInstance()}
			k.workload(&in, agentPodRunning())
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionRunning, reason: v1alpha1.ReasonCancelled,
				deletes: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "cancelled (spec.cancel) while running"},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionServing, reason: v1alpha1.ReasonCancelled,
				deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonCancelled}, errorHas: "cancelled (spec.cancel) while serving"},
		},
	},
	{
		name: "cancel a finished run: ignored",
		in: func(k kit) Observed {
			return Observed{Run: k.run(withCancel(), withFailed(v1alpha1.ReasonAgentFailed)), Instance: newInstance()}
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonAgentFailed, condTrue: true}},
	},
	{
		name: "the parent finished: its running child is stopped",
		in: func(k kit) Observed {
			p := parentRun(withFailed(v1alpha1.ReasonAgentFailed))
			in := Observed{Run: child(k, p, k.started), Instance: newInstance(), Parent: p}
			k.workload(&in, agentPodRunning())
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonParentFinished, condTrue: true,
				deletes: true, events: []string{v1alpha1.ReasonParentFinished}, errorHas: "parent run parent finished (Failed) before this run"},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonParentFinished, condTrue: true,
				deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonParentFinished}, errorHas: "parent run parent finished"},
		},
	},
	{
		name: "the parent was cancelled: its waiting child is cancelled",
		in: func(k kit) Observed {
			p := parentRun(withCancel(), withFailed(v1alpha1.ReasonCancelled))
			return Observed{Run: child(k, p, withPhase(v1alpha1.PhasePending),
				withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)), Instance: newInstance(), Parent: p}
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonCancelled, condTrue: true,
			events: []string{v1alpha1.ReasonCancelled}, errorHas: "parent run parent was cancelled"}},
	},
	{
		name: "a finished run of the parent's name that does not own the child is not its parent",
		in: func(k kit) Observed {
			p := parentRun(withFailed(v1alpha1.ReasonAgentFailed))
			other := p.DeepCopy()
			other.UID = "reused-name-uid"
			in := Observed{Run: child(k, p, k.started), Instance: newInstance(), Parent: other}
			k.workload(&in, agentPodRunning())
			return in
		},
		wants: map[Backend]lwant{
			"":            {phase: v1alpha1.PhaseRunning, condition: v1alpha1.ConditionRunning, reason: v1alpha1.ReasonStarted, condTrue: true, requeue: 9 * time.Minute},
			BackendServer: {phase: v1alpha1.PhaseServing, condition: v1alpha1.ConditionServing, reason: v1alpha1.ReasonStarted, condTrue: true},
		},
	},
	{
		name: "a child's deadline is its parent's when that is earlier",
		in: func(k kit) Observed {
			p := parentRun(withTimeout(2*time.Minute), withPhase(v1alpha1.PhaseRunning))
			return Observed{Run: child(k, p), Instance: newInstance(), Parent: p}
		},
		// Admitted, woken at the parent's deadline (t0+2m), not its own (t0+10m).
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				creates: true, requeue: time.Minute, events: []string{v1alpha1.ReasonJobCreated}, progress: []string{v1alpha1.ReasonJobCreated}},
			BackendServer: {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				creates: true, addFinalizer: true, requeue: time.Minute, events: []string{v1alpha1.ReasonJobCreated}, progress: []string{v1alpha1.ReasonJobCreated}},
		},
	},
	{
		name: "a child times out at its parent's deadline",
		in: func(k kit) Observed {
			p := parentRun(withTimeout(2*time.Minute), withPhase(v1alpha1.PhaseRunning))
			in := Observed{Run: child(k, p, k.admitted), Instance: newInstance(), Parent: p, Now: t0.Add(2 * time.Minute)}
			k.workload(&in, newPod())
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTimeout, condTrue: true,
				deletes: true, events: []string{v1alpha1.ReasonTimeout}},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonServerNotReady, condTrue: true,
				deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonServerNotReady}},
		},
	},
	{
		name: "instance at maxConcurrentRuns: waits for capacity",
		in: func(k kit) Observed {
			return Observed{Run: k.run(), Instance: newInstance(withMaxRuns(2)), Runs: Load{Active: 2}}
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonWaitingForCapacity,
			requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonWaitingForCapacity}}},
	},
	{
		name: "a free slot of the instance but an older run waiting: still waits",
		in: func(k kit) Observed {
			return Observed{Run: k.run(), Instance: newInstance(withMaxRuns(2)), Runs: Load{Active: 1, WaitingAhead: 1}}
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonWaitingForCapacity,
			requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonWaitingForCapacity}}},
	},
	{
		name: "the controller at --max-concurrent-runs: waits for capacity",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(), Instance: newInstance(), AllRuns: Load{Active: 3}}
			in.Config.MaxConcurrentRuns = 3
			return in
		},
		wants: map[Backend]lwant{"": {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonWaitingForCapacity,
			requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonWaitingForCapacity}, errorHas: ""}},
	},
	{
		name: "a waiting run whose slot freed: admitted",
		in: func(k kit) Observed {
			return Observed{Run: k.run(withPhase(v1alpha1.PhasePending),
				withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)),
				Instance: newInstance(withMaxRuns(2)), Runs: Load{Active: 1}}
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				creates: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated}, progress: []string{v1alpha1.ReasonJobCreated}},
			BackendServer: {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				creates: true, addFinalizer: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated}, progress: []string{v1alpha1.ReasonJobCreated}},
		},
	},
}

func TestControlEveryBackend(t *testing.T) { runLifecycle(t, control) }

func TestControllerWideLimit(t *testing.T) {
	cfg := testConfig
	cfg.MaxConcurrentRuns = 3
	d := Next(Observed{Run: newRun(), Instance: newInstance(), AllRuns: Load{Active: 2, WaitingAhead: 1}, Config: cfg, Now: now})
	c := findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted)
	assert.Equal(t, v1alpha1.ReasonWaitingForCapacity, c.Reason)
	assert.Contains(t, c.Message, "--max-concurrent-runs 3")
	d = Next(Observed{Run: newRun(), Instance: newInstance(), AllRuns: Load{Active: 2}, Config: cfg, Now: now})
	assert.Equal(t, v1alpha1.ReasonJobCreated, findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted).Reason)
	assert.Equal(t, 0, MaxConcurrentRuns(newInstance()))
	assert.Equal(t, 4, MaxConcurrentRuns(newInstance(withMaxRuns(4))))
}

// FuzzControl checks the run-control invariants on arbitrary observations:
// a live cancelled run (or one whose parent finished) ends Failed and
// creates nothing; a finished run ignores cancel; no run is admitted past a
// full limit; and a second pass over the applied decision is a no-op.
func FuzzControl(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint8(0), uint8(0), uint8(0))
	f.Add(uint8(1), uint8(3), uint8(2), uint8(7), uint8(9))
	f.Add(uint8(4), uint8(5), uint8(4), uint8(255), uint8(3))
	f.Fuzz(func(t *testing.T, phaseIdx, parentIdx, limit, flags, load uint8) {
		k := kits[int(flags>>5)%len(kits)]
		opts := []runOpt{}
		switch fuzzPhases[int(phaseIdx)%len(fuzzPhases)] {
		case v1alpha1.PhasePending:
			opts = append(opts, k.admitted)
		case v1alpha1.PhaseRunning, v1alpha1.PhaseServing:
			opts = append(opts, k.started)
		case v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed:
			opts = append(opts, withFailed(v1alpha1.ReasonAgentFailed))
		}
		if flags&1 != 0 {
			opts = append(opts, withCancel())
		}
		var p *v1alpha1.AgentRun
		if flags&2 != 0 {
			p = parentRun(withPhase(fuzzPhases[int(parentIdx)%len(fuzzPhases)]), withTimeout(time.Duration(parentIdx%4+1)*time.Minute))
			if flags&4 != 0 {
				withCancel()(p)
			}
			opts = append([]runOpt{withParent(p.Name, 1), withOwner(p)}, opts...)
		}
		run := k.run(opts...)
		in := Observed{Run: run, Instance: newInstance(), Parent: p, Config: testConfig, SandboxAPI: servedAPI, Now: now,
			Runs: Load{Active: int(load % 4), WaitingAhead: int(load / 4 % 3)}, AllRuns: Load{Active: int(load / 16 % 4), WaitingAhead: int(load / 64)}}
		if limit%3 == 1 {
			withMaxRuns(int32(limit%4 + 1))(in.Instance)
		}
		if limit%5 == 2 {
			in.Config.MaxConcurrentRuns = int(limit%3 + 1)
		}
		if IsAdmitted(run) {
			k.workload(&in, agentPodRunning())
		}
		d := Next(in)
		parentDone := p != nil && p.Status.Phase.IsTerminal()
		switch {
		case run.Status.Phase.IsTerminal():
			if !assert.Equal(t, withGeneration(run.Status, run.Generation), d.Status) {
				t.FailNow()
			}
		case run.Spec.Cancel || parentDone:
			if d.Status.Phase != v1alpha1.PhaseFailed || verbs(d, Create) {
				t.Fatalf("a cancelled run goes on: %+v", d)
			}
			r := failedReason(&d.Status)
			if r != v1alpha1.ReasonCancelled && r != v1alpha1.ReasonParentFinished {
				t.Fatalf("reason %s", r)
			}
		case !IsAdmitted(run) && verbs(d, Create):
			if in.Runs.full(MaxConcurrentRuns(in.Instance)) || in.AllRuns.full(in.Config.MaxConcurrentRuns) {
				t.Fatalf("admitted past a full limit: %+v", in)
			}
		}
		assertIdempotent(t, in, d)
	})
}
