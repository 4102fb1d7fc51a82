package instance

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestSyncExpiresFinishedRunsByTTL: a finished run's TTL is a timer on the
// queue (AddAfter on the injected clock), not a poll: the sync before
// expiry deletes nothing and schedules the instance for the moment the TTL
// runs out; stepping the clock there brings the key back, and that sync
// deletes the run. A live run with a TTL is never touched.
func TestSyncExpiresFinishedRunsByTTL(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	done := now.Add(-30 * time.Second)
	expiring := newRun("expiring", now.Add(-time.Minute), v1alpha1.PhaseFailed, &done)
	expiring.Spec.TTLSecondsAfterFinished = new(int32(60))
	live := newRun("live", now.Add(-time.Minute), v1alpha1.PhaseRunning, nil)
	live.Spec.TTLSecondsAfterFinished = new(int32(0))
	f.add(newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.RunTTLSecondsAfterFinished = new(int32(3600)) }), expiring, live)

	require.NoError(t, f.sync("inst"))
	assert.Empty(t, deletes(t, writes(f.client.Actions())), "nothing has expired yet")
	assert.Equal(t, 0, f.c.queue.Len(), "not due yet")

	f.clock.Step(29 * time.Second)
	assert.Equal(t, 0, f.c.queue.Len())
	f.clock.Step(time.Second)
	require.Eventually(t, func() bool { return f.c.queue.Len() == 1 }, 5*time.Second, 10*time.Millisecond,
		"the instance is queued when the TTL runs out")

	f.refresh()
	f.client.ClearActions()
	require.NoError(t, f.sync("inst"))
	assert.Equal(t, []deleted{{"expiring", types.UID("expiring-uid"), metav1.DeletePropagationBackground}},
		deletes(t, writes(f.client.Actions())))
}

// TestSyncSeparateHistoryLimits keeps one succeeded and two failed runs.
func TestSyncSeparateHistoryLimits(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance(func(i *v1alpha1.SympoziumInstance) {
		i.Spec.SuccessfulRunsHistoryLimit, i.Spec.FailedRunsHistoryLimit = new(int32(1)), new(int32(2))
	}))
	for i, ph := range []v1alpha1.AgentRunPhase{v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed, v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed, v1alpha1.PhaseFailed} {
		d := t0.Add(time.Duration(i) * time.Minute)
		f.add(newRun([]string{"s0", "f1", "s2", "f3", "f4"}[i], t0, ph, &d))
	}
	require.NoError(t, f.sync("inst"))
	assert.Equal(t, []deleted{
		{"s0", "s0-uid", metav1.DeletePropagationBackground},
		{"f1", "f1-uid", metav1.DeletePropagationBackground},
	}, deletes(t, writes(f.client.Actions())[:2]))
}
