package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// The monitoring mixin (manifests/monitoring) against the metrics this
// package defines: the rules and the dashboard read only metrics that
// exist, every alert is documented and tested firing and silent, and the
// promtool checks and tests pass.

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func mixinPath(t *testing.T, parts ...string) string {
	return filepath.Join(append([]string{repoRoot(t), "manifests", "monitoring"}, parts...)...)
}

// RuleGroups is a Prometheus rule file.
type RuleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []Rule `json:"rules"`
	} `json:"groups"`
}

// Rule is a recording or alerting rule.
type Rule struct {
	Record      string            `json:"record"`
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	js, err := yaml.ToJSON(data)
	require.NoError(t, err, path)
	require.NoError(t, json.Unmarshal(js, into), path)
}

func rules(t *testing.T) (recording, alerts []Rule) {
	for _, f := range []string{"recording.yaml", "alerts.yaml"} {
		var g RuleGroups
		readYAML(t, mixinPath(t, "rules", f), &g)
		for _, grp := range g.Groups {
			for _, r := range grp.Rules {
				if r.Alert != "" {
					alerts = append(alerts, r)
				} else {
					recording = append(recording, r)
				}
			}
		}
	}
	return recording, alerts
}

// Dashboard is the part of a Grafana dashboard the tests read.
type Dashboard struct {
	Panels []struct {
		Type        string `json:"type"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Targets     []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// DashboardQueries returns the dashboard's panels with their queries.
func dashboard(t *testing.T) Dashboard {
	t.Helper()
	data, err := os.ReadFile(mixinPath(t, "dashboards", "sympozium-controller.json"))
	require.NoError(t, err)
	var d Dashboard
	require.NoError(t, json.Unmarshal(data, &d))
	return d
}

// exposed is every metric name the controller exposes (histograms as their
// _bucket, _sum and _count series), from a registry with every vector and
// collector populated.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	m := populated(t)
	p := queueProvider{m: m}
	p.NewDepthMetric("q").Inc()
	p.NewAddsMetric("q").Inc()
	p.NewLatencyMetric("q").Observe(1)
	p.NewWorkDurationMetric("q").Observe(1)
	p.NewUnfinishedWorkSecondsMetric("q").Set(1)
	p.NewLongestRunningProcessorSecondsMetric("q").Set(1)
	p.NewRetriesMetric("q").Inc()
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		name := f.GetName()
		names[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[name+s] = true
			}
		}
	}
	return names
}

// metricRE finds the metric and recording rule names of this controller
// and the process collector in a PromQL expression.
var metricRE = regexp.MustCompile(`\b(?:sympozium[_:]|workqueue_|process_)[a-zA-Z0-9_:]*`)

// labelNames are the label names metricRE also finds.
var labelNames = map[string]bool{LabelInstance: true}

func TestMixinReadsOnlyExposedMetrics(t *testing.T) {
	names := exposed(t)
	recording, alerts := rules(t)
	for _, r := range recording {
		require.True(t, strings.HasPrefix(r.Record, "sympozium:"), "recording rule %s: level:metric:operations, prefixed sympozium:", r.Record)
		names[r.Record] = true
	}
	check := func(where, expr string) {
		found := metricRE.FindAllString(expr, -1)
		for _, n := range found {
			if !labelNames[n] {
				assert.True(t, names[n], "%s reads %s, which the controller does not expose", where, n)
			}
		}
		assert.Contains(t, expr, `job="sympozium-controller"`, "%s must select the controller's job", where)
	}
	for _, r := range recording {
		check("recording rule "+r.Record, r.Expr)
	}
	for _, r := range alerts {
		if strings.Contains(r.Expr, "sympozium:") && !strings.Contains(r.Expr, "job=") {
			continue // reads recording rules, which select the job
		}
		check("alert "+r.Alert, r.Expr)
	}
	for _, p := range dashboard(t).Panels {
		for _, q := range p.Targets {
			if strings.HasPrefix(strings.TrimSpace(q.Expr), "sympozium:") {
				continue
			}
			check("panel "+p.Title, q.Expr)
		}
	}
}

// alertTests reads the promtool tests: for each alert, whether a case
// expects it firing and one expects it silent.
func alertTests(t *testing.T) (firing, silent map[string]bool) {
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, mixinPath(t, "tests", "alerts.test.yaml"), &tests)
	firing, silent = map[string]bool{}, map[string]bool{}
	for _, c := range tests.Tests {
		for _, a := range c.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	return firing, silent
}

func TestMixinAlertsDocumentedAndTested(t *testing.T) {
	_, alerts := rules(t)
	require.NotEmpty(t, alerts)
	firing, silent := alertTests(t)
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	require.NoError(t, err)
	for _, a := range alerts {
		assert.Contains(t, []string{"critical", "warning"}, a.Labels["severity"], "alert %s: severity", a.Alert)
		for _, k := range []string{"summary", "description", "runbook"} {
			assert.NotEmpty(t, a.Annotations[k], "alert %s: annotation %s", a.Alert, k)
		}
		assert.True(t, firing[a.Alert], "alert %s: no promtool test expects it to fire", a.Alert)
		assert.True(t, silent[a.Alert], "alert %s: no promtool test expects it silent", a.Alert)
		assert.Contains(t, string(readme), "`"+a.Alert+"`", "alert %s: not in the README's Monitoring section", a.Alert)
	}
}

func TestMixinDashboardPanelsDescribed(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	require.NoError(t, err)
	var titles []string
	for _, p := range dashboard(t).Panels {
		if p.Type == "row" {
			continue
		}
		titles = append(titles, p.Title)
		assert.NotEmpty(t, p.Description, "panel %s: description", p.Title)
		assert.NotEmpty(t, p.Targets, "panel %s: queries", p.Title)
		assert.Contains(t, string(readme), "**"+p.Title+"**", "panel %s: not in the README's Monitoring section", p.Title)
	}
	assert.Len(t, slices.Compact(slices.Sorted(slices.Values(titles))), len(titles), "panel titles are unique")
}

// TestMixinPromtool: the PrometheusRule is generated from the rule files,
// promtool checks the rules and runs tests/alerts.test.yaml. promtool
// comes from Debian's prometheus package (hack/prometheus.sh installs it
// when it is missing).
func TestMixinPromtool(t *testing.T) {
	cmd := exec.Command(filepath.Join(repoRoot(t), "hack", "monitoring.sh"), "check")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "hack/monitoring.sh check:\n%s", out)
	t.Logf("%s", out)
}

// TestMixinKustomize: kubectl kustomize builds the mixin: the Service,
// ServiceMonitor, PrometheusRule and the dashboard's ConfigMap, which
// carries the dashboard file as it is.
func TestMixinKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	require.NoError(t, err, "kubectl (its kustomize) builds manifests/monitoring")
	out, err := exec.Command(kubectl, "kustomize", mixinPath(t)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	dash, err := os.ReadFile(mixinPath(t, "dashboards", "sympozium-controller.json"))
	require.NoError(t, err)
	kinds := map[string]bool{}
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string            `json:"name"`
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		}
		js, err := yaml.ToJSON([]byte(doc))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(js, &obj))
		kinds[obj.Kind] = true
		assert.Equal(t, "sympozium-system", obj.Metadata.Namespace, "%s %s", obj.Kind, obj.Metadata.Name)
		if obj.Kind == "ConfigMap" {
			assert.Equal(t, "1", obj.Metadata.Labels["grafana_dashboard"])
			assert.JSONEq(t, string(dash), obj.Data["sympozium-controller.json"])
		}
	}
	assert.Equal(t, map[string]bool{"Service": true, "ServiceMonitor": true, "PrometheusRule": true, "ConfigMap": true}, kinds)
	// Off by default: the controller's own kustomization leaves it out.
	base, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "kustomization.yaml"))
	require.NoError(t, err)
	assert.NotContains(t, string(base), "monitoring")
}
