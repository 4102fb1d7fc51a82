package e2e

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// cancelRun sets spec.cancel with a merge patch, as the README shows.
func (e *env) cancelRun(t *testing.T, ns, name string) {
	t.Helper()
	e.kubectl(t, "patch", "agentrun", name, "-n", ns, "--type", "merge", "-p", `{"spec":{"cancel":true}}`)
}

// waitFailed waits for the run to end Failed and checks its reason.
func (e *env) waitFailed(t *testing.T, ns, name, reason string, timeout time.Duration) *v1alpha1.AgentRun {
	t.Helper()
	r := e.waitPhase(t, ns, name, v1alpha1.PhaseFailed, timeout)
	assert.Equal(t, reason, failedReason(r), "%s: %s", name, r.Status.Error)
	assert.NotNil(t, r.Status.CompletedAt, name)
	return r
}

// waitWaiting waits for the run to wait (Admitted False) for reason.
func (e *env) waitWaiting(t *testing.T, ns, name, reason string) {
	t.Helper()
	e.waitRun(t, ns, name, 60*time.Second, reason, func(r *v1alpha1.AgentRun) bool {
		c := condition(r, v1alpha1.ConditionAdmitted)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason
	})
}

// podGraces records, for every pod of the namespace, the grace period its
// deletion was given (-1: deleted without a graceful phase).
type podGraces struct {
	mu    sync.Mutex
	grace map[string]int64
}

func (e *env) recordPodGraces(t *testing.T, ns string) *podGraces {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	list, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return e.kube.CoreV1().Pods(ns).Watch(ctx, o)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, lw)
	require.NoError(t, err)
	g := &podGraces{grace: map[string]int64{}}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			g.mu.Lock()
			if p.DeletionGracePeriodSeconds != nil && *p.DeletionGracePeriodSeconds > g.grace[p.Name] {
				g.grace[p.Name] = *p.DeletionGracePeriodSeconds
			} else if _, seen := g.grace[p.Name]; !seen && ev.Type == watch.Deleted {
				g.grace[p.Name] = -1
			}
			g.mu.Unlock()
		}
	}()
	return g
}

func (g *podGraces) of(pod string) (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	v, ok := g.grace[pod]
	return v, ok
}

// TestCancel: spec.cancel on the real API server. A running run (cleanup
// keep) is stopped through kubectl agentrun cancel --wait: Failed,
// Cancelled, completedAt set, its Job and pod deleted, the pod with its
// termination grace period. A run waiting for its instance, a run created
// cancelled and a run cancelled while the controller is down (SIGKILL) end
// the same way; a finished run ignores it.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	graces := e.recordPodGraces(t, ns)
	ctl := e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	hold := map[string]string{"SIM_DURATION": "1h"}

	e.apply(t, runYAML(ns, "long", "inst", hold, "  timeout: 10m\n  cleanup: keep\n"))
	running := e.waitPhase(t, ns, "long", v1alpha1.PhaseRunning, 60*time.Second)
	pod := running.Status.PodName
	require.NotEmpty(t, pod)
	out, errOut, code := e.agentrun(t, "cancel", "--wait", "-n", ns, "long")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Equal(t, "agentrun/long cancelled: the run was cancelled (spec.cancel) while running\n", out)
	assert.Contains(t, errOut, "agentrun/long Failed (Cancelled)")
	// 1s is a read, not a wait: cancel --wait returned, so the run is Failed.
	r := e.waitFailed(t, ns, "long", v1alpha1.ReasonCancelled, time.Second)
	assert.Equal(t, "Cancelled: the run was cancelled (spec.cancel) while running", r.Status.Error)
	assert.NotNil(t, r.Status.StartedAt)
	assert.Nil(t, r.Status.ExitCode, "the agent did not exit on its own")
	e.waitNoChildren(t, ns, "long", 60*time.Second) // even with cleanup: keep
	require.Eventually(t, func() bool { _, ok := graces.of(pod); return ok }, 10*time.Second, 100*time.Millisecond)
	grace, _ := graces.of(pod)
	assert.EqualValues(t, corev1.DefaultTerminationGracePeriodSeconds, grace, "the agent's pod is deleted with its termination grace period")

	// Cancelling again, and the API server's record: it stays Cancelled.
	_, errOut, code = e.agentrun(t, "cancel", "-n", ns, "long")
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "agentrun/long already finished (Failed (Cancelled)): nothing to cancel")

	// Waiting for its instance: never admitted.
	e.apply(t, runYAML(ns, "orphan", "missing", hold, "  timeout: 10m\n"))
	e.waitWaiting(t, ns, "orphan", v1alpha1.ReasonInstanceNotFound)
	e.cancelRun(t, ns, "orphan")
	r = e.waitFailed(t, ns, "orphan", v1alpha1.ReasonCancelled, 30*time.Second)
	assert.Contains(t, r.Status.Error, "while waiting (InstanceNotFound)")

	// Created cancelled: no Job ever.
	e.apply(t, runYAML(ns, "stillborn", "inst", hold, "  cancel: true\n"))
	r = e.waitFailed(t, ns, "stillborn", v1alpha1.ReasonCancelled, 30*time.Second)
	assert.Empty(t, r.Status.JobName)

	// A finished run ignores cancel: the plugin leaves it alone, and a
	// patch changes nothing in its status.
	e.apply(t, runYAML(ns, "done", "inst", map[string]string{"SIM_MESSAGE": successReport}, ""))
	done := e.waitPhase(t, ns, "done", v1alpha1.PhaseSucceeded, 60*time.Second)
	out, errOut, code = e.agentrun(t, "cancel", "-n", ns, "done")
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "the cluster is healthy\n", out)
	assert.Contains(t, errOut, "agentrun/done already finished (Succeeded): nothing to cancel")
	assert.False(t, e.getRun(t, ns, "done").Spec.Cancel)
	e.cancelRun(t, ns, "done")
	// The controller sees the new generation and records only that.
	after := e.waitRun(t, ns, "done", 30*time.Second, "observedGeneration 2", func(r *v1alpha1.AgentRun) bool {
		return r.Status.ObservedGeneration == 2
	})
	after.Status.ObservedGeneration = done.Status.ObservedGeneration
	assert.Equal(t, done.Status, after.Status)

	// Cancelled while the controller is down: the new one ends it.
	e.apply(t, runYAML(ns, "restart", "inst", hold, "  timeout: 10m\n"))
	e.waitPhase(t, ns, "restart", v1alpha1.PhaseRunning, 60*time.Second)
	ctl.kill()
	e.cancelRun(t, ns, "restart")
	e.startController(t, ns)
	e.waitFailed(t, ns, "restart", v1alpha1.ReasonCancelled, 60*time.Second)
	e.waitNoChildren(t, ns, "restart", 60*time.Second)
}

// TestParentBoundsChildren: a parent's budget caps its children. A child
// gets no more time than its parent has left (RUN_TIMEOUT and the Job's
// activeDeadlineSeconds); a parent that finishes stops its running child
// (ParentFinished); a cancelled parent cancels its running and its waiting
// children.
func TestParentBoundsChildren(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", "  agents: {default: {subagents: {maxDepth: 2, maxConcurrent: 1, maxChildrenPerAgent: 3}}}\n"))
	hold := map[string]string{"SIM_DURATION": "1h"}
	child := func(name, parent string) string {
		return runYAML(ns, name, "inst", hold, fmt.Sprintf("  parent: {runName: %s, sessionKey: s-%s, spawnDepth: 1}\n", parent, parent))
	}

	// The parent has 40s; its child (no timeout of its own: 10m by default)
	// gets what is left of them.
	e.apply(t, runYAML(ns, "short", "inst", map[string]string{"SIM_DURATION": "8s", "SIM_MESSAGE": successReport}, "  timeout: 40s\n"))
	e.waitPhase(t, ns, "short", v1alpha1.PhaseRunning, 30*time.Second)
	e.apply(t, child("short-child", "short"))
	e.waitPhase(t, ns, "short-child", v1alpha1.PhaseRunning, 30*time.Second)
	job, err := e.kube.BatchV1().Jobs(ns).Get(context.Background(), "short-child", metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, job.Spec.ActiveDeadlineSeconds)
	assert.LessOrEqual(t, *job.Spec.ActiveDeadlineSeconds, int64(40+15), "the Job's backstop is the parent's deadline (plus the slack)")
	var runTimeout string
	for _, env := range job.Spec.Template.Spec.Containers[0].Env {
		if env.Name == "RUN_TIMEOUT" {
			runTimeout = env.Value
		}
	}
	left, err := time.ParseDuration(runTimeout)
	require.NoError(t, err, "RUN_TIMEOUT %q", runTimeout)
	assert.LessOrEqual(t, left, 40*time.Second, "RUN_TIMEOUT is what the parent has left")
	// The parent succeeds: its child is stopped.
	e.waitPhase(t, ns, "short", v1alpha1.PhaseSucceeded, 60*time.Second)
	r := e.waitFailed(t, ns, "short-child", v1alpha1.ReasonParentFinished, 30*time.Second)
	assert.Contains(t, r.Status.Error, "parent run short finished (Succeeded) before this run while running")
	e.waitNoChildren(t, ns, "short-child", 60*time.Second)

	// A cancelled parent cancels its running child and the one waiting for
	// the instance's only sub-agent slot.
	e.apply(t, runYAML(ns, "boss", "inst", hold, "  timeout: 10m\n"))
	e.waitPhase(t, ns, "boss", v1alpha1.PhaseRunning, 30*time.Second)
	e.apply(t, child("worker", "boss"))
	e.waitPhase(t, ns, "worker", v1alpha1.PhaseRunning, 30*time.Second)
	e.afterCreationSecondOf(t, ns, "worker") // distinct creation seconds: the older child holds the slot
	e.apply(t, child("queued", "boss"))
	e.waitWaiting(t, ns, "queued", v1alpha1.ReasonWaitingForCapacity)
	out, errOut, code := e.agentrun(t, "cancel", "-n", ns, "boss")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	assert.Equal(t, "agentrun/boss cancel requested; see kubectl agentrun result boss\n", errOut)
	e.waitFailed(t, ns, "boss", v1alpha1.ReasonCancelled, 30*time.Second)
	r = e.waitFailed(t, ns, "worker", v1alpha1.ReasonCancelled, 30*time.Second)
	assert.Equal(t, "Cancelled: parent run boss was cancelled while running", r.Status.Error)
	r = e.waitFailed(t, ns, "queued", v1alpha1.ReasonCancelled, 30*time.Second)
	assert.Equal(t, "Cancelled: parent run boss was cancelled while waiting (WaitingForCapacity)", r.Status.Error)
	assert.Empty(t, r.Status.JobName, "a waiting child is never started")
	for _, n := range []string{"boss", "worker", "queued"} {
		e.waitNoChildren(t, ns, n, 60*time.Second)
	}
}

var limitsSeed = flag.Uint64("limits-seed", 0, "seed of TestRunLimitsControllerKilled's kill schedule (0: $SYMPOZIUM_LIMITS_SEED, else the clock)")

// TestRunLimitsControllerKilled: an instance's maxConcurrentRuns (2) and
// the controller's --max-concurrent-runs (3) hold with two workers while
// the controller is killed with SIGKILL and restarted. Runs are timed by
// the API server's own clock, resourceVersions: a run holds a slot from
// the creation of its Job to the write of its outcome. At no revision do
// more runs hold slots than the limits allow; every run succeeds with one
// Job; each instance's runs are admitted oldest first.
func TestRunLimitsControllerKilled(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	seed := chaosSize(*limitsSeed, "SYMPOZIUM_LIMITS_SEED", uint64(time.Now().UnixNano()))
	t.Logf("seed %d (rerun with SYMPOZIUM_LIMITS_SEED=%d or -limits-seed %d)", seed, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0xcafe))
	e.apply(t, instanceYAML(ns, "capped", "  maxConcurrentRuns: 2\n  runHistoryLimit: 100\n"))
	e.apply(t, instanceYAML(ns, "open", "  runHistoryLimit: 100\n"))
	jobs := e.recordJobAdds(t, ns)
	ends := e.recordRunEnds(t, ns)
	flags := []string{"--workers", "2", "--max-concurrent-runs", "3"}
	ctl := e.startController(t, ns, flags...)

	const perInstance = 8
	var names []string
	for i := range perInstance {
		for _, inst := range []string{"capped", "open"} {
			name := fmt.Sprintf("%s-%02d", inst, i)
			names = append(names, name)
			e.apply(t, runYAML(ns, name, inst, map[string]string{"SIM_DURATION": "2s", "SIM_MESSAGE": successReport}, "  timeout: 5m\n"))
		}
		if i%3 == 2 {
			e.afterCreationSecondOf(t, ns, names[len(names)-1]) // some distinct creation seconds
		}
	}
	// The kill schedule is the test's input, drawn from the seed.
	for k := range 3 {
		time.Sleep(time.Duration(1500+rng.IntN(2500)) * time.Millisecond)
		ctl.kill()
		t.Logf("kill %d", k+1)
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		ctl = e.startController(t, ns, flags...)
	}
	for _, n := range names {
		e.waitPhase(t, ns, n, v1alpha1.PhaseSucceeded, 3*time.Minute)
	}

	added, err := jobs.get()
	require.NoError(t, err)
	ended := ends.get()
	type edge struct {
		rv    uint64
		delta int
		inst  string
	}
	var edges []edge
	for _, n := range names {
		require.Len(t, added[n], 1, "Jobs that existed for %s", n)
		inst := strings.SplitN(n, "-", 2)[0]
		start, end := added[n][0], ended[n]
		require.NotZero(t, end, "the end of %s", n)
		require.Less(t, start, end, "%s: its Job was created after its outcome", n)
		edges = append(edges, edge{start, +1, inst}, edge{end, -1, inst})
	}
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.rv, b.rv) })
	all, by, peak, peakBy := 0, map[string]int{}, 0, map[string]int{}
	for _, ed := range edges {
		all += ed.delta
		by[ed.inst] += ed.delta
		peak, peakBy[ed.inst] = max(peak, all), max(peakBy[ed.inst], by[ed.inst])
	}
	t.Logf("peak: %d runs at once (capped %d, open %d)", peak, peakBy["capped"], peakBy["open"])
	assert.LessOrEqual(t, peak, 3, "--max-concurrent-runs")
	assert.LessOrEqual(t, peakBy["capped"], 2, "maxConcurrentRuns of instance capped")
	assert.Equal(t, 3, peak, "the limit is used, not just respected")

	// Oldest first within an instance. Admission decisions are taken in the
	// runs' order under one lock, but two runs admitted together (two
	// workers, two free slots) create their Jobs outside it, so their Jobs
	// may reach the API server in either order. What must never happen is a
	// younger run holding its slot to the end while an older one still
	// waits: an older run's Job exists before any younger run's outcome.
	for _, inst := range []string{"capped", "open"} {
		var order []string
		for _, n := range names {
			if strings.HasPrefix(n, inst+"-") {
				order = append(order, n)
			}
		}
		for i, older := range order {
			for _, younger := range order[i+1:] {
				assert.Less(t, added[older][0], ended[younger],
					"admission order of %s: %s was still waiting when %s, younger, had finished", inst, older, younger)
			}
		}
	}
}

// revisions records API server revisions (resourceVersions) by name.
type revisions struct {
	mu  sync.Mutex
	rvs map[string][]uint64
	err error
}

func (r *revisions) get() (map[string][]uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]uint64{}
	for k, v := range r.rvs {
		out[k] = slices.Clone(v)
	}
	return out, r.err
}

// watchFrom runs a retrying watch of the namespace's objects (list first:
// the namespace must be empty of them) and hands every event to on.
func watchFrom(t *testing.T, list func(context.Context) (string, error), w func(context.Context, metav1.ListOptions) (watch.Interface, error), on func(watch.Event)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rv, err := list(ctx)
	require.NoError(t, err)
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{WatchFuncWithContext: w})
	require.NoError(t, err)
	go func() {
		for ev := range rw.ResultChan() {
			on(ev)
		}
	}()
}

// recordJobAdds records the revision at which each Job (by its run's name,
// its label) was created.
func (e *env) recordJobAdds(t *testing.T, ns string) *revisions {
	r := &revisions{rvs: map[string][]uint64{}}
	seen := map[types.UID]bool{}
	watchFrom(t, func(ctx context.Context) (string, error) {
		l, err := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err == nil && len(l.Items) > 0 {
			err = fmt.Errorf("%d Jobs exist already", len(l.Items))
		}
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return e.kube.BatchV1().Jobs(ns).Watch(ctx, o)
	}, func(ev watch.Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		j, ok := ev.Object.(*batchv1.Job)
		if !ok {
			r.err = fmt.Errorf("Job watch: %v", ev.Object)
			return
		}
		if ev.Type != watch.Added || seen[j.UID] {
			return
		}
		seen[j.UID] = true
		rv, err := strconv.ParseUint(j.ResourceVersion, 10, 64)
		if err != nil {
			r.err = err
			return
		}
		run := j.Labels[v1alpha1.LabelAgentRun]
		r.rvs[run] = append(r.rvs[run], rv)
	})
	return r
}

// runEnds records the revision at which each run was first seen finished.
type runEnds struct {
	mu  sync.Mutex
	end map[string]uint64
}

func (r *runEnds) get() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]uint64{}
	maps.Copy(out, r.end)
	return out
}

func (e *env) recordRunEnds(t *testing.T, ns string) *runEnds {
	r := &runEnds{end: map[string]uint64{}}
	watchFrom(t, func(ctx context.Context) (string, error) {
		l, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", err
		}
		return l.ResourceVersion, nil
	}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return e.client.SympoziumV1alpha1().AgentRuns(ns).Watch(ctx, o)
	}, func(ev watch.Event) {
		run, ok := ev.Object.(*v1alpha1.AgentRun)
		if !ok || !run.Status.Phase.IsTerminal() {
			return
		}
		rv, err := strconv.ParseUint(run.ResourceVersion, 10, 64)
		if err != nil {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.end[run.Name]; !ok {
			r.end[run.Name] = rv
		}
	})
	return r
}
