package e2e

// Waiting for conditions, never for time (HOUSE_STYLE: a flaky test is a
// defect of the product's gate). The helpers here replace the fixed sleeps
// the suite used to have:
//   - afterCreationSecondOf: "distinct creation seconds" is a condition on
//     the clock, read against the object's own creationTimestamp;
//   - barrierRun: "give the controller time to do something wrong" becomes
//     "the controller has carried a later run through its whole life";
//   - consistently: where no event marks that something did not happen,
//     the observation window is explicit and fails at the first violation.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// afterCreationSecondOf waits until a run created now gets a later
// creationTimestamp than the run name: creation timestamps have whole
// seconds, so runs whose order matters (oldest first) must not share one.
// It reads the run's timestamp back from the API server and waits for the
// clock to pass that second (the suite's API server runs on this machine,
// on this clock), instead of sleeping a fixed 1.1s.
func (e *env) afterCreationSecondOf(t *testing.T, ns, name string) {
	t.Helper()
	created := e.getRun(t, ns, name).CreationTimestamp.Time
	next := created.Add(time.Second)
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return !time.Now().Before(next), nil
	})
	require.NoError(t, err, "the clock did not pass the creation second of %s/%s (%s)", ns, name, created)
}

// barrierRun is a barrier for absence checks ("nothing else happens"): it
// creates a run of instance inst that succeeds at once, waits until it has
// succeeded and its Job and pod are gone, then deletes it and waits until
// it is gone. By then the controller has handled every event it received
// before the barrier run was created: the informers deliver each kind's
// events in the API server's order, the run queue serves keys in the order
// they came (new runs in front, but a run's life takes several syncs, each
// waiting for the Job controller and the kubelet in between), and the
// barrier's own syncs came after them. Call it once the event the check is
// about has happened (e.g. the run finished and its children were cleaned
// up); then check that nothing changed.
//
// The run counts in its instance's history while it exists: do not use it
// where the test counts runs or Events of the whole namespace.
func (e *env) barrierRun(t *testing.T, ns, inst string) string {
	t.Helper()
	name := fmt.Sprintf("barrier-%d", time.Now().UnixNano()%1000000)
	e.apply(t, runYAML(ns, name, inst, map[string]string{"SIM_MESSAGE": successReport, "SIM_DURATION": "0s"}, ""))
	e.waitPhase(t, ns, name, v1alpha1.PhaseSucceeded, 2*time.Minute)
	e.waitNoChildren(t, ns, name, 2*time.Minute)
	err := e.client.SympoziumV1alpha1().AgentRuns(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	require.NoError(t, err)
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	require.NoError(t, err, "the barrier run %s/%s was not deleted", ns, name)
	return name
}

// consistently checks cond every 100ms for the window d and fails the test
// at the first violation, with cond's explanation. It is for absences that
// no event marks ("it stays so" of a component whose progress the test
// cannot observe): prefer a barrier (barrierRun, or the controller acting
// on a later object) wherever one exists, and say at the call site why
// there is none. A window can only miss a bug, never fail a correct
// product, so it does not make the test flaky on a loaded machine.
func consistently(t *testing.T, d time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	start := time.Now()
	var violation error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, d, true, func(context.Context) (bool, error) {
		if ok, why := cond(); !ok {
			violation = fmt.Errorf("%s: violated after %s of a %s window: %s", what, time.Since(start).Round(time.Millisecond), d, why)
			return false, violation
		}
		return false, nil
	})
	if violation != nil {
		t.Fatal(violation)
	}
	require.True(t, wait.Interrupted(err), "%s: %v", what, err)
}
