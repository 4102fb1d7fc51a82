package agentrun

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func withCancel() runOpt { return func(r *v1alpha1.AgentRun) { r.Spec.Cancel = true } }

func withMaxRuns(n int32) func(*v1alpha1.SympoziumInstance) {
	return func(i *v1alpha1.SympoziumInstance) { i.Spec.MaxConcurrentRuns = new(n) }
}

func withControllerLimit(n int) fixtureOption {
	return func(o *Options) { o.Phase.MaxConcurrentRuns = n }
}

// waitsForCapacity checks that the last sync of name wrote it waiting for
// a slot (message containing msg) and created nothing.
func waitsForCapacity(t *testing.T, f *fixture, name, msg string) {
	t.Helper()
	assert.Empty(t, describe(f.kubeWrites()), "no workload for %s", name)
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/" + name}, describe(cw))
	c := findCond(object[*v1alpha1.AgentRun](t, cw[0]).Status, v1alpha1.ConditionAdmitted)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionFalse, c.Status)
	assert.Equal(t, v1alpha1.ReasonWaitingForCapacity, c.Reason)
	assert.Contains(t, c.Message, msg)
}

func TestSyncCancelRunning(t *testing.T) {
	f := newFixture(t)
	run := newRun("run", withStatus(runningStatus("run", "run-pod")), withCancel(), withCleanup(v1alpha1.CleanupKeep))
	job := jobOf(run, "job-uid")
	f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentRunning(t0.Add(5*time.Second))))

	require.NoError(t, f.sync("run"))

	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
	st := object[*v1alpha1.AgentRun](t, cw[0]).Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	assert.NotNil(t, st.CompletedAt)
	assert.Equal(t, v1alpha1.ReasonCancelled, findCond(st, v1alpha1.ConditionFailed).Reason)
	assert.Equal(t, "Cancelled: the run was cancelled (spec.cancel) while running", st.Error)
	assert.Equal(t, []string{"delete jobs ns/run"}, describe(f.kubeWrites()), "the Job goes, even with cleanup: keep")
	assert.Contains(t, f.events(), "Warning Cancelled the run was cancelled (spec.cancel) while running")

	// Idempotent: once the caches caught up (and after a restart, which
	// starts from the same caches), nothing more is written.
	f.refresh()
	f.clearActions()
	assert.Equal(t, 1, f.converge("run", 3), "the first pass writes nothing")
	_, err := f.trackedJob("run")
	assert.True(t, apierrors.IsNotFound(err))
}

func TestSyncParentFinishedStopsChildren(t *testing.T) {
	f := newFixture(t)
	parent := newRun("parent", withStatus(runningStatus("parent", "parent-pod")))
	child := newRun("child", withParent(parent, 1), withOwner(parent), withStatus(runningStatus("child", "child-pod")))
	waiting := newRun("waiting", withParent(parent, 1), withOwner(parent), withCreated(t0.Add(time.Second)))
	cjob := jobOf(child, "child-job-uid")
	f.add(newInstance("inst"), parent, child, waiting, cjob)
	require.Len(t, f.handlers[kindRun], 1)

	finished := parent.DeepCopy()
	finished.Status.Phase = v1alpha1.PhaseSucceeded
	f.handler(kindRun).OnUpdate(parent, finished)
	assert.Equal(t, []string{"ns/child", "ns/parent", "ns/waiting"}, f.queued(), "the parent's end wakes its children")

	f.update(finished)
	f.clearActions()
	require.NoError(t, f.sync("child"))
	st := f.trackedRun("child").Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	assert.Equal(t, v1alpha1.ReasonParentFinished, findCond(st, v1alpha1.ConditionFailed).Reason)
	assert.Contains(t, st.Error, "parent run parent finished (Succeeded)")
	assert.Equal(t, []string{"delete jobs ns/child"}, describe(f.kubeWrites()))

	f.clearActions()
	require.NoError(t, f.sync("waiting"))
	assert.Empty(t, describe(f.kubeWrites()), "a waiting child is never admitted")
	assert.Equal(t, v1alpha1.ReasonParentFinished, findCond(f.trackedRun("waiting").Status, v1alpha1.ConditionFailed).Reason)
}

func TestSyncInstanceRunLimit(t *testing.T) {
	f := newFixture(t)
	older := newRun("a", withCreated(t0))
	younger := newRun("b", withCreated(t0.Add(time.Second)))
	f.add(newInstance("inst", withMaxRuns(1)), older, younger)

	// The younger run waits behind the older one, although no slot is taken.
	require.NoError(t, f.sync("b"))
	waitsForCapacity(t, f, "b", "waiting for a run slot of instance inst (maxConcurrentRuns 1)")
	f.clearActions()

	require.NoError(t, f.sync("a"))
	assert.Equal(t, []string{"create jobs ns/a"}, describe(f.kubeWrites()))
	f.clearActions()

	// The cache does not show a admitted yet: the admission in memory
	// keeps b out.
	require.NoError(t, f.sync("b"))
	waitsForCapacity(t, f, "b", "maxConcurrentRuns 1")
	f.clearActions()

	f.refresh()
	f.converge("a", 3)
	f.converge("b", 3)
	assert.Empty(t, f.trackedRun("b").Status.JobName)

	// a finishes: b takes its slot.
	before := f.trackedRun("a")
	done := before.DeepCopy()
	done.Status.Phase = v1alpha1.PhaseSucceeded
	f.update(done)
	f.handler(kindRun).OnUpdate(before, done) // as the informer delivers it
	assert.Contains(t, f.queued(), "ns/b", "a's slot freed wakes b")
	f.clearActions()
	require.NoError(t, f.sync("b"))
	assert.Equal(t, []string{"create jobs ns/b"}, describe(f.kubeWrites()))
}

// TestSyncRunLimitAfterRestart: the controller stopped after creating a's
// Job and before recording it. A new controller starts from the caches,
// which show a not admitted but hold its Job: a still holds the slot.
func TestSyncRunLimitAfterRestart(t *testing.T) {
	f := newFixture(t)
	a := newRun("a", withCreated(t0.Add(time.Second)))
	b := newRun("b", withCreated(t0.Add(2*time.Second)))
	f.add(newInstance("inst", withMaxRuns(1)), a, b, jobOf(a, "a-job-uid"))

	require.NoError(t, f.sync("b"))
	waitsForCapacity(t, f, "b", "maxConcurrentRuns 1")
	f.clearActions()
	require.NoError(t, f.sync("a"))
	assert.Empty(t, describe(f.kubeWrites()), "a's Job is adopted, not created twice")
	assert.Equal(t, "a", f.trackedRun("a").Status.JobName)
}

func TestSyncControllerRunLimit(t *testing.T) {
	f := newFixture(t, withControllerLimit(2))
	// inst-a allows one run: its second run waits for inst-a, and must not
	// count ahead of the runs of other instances for the controller's slots.
	held := newRun("a2", withInstance("inst-a"), withCreated(t0.Add(time.Second)),
		withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, ObservedGeneration: 1,
			Conditions: []metav1.Condition{cond(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity,
				"waiting for a run slot of instance inst-a (maxConcurrentRuns 1)", t0)}}))
	a1 := newRun("a1", withInstance("inst-a"), withCreated(t0), withStatus(runningStatus("a1", "a1-pod")))
	b1 := newRun("b1", withInstance("inst-b"), withCreated(t0.Add(2*time.Second)))
	b2 := newRun("b2", withInstance("inst-b"), withCreated(t0.Add(3*time.Second)))
	f.add(newInstance("inst-a", withMaxRuns(1)), newInstance("inst-b"), a1, held, b1, b2, jobOf(a1, "a1-job-uid"))

	require.NoError(t, f.sync("b1"))
	assert.Equal(t, []string{"create jobs ns/b1"}, describe(f.kubeWrites()), "a2 waits for its instance, not ahead of b1")
	f.clearActions()

	require.NoError(t, f.sync("b2"))
	waitsForCapacity(t, f, "b2", "waiting for a run slot of the controller (--max-concurrent-runs 2)")
}

// TestSyncRunLimitSkipsRunsHeldBackElsewhere: sub-agent runs waiting for
// the instance's only sub-agent slot do not hold up a younger top-level run
// for the instance's free run slots.
func TestSyncRunLimitSkipsRunsHeldBackElsewhere(t *testing.T) {
	f := newFixture(t)
	parent := newRun("parent", withCreated(t0), withStatus(runningStatus("parent", "parent-pod")))
	busy := newRun("busy", withParent(parent, 1), withOwner(parent), withCreated(t0), withStatus(runningStatus("busy", "busy-pod")))
	queued := newRun("queued", withParent(parent, 1), withOwner(parent), withCreated(t0.Add(time.Second)))
	top := newRun("top", withCreated(t0.Add(2*time.Second)))
	f.add(newInstance("inst", withMaxRuns(3), withLimits(2, 1, 3)), parent, busy, queued, top, jobOf(parent, "p-job"), jobOf(busy, "b-job"))

	require.NoError(t, f.sync("queued"))
	waitsForCapacity(t, f, "queued", "sub-agent slot")
	f.clearActions()
	require.NoError(t, f.sync("top"))
	assert.Equal(t, []string{"create jobs ns/top"}, describe(f.kubeWrites()), "2 of 3 slots are taken; queued waits for another limit")
}
