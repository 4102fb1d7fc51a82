package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// chaosPreemption is what the infrastructure does to a chaos run.
type chaosPreemption int

const (
	notPreempted      chaosPreemption = iota
	preemptedRetried                  // preempted once, default budget (2): Succeeded on attempt 2
	preemptedNoBudget                 // preempted once, retry.infrastructure 0: PodLost
)

// TestChaosPreemptionsControllerKilled mixes preemptions (what the kubelet
// does to a pod it preempts: DisruptionTarget, exit 137, Failed) and
// evictions through the Eviction API (kubectl drain) into a
// workload while the controller is SIGKILLed and restarted: every run ends
// with the right outcome and reason (the preempted ones retried by their
// Job, never by a second Job), each run had exactly one Job, and nothing
// is left behind. Kept apart from TestChaosControllerKilled so that other
// chaos additions merge beside it.
func TestChaosPreemptionsControllerKilled(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	n := int(chaosSize(uint64(max(0, *chaosRuns/3)), "SYMPOZIUM_CHAOS_PREEMPT_RUNS", 45))
	seed := chaosSize(*chaosSeed, "SYMPOZIUM_CHAOS_SEED", uint64(time.Now().UnixNano()))
	t.Logf("chaos+preemptions: %d runs, seed %d (rerun with SYMPOZIUM_CHAOS_SEED=%d or -chaos-seed %d)", n, seed, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9ee))

	ns := e.namespace(t, nil)
	e.apply(t, instanceYAML(ns, "inst", "  runHistoryLimit: 100000\n"))
	runs := make([]chaosRun, n)
	fate := make([]chaosPreemption, n)
	for i := range runs {
		c := chaosRun{name: fmt.Sprintf("pre-%04d", i), duration: "1s"}
		c.result = "result of " + c.name
		switch rng.IntN(3) {
		case 1:
			// The simulated agent never exits by itself: the test
			// plays the kubelet and ends the replacement pod's agent
			// (finishReplacement). A kwok exit timer, armed while the
			// first pod ran, fired after the disruption on a loaded
			// machine and turned the preempted pod Succeeded, a pod no
			// kubelet would report.
			fate[i], c.duration = preemptedRetried, "1h"
		case 2:
			fate[i], c.duration = preemptedNoBudget, "1h"
		default:
			if rng.IntN(3) == 0 {
				c.exitCode, c.errText = 3, "tool failed in "+c.name
			}
		}
		runs[i] = c
	}

	jobUIDs := e.recordJobs(t, ns)
	ctl := e.startController(t, ns)
	ctx := t.Context()
	var wg sync.WaitGroup
	createErr := make(chan error, 1)
	wg.Go(func() {
		for i, c := range runs {
			obj := c.object(ns)
			obj.Spec.Timeout = &metav1.Duration{Duration: 3 * time.Minute}
			if fate[i] == preemptedNoBudget {
				obj.Spec.Retry = &v1alpha1.RetryPolicy{Infrastructure: new(int32(0))}
			}
			if _, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				createErr <- fmt.Errorf("creating %s: %w", c.name, err)
				return
			}
		}
	})
	// The infrastructure preempts each chosen run's first running pod, in
	// parallel with the kills.
	var mu sync.Mutex
	disruptedPod := map[string]string{} // run → the pod the infrastructure stopped
	defer func() {
		if t.Failed() {
			t.Logf("disrupted pods: %v", disruptedPod)
		}
	}()
	for i, c := range runs {
		if fate[i] == notPreempted {
			continue
		}
		disrupt := e.preempt // the kubelet's way
		if i%2 == 0 {
			disrupt = e.evict // kubectl drain's
		}
		wg.Go(func() {
			pod := disrupt(t, ns, c.name)
			mu.Lock()
			disruptedPod[c.name] = pod
			mu.Unlock()
			if fate[i] == preemptedRetried {
				e.finishReplacement(t, ns, c.name, pod)
			}
		})
	}

	// The kill schedule is the test's input, drawn from the seed.
	kills := 6 + rng.IntN(3)
	for k := range kills {
		time.Sleep(time.Duration(300+rng.IntN(2700)) * time.Millisecond)
		ctl.kill()
		t.Logf("chaos+preemptions: kill %d/%d", k+1, kills)
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		ctl = e.startController(t, ns)
	}
	wg.Wait()
	select {
	case err := <-createErr:
		require.NoError(t, err)
	default:
	}

	byName := waitAllTerminal(t, ctx, e, ns, n)

	for i, c := range runs {
		r := byName[c.name]
		if !assert.NotNil(t, r, c.name) {
			continue
		}
		switch {
		case fate[i] == preemptedRetried:
			assert.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, "%s: %s", c.name, r.Status.Error)
			assert.Equal(t, int32(2), r.Status.Attempts, "%s: attempts", c.name)
			assert.Equal(t, c.result, r.Status.Result, "%s: result lost", c.name)
		case fate[i] == preemptedNoBudget:
			assert.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase, c.name)
			assert.Equal(t, v1alpha1.ReasonPodLost, failedReason(r), "%s: %s", c.name, r.Status.Error)
			assert.Equal(t, int32(1), r.Status.Attempts, "%s: attempts", c.name)
		case c.exitCode != 0:
			assert.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase, c.name)
			assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r), "%s: %s", c.name, r.Status.Error)
			assert.Equal(t, int32(1), r.Status.Attempts, "%s: the agent's exit is never retried", c.name)
		default:
			assert.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, "%s: %s", c.name, r.Status.Error)
			assert.Equal(t, int32(1), r.Status.Attempts, "%s: attempts", c.name)
		}
	}

	// One Job per run: a retry is a pod of the same Job, never a new Job.
	uids, err := jobUIDs.get()
	require.NoError(t, err)
	for _, c := range runs {
		assert.Len(t, uids[naming.JobName(c.name)], 1, "Jobs that existed for %s", c.name)
	}
	// No orphans: every run is cleanup: delete.
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		jobs, err1 := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{Limit: 1})
		pods, err2 := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		return err1 == nil && err2 == nil && len(jobs.Items) == 0 && len(pods.Items) == 0, nil
	})
	require.NoError(t, err, "Jobs or pods left behind")
}

// finishReplacement plays the kubelet for the run's replacement pod (any
// running pod of the run but first): its agent exits 0 with the run's
// SIM_MESSAGE as termination message, and the pod ends Succeeded. It waits
// for the Job's backoff and a loaded machine.
func (e *env) finishReplacement(t *testing.T, ns, run, first string) {
	t.Helper()
	name := e.onLivePodBut(t, ns, run, "finish (a replacement of "+first+")", first, 2*time.Minute, func(ctx context.Context, p *corev1.Pod) error {
		p.Status.Phase = corev1.PodSucceeded
		terminateContainers(p, metav1.Now(), 0, "Completed", envValue(p, v1alpha1.AgentContainerName, "SIM_MESSAGE"))
		_, err := e.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err // a conflict: read it again
	})
	t.Logf("%s: the replacement %s finished (the first pod was %s)", run, name, first)
}

// envValue is the value of env var name in container c of pod p.
func envValue(p *corev1.Pod, c, name string) string {
	for _, ct := range p.Spec.Containers {
		if ct.Name != c {
			continue
		}
		for _, ev := range ct.Env {
			if ev.Name == name {
				return ev.Value
			}
		}
	}
	return ""
}
