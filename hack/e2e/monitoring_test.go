package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// stuckBound is the bound of SympoziumRunStuckPending in this test: the
// shipped rule says 900 seconds; the test's copy of the rule file says
// this, and nothing else of the rules changes.
const stuckBound = 15 * time.Second

// TestMonitoringMixin runs a real Prometheus (Debian's package, installed
// by hack/prometheus.sh) scraping the controller every second, with the
// mixin's rules, during a workload of successes, failures of several
// reasons, a run waiting for capacity and a server. Then every dashboard
// query and every recording and alerting expression is evaluated through
// Prometheus' HTTP API and must return data without error, every rule must
// evaluate healthy, and SympoziumRunStuckPending must fire for the run
// held waiting past its bound and resolve once it runs.
func TestMonitoringMixin(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctl := e.startController(t, ns, endpointFlags()...)
	_, metricsURL := ctl.endpoints(t)
	prom := startPrometheus(t, e.root, strings.TrimPrefix(metricsURL, "http://"))

	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, instanceYAML(ns, "tight", "  runHistoryLimit: 50\n  maxConcurrentRuns: 1\n"))
	// The capacity wait: hold takes tight's one slot, waiter waits.
	e.apply(t, runYAML(ns, "hold", "tight", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 30m\n"))
	e.waitPhase(t, ns, "hold", v1alpha1.PhaseRunning, 60*time.Second)
	e.apply(t, runYAML(ns, "waiter", "tight", map[string]string{"SIM_DURATION": "2s", "SIM_MESSAGE": successReport}, ""))
	e.waitRun(t, ns, "waiter", 30*time.Second, "waiting for capacity", func(r *v1alpha1.AgentRun) bool {
		return admittedReason(r) == v1alpha1.ReasonWaitingForCapacity
	})
	waitingSince := time.Now()

	// Successes, failures of several reasons, a server.
	for i := range 3 {
		e.apply(t, runYAML(ns, fmt.Sprintf("ok-%d", i), "inst", map[string]string{"SIM_MESSAGE": successReport}, ""))
	}
	e.apply(t, runYAML(ns, "agent-failed", "inst", map[string]string{"SIM_EXIT_CODE": "2"}, ""))
	e.apply(t, runYAML(ns, "timeout", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 4s\n"))
	e.apply(t, runYAML(ns, "cancelled", "inst", map[string]string{"SIM_DURATION": "1h"}, "  timeout: 10m\n"))
	e.apply(t, runYAML(ns, "srv", "inst", map[string]string{"SIM_DURATION": "1h"}, "  mode: server\n  timeout: 10m\n"))
	e.waitPhase(t, ns, "cancelled", v1alpha1.PhaseRunning, 60*time.Second)
	e.kubectl(t, "patch", "agentrun", "cancelled", "-n", ns, "--type", "merge", "-p", `{"spec":{"cancel":true}}`)
	for i := range 3 {
		e.waitPhase(t, ns, fmt.Sprintf("ok-%d", i), v1alpha1.PhaseSucceeded, 60*time.Second)
	}
	for name, reason := range map[string]string{"agent-failed": v1alpha1.ReasonAgentFailed, "timeout": v1alpha1.ReasonTimeout, "cancelled": v1alpha1.ReasonCancelled} {
		r := e.waitPhase(t, ns, name, v1alpha1.PhaseFailed, 60*time.Second)
		require.Equal(t, reason, failedReason(r), name)
	}
	e.waitPhase(t, ns, "srv", v1alpha1.PhaseServing, 60*time.Second)

	// Prometheus has scraped the outcomes.
	finished := fmt.Sprintf(`sum(sympozium_agentruns_finished_total{job="sympozium-controller",namespace=%q})`, ns)
	prom.waitFor(t, "the six finished runs scraped", 60*time.Second, func() bool {
		v, ok := prom.scalar(t, finished)
		return ok && v >= 6
	})

	// The stuck-run alert fires for waiter, past the bound.
	stuck := fmt.Sprintf(`ALERTS{alertname="SympoziumRunStuckPending",alertstate="firing",namespace=%q}`, ns)
	stuckWaiting := fmt.Sprintf(`ALERTS{alertname="SympoziumRunStuckPending",alertstate="firing",namespace=%q,sympozium_instance="tight",reason="WaitingForCapacity"}`, ns)
	prom.waitFor(t, "SympoziumRunStuckPending firing for the waiting run", stuckBound+60*time.Second, func() bool {
		return len(prom.query(t, stuckWaiting)) == 1
	})
	firedAfter := time.Since(waitingSince)
	t.Logf("SympoziumRunStuckPending fired %s after the run was told to wait (bound %s)", firedAfter.Round(time.Second), stuckBound)
	assert.Equal(t, v1alpha1.PhasePending, e.getRun(t, ns, "waiter").Status.Phase)

	// Every dashboard query, recording rule and alert expression, while the
	// run still waits (the waiting panels have something to show).
	prom.checkMixin(t, e.root)

	// The slot frees: the waiter runs and the alert resolves.
	e.kubectl(t, "patch", "agentrun", "hold", "-n", ns, "--type", "merge", "-p", `{"spec":{"cancel":true}}`)
	e.waitPhase(t, ns, "waiter", v1alpha1.PhaseSucceeded, 60*time.Second)
	prom.waitFor(t, "SympoziumRunStuckPending resolved", 60*time.Second, func() bool {
		return len(prom.query(t, stuck)) == 0
	})
	v, ok := prom.scalar(t, fmt.Sprintf(`sum(sympozium_agentruns{job="sympozium-controller",namespace=%q,phase="Pending"})`, ns))
	assert.True(t, !ok || v == 0, "no run Pending any more: %v", v)
}

func admittedReason(r *v1alpha1.AgentRun) string {
	for _, c := range r.Status.Conditions {
		if c.Type == v1alpha1.ConditionAdmitted {
			return c.Reason
		}
	}
	return ""
}

// prometheus is a Prometheus server the test runs.
type prometheus struct {
	url string
}

// startPrometheus runs Prometheus on a free loopback port, scraping target
// every second as job sympozium-controller (honor_labels, as the mixin's
// scrape configs), with the mixin's rules evaluated every second; the rule
// files are the shipped ones but for the stuck-run bound (stuckBound).
func startPrometheus(t *testing.T, root, target string) *prometheus {
	t.Helper()
	script := filepath.Join(root, "hack", "prometheus.sh")
	out, err := exec.Command(script).Output()
	require.NoError(t, err, "hack/prometheus.sh: Debian's prometheus package")
	bin := filepath.Join(strings.TrimSpace(string(out)), "prometheus")

	dir := t.TempDir()
	rules := filepath.Join(root, "manifests", "monitoring", "rules")
	recording, err := os.ReadFile(filepath.Join(rules, "recording.yaml"))
	require.NoError(t, err)
	alerts, err := os.ReadFile(filepath.Join(rules, "alerts.yaml"))
	require.NoError(t, err)
	const shipped = ") > 900\n"
	require.Equal(t, 1, strings.Count(string(alerts), shipped), "the stuck-run bound of rules/alerts.yaml")
	bounded := strings.Replace(string(alerts), shipped, fmt.Sprintf(") > %d\n", int(stuckBound.Seconds())), 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "recording.yaml"), recording, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts.yaml"), []byte(bounded), 0o600))
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [recording.yaml, alerts.yaml]
scrape_configs:
- job_name: sympozium-controller
  honor_labels: true
  static_configs:
  - targets: [%q]
`, target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = log.Close()
		if t.Failed() {
			data, _ := os.ReadFile(log.Name())
			t.Logf("prometheus log:\n%s", tail(string(data), 60))
		}
	})
	p := &prometheus{url: "http://" + addr}
	p.waitFor(t, "Prometheus ready and scraping the controller", 60*time.Second, func() bool {
		select {
		case <-done:
			data, _ := os.ReadFile(log.Name())
			t.Fatalf("prometheus exited:\n%s", data)
		default:
		}
		v, ok := p.scalarErr(`sum(up{job="sympozium-controller"})`)
		return ok && v == 1
	})
	return p
}

func (p *prometheus) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	require.NoError(t, err, "%s: not within %s", what, timeout)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// get calls the HTTP API and decodes data.
func (p *prometheus) get(path string, params url.Values, data any) error {
	resp, err := http.Get(p.url + path + "?" + params.Encode()) //nolint:noctx // loopback test server
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Warnings  []string        `json:"warnings"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("%s: HTTP %d: %w", path, resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, body.ErrorType, body.Error)
	}
	if len(body.Warnings) > 0 {
		return fmt.Errorf("%s: warnings %v", path, body.Warnings)
	}
	return json.Unmarshal(body.Data, data)
}

// queryErr evaluates expr now: its samples (a scalar as one sample).
func (p *prometheus) queryErr(expr string) ([]promSample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType == "scalar" {
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, err
		}
		return []promSample{{Value: v}}, nil
	}
	var out []promSample
	err := json.Unmarshal(data.Result, &out)
	return out, err
}

func (p *prometheus) query(t *testing.T, expr string) []promSample {
	t.Helper()
	s, err := p.queryErr(expr)
	require.NoError(t, err, expr)
	return s
}

func (p *prometheus) scalarErr(expr string) (float64, bool) {
	s, err := p.queryErr(expr)
	if err != nil || len(s) != 1 {
		return 0, false
	}
	var v float64
	if str, ok := s[0].Value[1].(string); ok {
		if _, err := fmt.Sscan(str, &v); err != nil {
			return 0, false
		}
	}
	return v, true
}

func (p *prometheus) scalar(t *testing.T, expr string) (float64, bool) {
	t.Helper()
	_, err := p.queryErr(expr)
	require.NoError(t, err, expr)
	return p.scalarErr(expr)
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Record string `json:"record"`
			Alert  string `json:"alert"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// thresholdRE finds an alert expression's first comparison with a number:
// what stands before it is the signal the alert watches.
var thresholdRE = regexp.MustCompile(`\s(>|<|>=|<=|==|!=)\s*[0-9.]+`)

// checkMixin evaluates every dashboard query (the namespace selector as
// All, $__rate_interval as 1m), every recording rule's expression and its
// recorded series, and every alert expression and the signal it compares
// with its threshold: each must evaluate without error and return data
// (the alert expressions themselves only without error: most are empty on
// a healthy controller). Prometheus' own evaluation of every rule must be
// healthy.
func (p *prometheus) checkMixin(t *testing.T, root string) {
	t.Helper()
	dir := filepath.Join(root, "manifests", "monitoring")
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "dashboards", "sympozium-controller.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &dash))
	withData := func(what, expr string) {
		t.Helper()
		s, err := p.queryErr(expr)
		if assert.NoError(t, err, "%s: %s", what, expr) {
			assert.NotEmpty(t, s, "%s returned no data: %s", what, expr)
		}
	}
	queries := 0
	for _, panel := range dash.Panels {
		for _, q := range panel.Targets {
			expr := strings.NewReplacer("$namespace", ".*", "$__rate_interval", "1m").Replace(q.Expr)
			withData("panel "+panel.Title, expr)
			queries++
		}
	}
	var files []ruleFile
	for _, f := range []string{"recording.yaml", "alerts.yaml"} {
		data, err := os.ReadFile(filepath.Join(dir, "rules", f))
		require.NoError(t, err)
		js, err := yaml.ToJSON(data)
		require.NoError(t, err)
		var g ruleFile
		require.NoError(t, json.Unmarshal(js, &g))
		files = append(files, g)
	}
	rules := 0
	for _, g := range files {
		for _, grp := range g.Groups {
			for _, r := range grp.Rules {
				rules++
				if r.Record != "" {
					withData("recording rule "+r.Record, r.Expr)
					withData("the series recorded by "+r.Record, r.Record)
					continue
				}
				_, err := p.queryErr(r.Expr)
				assert.NoError(t, err, "alert %s: %s", r.Alert, r.Expr)
				loc := thresholdRE.FindStringIndex(r.Expr)
				if assert.NotNil(t, loc, "alert %s: no threshold in %s", r.Alert, r.Expr) {
					withData("the signal of alert "+r.Alert, r.Expr[:loc[0]])
				}
			}
		}
	}
	// Prometheus' own evaluations.
	var got struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	require.NoError(t, p.get("/api/v1/rules", url.Values{}, &got))
	evaluated := 0
	for _, g := range got.Groups {
		for _, r := range g.Rules {
			evaluated++
			assert.Equal(t, "ok", r.Health, "rule %s: %s", r.Name, r.LastError)
		}
	}
	assert.Equal(t, rules, evaluated, "Prometheus loaded every rule")
	t.Logf("evaluated %d dashboard queries and %d rules through Prometheus' HTTP API", queries, rules)
}
