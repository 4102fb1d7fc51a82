package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var servingRE = regexp.MustCompile(`"Serving" logger="[^"]*" address="([^"]+)"`)

// endpoints returns the probe and metrics addresses the controller logged.
func (c *controller) endpoints(t *testing.T) (probes, metrics string) {
	t.Helper()
	require.Eventually(t, func() bool { return len(servingRE.FindAllStringSubmatch(c.log.String(), -1)) >= 2 },
		60*time.Second, 50*time.Millisecond, "the controller did not log its endpoints:\n%s", c.log.String())
	m := servingRE.FindAllStringSubmatch(c.log.String(), -1)
	return "http://" + m[0][1], "http://" + m[1][1]
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url) //nolint:noctx // test helper against loopback
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func endpointFlags() []string {
	return []string{"--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"}
}

func TestProbesAndMetrics(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)

	// A controller whose credentials cannot list anything never syncs its
	// caches: alive, not ready.
	e.kubectl(t, "-n", ns, "create", "serviceaccount", "nobody")
	token := strings.TrimSpace(e.kubectl(t, "-n", ns, "create", "token", "nobody"))
	nobody := filepath.Join(t.TempDir(), "nobody.kubeconfig")
	require.NoError(t, writeTokenKubeconfig(nobody, e.cluster.APIServerURL, e.cluster.CAFile, token))
	blind := e.startController(t, ns, append(endpointFlags(), "--kubeconfig", nobody)...)
	probes, _ := blind.endpoints(t)
	code, _ := httpGet(probes + "/healthz")
	assert.Equal(t, http.StatusOK, code)
	// Not ready once it has tried: its informers' lists were refused, so
	// its caches cannot have synced (a condition, not a sleep).
	require.Eventually(t, func() bool { return strings.Contains(blind.log.String(), "is forbidden") },
		60*time.Second, 50*time.Millisecond, "the blind controller never logged a refused list:\n%s", blind.log.String())
	code, body := httpGet(probes + "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	blind.stop()

	ctl := e.startController(t, ns, endpointFlags()...)
	probes, metrics := ctl.endpoints(t)
	require.Eventually(t, func() bool { code, _ := httpGet(probes + "/readyz"); return code == http.StatusOK }, 60*time.Second, 100*time.Millisecond)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "m", "inst", map[string]string{"SIM_MESSAGE": successReport}, ""))
	e.apply(t, runYAML(ns, "f", "inst", map[string]string{"SIM_EXIT_CODE": "2"}, ""))
	e.waitPhase(t, ns, "m", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitPhase(t, ns, "f", v1alpha1.PhaseFailed, 60*time.Second)
	wants := []string{
		`workqueue_adds_total{name="agentrun"}`,
		`workqueue_depth{name="sympoziuminstance"}`,
		`workqueue_queue_duration_seconds_bucket{name="skillpack"`,
		`sympozium_api_requests_total{code="201",resource="jobs",subresource="",verb="create"}`,
		`sympozium_api_requests_total{code="200",resource="agentruns",subresource="status",verb="update"}`,
		`sympozium_agentrun_phase_transitions_total{from="Running",reason="Succeeded",to="Succeeded"}`,
		`sympozium_agentrun_phase_transitions_total{from="Running",reason="AgentFailed",to="Failed"}`,
		`sympozium_agentruns{namespace="` + ns + `",phase="Succeeded",reason="Succeeded",sympozium_instance="inst"} 1`,
		`sympozium_agentruns{namespace="` + ns + `",phase="Failed",reason="AgentFailed",sympozium_instance="inst"} 1`,
		`sympozium_agentruns_finished_total{namespace="` + ns + `",phase="Failed",reason="AgentFailed",sympozium_instance="inst"} 1`,
		`sympozium_agentrun_duration_seconds_count{phase="Succeeded",reason="Succeeded"} 1`,
		`sympozium_agentrun_tokens_total{kind="input",model="gpt-4o",namespace="` + ns + `",provider="openai",sympozium_instance="inst"} 1500`,
		`sympozium_agentrun_tokens_total{kind="output",model="gpt-4o",namespace="` + ns + `",provider="openai",sympozium_instance="inst"} 800`,
		`sympozium_agentrun_admission_duration_seconds_count{mode="task"} 2`,
		`sympozium_agentrun_start_duration_seconds_count{mode="task"}`,
		`sympozium_is_leader 1`,
		`sympozium_agentrun_grants{kind="ClusterRole",state="left"} 0`,
		`sympozium_sync_total{controller="agentrun",result="success"}`,
		`sympozium_sync_total{controller="sympoziuminstance",result="success"}`,
		`sympozium_sync_duration_seconds_bucket{controller="agentrun"`,
	}
	// The controller counts a finished run when its own informer shows it,
	// which can be after this test's client saw the phase: scrape until
	// every line is there (bounded), then check each on the last scrape.
	_ = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		code, body = httpGet(metrics + "/metrics")
		if code != http.StatusOK {
			return false, nil
		}
		for _, want := range wants {
			if !strings.Contains(body, want) {
				return false, nil
			}
		}
		return true, nil
	})
	require.Equal(t, http.StatusOK, code)
	for _, want := range wants {
		assert.Contains(t, body, want)
	}
}

// leaderFlags are leader-election flags with short, test-sized durations.
func leaderFlags(id string) []string {
	return []string{"--leader-elect", "--leader-election-namespace", "sympozium-system", "--leader-election-id", id,
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"}
}

func TestLeaderElectionHandover(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	lease := "lease-" + ns
	a := e.startController(t, ns, append(leaderFlags(lease), endpointFlags()...)...)
	b := e.startController(t, ns, append(leaderFlags(lease), endpointFlags()...)...)
	leading := func(c *controller) bool { return strings.Contains(c.log.String(), `"Started leading"`) }
	require.Eventually(t, func() bool { return leading(a) || leading(b) }, 30*time.Second, 50*time.Millisecond)
	leader, standby := a, b
	if leading(b) {
		leader, standby = b, a
	}
	e.apply(t, instanceYAML(ns, "inst", "  runHistoryLimit: 100\n"))
	for i := range 5 {
		e.apply(t, runYAML(ns, fmt.Sprintf("before-%d", i), "inst", map[string]string{"SIM_DURATION": "3s", "SIM_MESSAGE": successReport}, "  cleanup: keep\n"))
	}
	for i := range 5 {
		e.waitPhase(t, ns, fmt.Sprintf("before-%d", i), v1alpha1.PhaseSucceeded, 60*time.Second)
	}
	// Exactly one reconciles: the standby has synced nothing.
	assert.False(t, leading(standby))
	_, standbyMetrics := standby.endpoints(t)
	_, body := httpGet(standbyMetrics + "/metrics")
	assert.NotContains(t, body, `sympozium_sync_total{controller="agentrun"`)
	assert.NotContains(t, body, `resource="jobs"`)
	assert.NotContains(t, body, `resource="agentruns"`)
	assert.Contains(t, body, "sympozium_is_leader 0")

	// Runs in flight while the leader dies.
	for i := range 5 {
		e.apply(t, runYAML(ns, fmt.Sprintf("during-%d", i), "inst", map[string]string{"SIM_DURATION": "4s", "SIM_MESSAGE": successReport}, "  cleanup: keep\n"))
	}
	// In flight: the leader has taken up the new runs (a condition, not a
	// sleep; each runs 4s, so they are still running when it dies).
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		runs, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, r := range runs.Items {
			if strings.HasPrefix(r.Name, "during-") && r.Status.Phase != "" {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "the leader did not take up the runs created while it led")
	killed := time.Now()
	leader.kill()
	require.Eventually(t, func() bool { return leading(standby) }, 15*time.Second, 20*time.Millisecond)
	handover := time.Since(killed)
	t.Logf("handover took %s", handover)
	// A product promise, not a wait, bounded by client-go's algorithm: the
	// standby tries every retry period stretched by up to its jitter factor
	// (wait.JitterUntil, 1.2: 0.5 to 1.1 s apart), so it sees the leader's
	// last renewal up to 1.1 s late, takes the lease as expired lease
	// duration after that, and acquires it at its next try, up to 1.1 s
	// later: at most 4 + 2 × 1.1 s after the kill, plus 1 s for its API
	// round trips. (A bound of lease duration + one plain retry period,
	// 5.5 s, was under that worst case: 5.87 s on a loaded machine.)
	const jitteredRetry = 500 * time.Millisecond * 22 / 10
	assert.Less(t, handover, 4*time.Second+2*jitteredRetry+time.Second, "handover beyond lease duration + two jittered retry periods")
	for i := range 5 {
		e.waitPhase(t, ns, fmt.Sprintf("during-%d", i), v1alpha1.PhaseSucceeded, 60*time.Second)
	}
	// No run got two Jobs: one successful create per Job name, as the API
	// server's audit log records it.
	creates, err := jobCreates(e, ns)
	require.NoError(t, err)
	require.Len(t, creates, 10)
	for name, n := range creates {
		assert.Equal(t, 1, n, "Job %s created %d times", name, n)
	}
	jobs, err := e.kube.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, jobs.Items, 10)
}
