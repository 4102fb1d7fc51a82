package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var (
	chaosRuns = flag.Int("chaos-runs", 0, "runs of TestChaosControllerKilled (0: $SYMPOZIUM_CHAOS_RUNS, else 150; a third of it for TestChaosPreemptionsControllerKilled)")
	chaosSeed = flag.Uint64("chaos-seed", 0, "seed of TestChaosControllerKilled and TestChaosPreemptionsControllerKilled (0: $SYMPOZIUM_CHAOS_SEED, else the clock)")
)

// chaosSize returns the flag, else the environment variable, else def.
func chaosSize(flagValue uint64, env string, def uint64) uint64 {
	if flagValue != 0 {
		return flagValue
	}
	if v, err := strconv.ParseUint(os.Getenv(env), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// chaosRun is one run of the chaos workload and the outcome it must reach.
type chaosRun struct {
	name     string
	duration string
	exitCode int32
	result   string // status.result the run must end with
	errText  string // text status.error must contain (failures)
	keep     bool
	// cancel: the run is created cancelled (cancelAtCreation), or
	// cancelled cancelAfter after its creation (cancelLater); either way it
	// must end Failed with reason Cancelled and its workload gone.
	cancel      chaosCancel
	cancelAfter time.Duration
}

type chaosCancel int

const (
	cancelNone chaosCancel = iota
	cancelAtCreation
	cancelLater
)

func (c chaosRun) object(ns string) *v1alpha1.AgentRun {
	report := map[string]any{"status": "success", "response": c.result,
		"metrics": map[string]int{"inputTokens": 10, "outputTokens": 5, "toolCalls": 1, "durationMs": 100}}
	if c.exitCode != 0 {
		report["status"], report["error"] = "error", c.errText
	}
	msg, _ := json.Marshal(report)
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: ns},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: "inst", AgentID: "default", SessionKey: "s-" + c.name, Task: "chaos",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"},
			Env: map[string]string{
				"SIM_DURATION":  c.duration,
				"SIM_EXIT_CODE": strconv.Itoa(int(c.exitCode)),
				"SIM_MESSAGE":   string(msg),
			},
		},
	}
	if c.keep {
		r.Spec.Cleanup = v1alpha1.CleanupKeep
	}
	r.Spec.Cancel = c.cancel == cancelAtCreation
	return r
}

// TestChaosControllerKilled runs a mixed workload while the controller is
// killed with SIGKILL at random moments and restarted, then checks that
// every run reached its outcome with exactly one Job ever created, no
// result lost, and no Job or pod left behind. Cancels are mixed in: runs
// created cancelled, and long runs cancelled at a random moment (Pending or
// Running, controller up or down); they end Cancelled with at most one Job,
// none left behind even with cleanup: keep.
func TestChaosControllerKilled(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	n := int(chaosSize(uint64(max(0, *chaosRuns)), "SYMPOZIUM_CHAOS_RUNS", 150))
	seed := chaosSize(*chaosSeed, "SYMPOZIUM_CHAOS_SEED", uint64(time.Now().UnixNano()))
	t.Logf("chaos: %d runs, seed %d (rerun with SYMPOZIUM_CHAOS_SEED=%d or -chaos-seed %d)", n, seed, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	ns := e.namespace(t, nil)
	e.apply(t, instanceYAML(ns, "inst", "  runHistoryLimit: 100000\n"))
	durations := []string{"0s", "300ms", "1s", "2s", "3s"}
	runs := make([]chaosRun, n)
	for i := range runs {
		c := chaosRun{
			name:     fmt.Sprintf("chaos-%04d", i),
			duration: durations[rng.IntN(len(durations))],
			keep:     rng.IntN(5) == 0,
		}
		c.result = "result of " + c.name
		if rng.IntN(3) == 0 {
			c.exitCode, c.errText = 3, "tool failed in "+c.name
		}
		switch rng.IntN(10) {
		case 0:
			c.cancel = cancelAtCreation
		case 1, 2:
			c.cancel, c.duration = cancelLater, "1h"
			c.cancelAfter = time.Duration(rng.IntN(4000)) * time.Millisecond
		}
		runs[i] = c
	}

	jobUIDs := e.recordJobs(t, ns)
	ctl := e.startController(t, ns)
	// The workload arrives over a few seconds, while the controller dies.
	// Its pacing, the cancel moments and the kill schedule below are the
	// test's input (drawn from the seed), not waits for something: the
	// sleeps stay.
	var wg sync.WaitGroup
	createErr := make(chan error, n)
	wg.Go(func() {
		for i, c := range runs {
			if _, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Create(context.Background(), c.object(ns), metav1.CreateOptions{}); err != nil {
				createErr <- fmt.Errorf("creating %s: %w", c.name, err)
				return
			}
			if c.cancel == cancelLater {
				wg.Go(func() {
					time.Sleep(c.cancelAfter)
					_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Patch(context.Background(), c.name, types.MergePatchType,
						[]byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
					if err != nil {
						createErr <- fmt.Errorf("cancelling %s: %w", c.name, err)
					}
				})
			}
			if i%10 == 9 {
				time.Sleep(250 * time.Millisecond)
			}
		}
	})

	kills := 10 + rng.IntN(3)
	for k := range kills {
		// Alive from 0.3 to 3 s (sometimes killed before its caches sync),
		// down for up to 0.5 s.
		time.Sleep(time.Duration(300+rng.IntN(2700)) * time.Millisecond)
		ctl.kill()
		t.Logf("chaos: kill %d/%d", k+1, kills)
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		ctl = e.startController(t, ns)
	}
	wg.Wait()
	close(createErr)
	for err := range createErr {
		require.NoError(t, err)
	}

	// Every run reaches its outcome.
	byName := waitAllTerminal(t, context.Background(), e, ns, n)

	for _, c := range runs {
		r := byName[c.name]
		if !assert.NotNil(t, r, c.name) {
			continue
		}
		if c.cancel != cancelNone {
			assert.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase, c.name)
			assert.Equal(t, v1alpha1.ReasonCancelled, failedReason(r), "%s: %s", c.name, r.Status.Error)
			assert.NotNil(t, r.Status.CompletedAt, c.name)
			assert.Nil(t, r.Status.ExitCode, "%s: the agent never exited on its own", c.name)
			if c.cancel == cancelAtCreation {
				assert.Empty(t, r.Status.JobName, "%s was created cancelled", c.name)
			}
			continue
		}
		want := v1alpha1.PhaseSucceeded
		if c.exitCode != 0 {
			want = v1alpha1.PhaseFailed
		}
		assert.Equal(t, want, r.Status.Phase, "%s: %s", c.name, r.Status.Error)
		if assert.NotNil(t, r.Status.ExitCode, c.name) {
			assert.Equal(t, c.exitCode, *r.Status.ExitCode, c.name)
		}
		assert.Equal(t, c.result, r.Status.Result, "%s: result lost", c.name)
		if c.exitCode != 0 {
			assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(r), c.name)
			assert.Contains(t, r.Status.Error, c.errText, c.name)
		}
		if assert.NotNil(t, r.Status.TokenUsage, c.name) {
			assert.EqualValues(t, 15, r.Status.TokenUsage.TotalTokens, c.name)
		}
	}

	// Exactly one Job ever created per run. A watch started before the
	// workload sees every Job that ever existed (one UID each). The audit
	// log sees every create: at most one succeeded (201) per run; a create
	// cut short by the SIGKILL is logged 504 although the Job was stored, so
	// a run whose only create is such a one is fine when the watch saw its
	// Job.
	created, cut := jobCreations(t, e.cluster.AuditLogPath(), ns)
	uids, err := jobUIDs.get()
	require.NoError(t, err)
	jobsWanted, cancelled := 0, 0
	for _, c := range runs {
		name := naming.JobName(c.name)
		assert.LessOrEqual(t, created[name], 1, "successful Job creates for %s", c.name)
		switch c.cancel {
		case cancelNone:
			jobsWanted++
			assert.Len(t, uids[name], 1, "Jobs that existed for %s", c.name)
			assert.GreaterOrEqual(t, created[name]+cut[name], 1, "Job creates for %s", c.name)
		case cancelAtCreation:
			cancelled++
			assert.Empty(t, uids[name], "Jobs that existed for %s, created cancelled", c.name)
		case cancelLater:
			cancelled++
			if len(uids[name]) == 1 {
				jobsWanted++ // admitted before the cancel
			}
			assert.LessOrEqual(t, len(uids[name]), 1, "Jobs that existed for %s", c.name)
		}
	}
	assert.Len(t, uids, jobsWanted, "Jobs that existed in %s", ns)
	t.Logf("chaos: %d runs cancelled", cancelled)
	t.Logf("chaos: %d Jobs, %d creates cut short by a kill", len(uids), len(cut))

	// No orphans: the Jobs (and pods) of keep runs stay, every other one goes.
	keep := map[string]bool{}
	for _, c := range runs {
		if c.keep && c.cancel == cancelNone {
			keep[naming.JobName(c.name)] = true
		}
	}
	var leftover string
	err = wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		jobs, err := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil // leftover keeps what the last complete look found
		}
		prev := leftover
		leftover = ""
		seen := map[string]bool{}
		for _, j := range jobs.Items {
			seen[j.Name] = true
			if !keep[j.Name] {
				leftover += " job/" + j.Name
				if r := byName[j.Labels[v1alpha1.LabelAgentRun]]; r != nil {
					leftover += fmt.Sprintf("(run %s, cleanup %q, cancel %v, retired %q, deleting %v)", r.Status.Phase, r.Spec.Cleanup, r.Spec.Cancel,
						j.Labels[v1alpha1.LabelRetired], j.DeletionTimestamp != nil)
				}
				continue
			}
			owner := metav1.GetControllerOf(&j)
			run := byName[j.Labels[v1alpha1.LabelAgentRun]]
			if owner == nil || run == nil || owner.UID != run.UID {
				leftover += " job/" + j.Name + "(not controlled by its run)"
			}
		}
		for name := range keep {
			if !seen[name] {
				leftover += " missing:job/" + name
			}
		}
		pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			leftover = prev
			return false, nil
		}
		for _, p := range pods.Items {
			if owner := metav1.GetControllerOf(&p); owner == nil || !keep[owner.Name] {
				leftover += " pod/" + p.Name
			}
		}
		return leftover == "", nil
	})
	require.NoError(t, err, "orphans or missing children:%s", leftover)

	// Deleting the runs removes everything they own.
	require.NoError(t, e.client.SympoziumV1alpha1().AgentRuns(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{}))
	err = wait.PollUntilContextTimeout(context.Background(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		runs, err1 := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{Limit: 1})
		jobs, err2 := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{Limit: 1})
		pods, err3 := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err1 != nil || err2 != nil || err3 != nil {
			return false, nil
		}
		leftover = fmt.Sprintf("%d+ runs, %d+ jobs, %d+ pods", len(runs.Items), len(jobs.Items), len(pods.Items))
		return len(runs.Items)+len(jobs.Items)+len(pods.Items) == 0, nil
	})
	require.NoError(t, err, "left after deleting every run: %s", leftover)
}

func unfinished(runs map[string]*v1alpha1.AgentRun) string {
	var out []string
	for name, r := range runs {
		if !r.Status.Phase.IsTerminal() {
			out = append(out, fmt.Sprintf("%s(%q)", name, r.Status.Phase))
		}
	}
	if len(out) > 20 {
		out = append(out[:20], "…")
	}
	return strings.Join(out, " ")
}

// jobCreations counts, by Job name, the Job creates in namespace that the
// API server's audit log shows succeeded (201), and those that ended with a
// server-side error (5xx, e.g. 504 when the client died mid-request) and so
// may have been stored.
func jobCreations(t *testing.T, path, namespace string) (created, cut map[string]int) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	created, cut = map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// Cheap filter first: the log holds every request of every test.
		if !bytes.Contains(line, []byte(`"resource":"jobs"`)) || !bytes.Contains(line, []byte(namespace)) {
			continue
		}
		var ev struct {
			Stage     string `json:"stage"`
			Verb      string `json:"verb"`
			ObjectRef struct {
				Resource, Namespace, Name string
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			continue
		}
		if ev.Stage != "ResponseComplete" || ev.Verb != "create" || ev.ObjectRef.Resource != "jobs" || ev.ObjectRef.Namespace != namespace {
			continue
		}
		switch code := ev.ResponseStatus.Code; {
		case code == 201:
			created[ev.ObjectRef.Name]++
		case code >= 500:
			cut[ev.ObjectRef.Name]++
		}
	}
	require.NoError(t, sc.Err())
	return created, cut
}

// jobRecorder remembers the UID of every Job that ever existed in a
// namespace, by name.
type jobRecorder struct {
	mu   sync.Mutex
	uids map[string]map[types.UID]bool
	err  error
}

// recordJobs watches the namespace's Jobs from now on, without gaps across
// reconnections, until the test ends.
func (e *env) recordJobs(t *testing.T, ns string) *jobRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	list, err := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list.Items)
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return e.kube.BatchV1().Jobs(ns).Watch(ctx, o)
	}}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, lw)
	require.NoError(t, err)
	r := &jobRecorder{uids: map[string]map[types.UID]bool{}}
	go func() {
		for ev := range w.ResultChan() {
			r.mu.Lock()
			switch j, ok := ev.Object.(*batchv1.Job); {
			case ev.Type == watch.Error:
				r.err = apierrors.FromObject(ev.Object)
			case ok:
				if r.uids[j.Name] == nil {
					r.uids[j.Name] = map[types.UID]bool{}
				}
				r.uids[j.Name][j.UID] = true
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *jobRecorder) get() (map[string]map[types.UID]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, fmt.Errorf("the Job watch failed, Jobs may have been missed: %w", r.err)
	}
	return maps.Clone(r.uids), nil
}

// waitAllTerminal waits until the n runs of namespace ns are all finished
// (Succeeded or Failed) and returns them by name; it fails the test, naming
// the unfinished ones, after 4 minutes.
func waitAllTerminal(t *testing.T, ctx context.Context, e *env, ns string, n int) map[string]*v1alpha1.AgentRun {
	t.Helper()
	byName := map[string]*v1alpha1.AgentRun{}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		done := 0
		for i := range list.Items {
			r := &list.Items[i]
			byName[r.Name] = r
			if r.Status.Phase.IsTerminal() {
				done++
			}
		}
		return done == n, nil
	})
	require.NoError(t, err, "not every run finished: %s", unfinished(byName))
	return byName
}
