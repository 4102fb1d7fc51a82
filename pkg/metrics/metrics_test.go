package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newRun(name string, opts ...func(*v1alpha1.AgentRun)) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(t0)},
		Spec:       v1alpha1.AgentRunSpec{InstanceRef: "inst", Model: v1alpha1.ModelSpec{Provider: "anthropic", Model: "claude"}},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withPhase(p v1alpha1.AgentRunPhase) func(*v1alpha1.AgentRun) {
	return func(r *v1alpha1.AgentRun) { r.Status.Phase = p }
}

func withCondition(typ string, status metav1.ConditionStatus, reason string) func(*v1alpha1.AgentRun) {
	return func(r *v1alpha1.AgentRun) {
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason})
	}
}

func withCreated(t time.Time) func(*v1alpha1.AgentRun) {
	return func(r *v1alpha1.AgentRun) { r.CreationTimestamp = metav1.NewTime(t) }
}

// scrape reads the registry through the handler, as Prometheus does.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// lines returns the exposition lines of the samples of name (exactly that
// metric name, with labels).
func lines(body, name string) []string {
	var out []string
	for l := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			out = append(out, l)
		}
	}
	return out
}

// populated is a Metrics whose every vector and collector has a sample.
func populated(t *testing.T) *Metrics {
	t.Helper()
	m := New()
	store, runs := runStore(t)
	pending := newRun("p", withPhase(v1alpha1.PhasePending))
	server := newRun("s", withPhase(v1alpha1.PhaseServing))
	server.Spec.Mode = v1alpha1.ModeServer
	require.NoError(t, store.Add(pending))
	require.NoError(t, store.Add(server))
	m.RegisterRuns(runs)
	m.RegisterGrants(func() []GrantCount { return []GrantCount{{Kind: "ClusterRole"}} })
	m.SetLeader(true)
	m.ObserveSync("agentrun", nil, time.Millisecond)
	run := newRun("r", withPhase(v1alpha1.PhaseRunning))
	done := &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded, CompletedAt: new(metav1.NewTime(t0.Add(time.Minute))),
		TokenUsage: &v1alpha1.TokenUsage{InputTokens: 1}}
	m.ObserveTransition(run, done, v1alpha1.ReasonSucceeded)
	m.ObserveStatus(newRun("s"), &v1alpha1.AgentRunStatus{JobName: "s", StartedAt: new(metav1.NewTime(t0))})
	resp, err := m.WrapTransport(fakeTransport{code: 200}).RoundTrip(httptest.NewRequest(http.MethodGet, "https://api/api/v1/pods", nil))
	require.NoError(t, err)
	_ = resp.Body.Close()
	return m
}

// TestNamingConventions runs the client library's linter (promlint: units
// as suffixes, _total on counters, no camelCase, help text) over every
// metric this controller defines.
func TestNamingConventions(t *testing.T) {
	m := populated(t)
	problems, err := testutil.GatherAndLint(m.Registry)
	require.NoError(t, err)
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "sympozium_") || strings.HasPrefix(p.Metric, "workqueue_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestObserveSync(t *testing.T) {
	m := New()
	m.ObserveSync("agentrun", nil, time.Millisecond)
	m.ObserveSync("agentrun", errors.New("boom"), time.Millisecond)
	m.ObserveSync("agentrun", apierrors.NewConflict(schema.GroupResource{Resource: "agentruns"}, "r", errors.New("stale")), time.Millisecond)
	m.ObserveSync("agentrun", nil, time.Millisecond)
	assert.Equal(t, 2.0, testutil.ToFloat64(m.syncs.WithLabelValues("agentrun", "success")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.syncs.WithLabelValues("agentrun", "error")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.syncs.WithLabelValues("agentrun", "conflict")))
	assert.Equal(t, 1, testutil.CollectAndCount(m.syncSeconds, "sympozium_sync_duration_seconds"))
}

func TestLeader(t *testing.T) {
	m := New()
	assert.Equal(t, 0.0, testutil.ToFloat64(m.leader))
	m.SetLeader(true)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.leader))
	m.SetLeader(false)
	assert.Equal(t, 0.0, testutil.ToFloat64(m.leader))
}

func TestFinishedRuns(t *testing.T) {
	m := New()
	m.SetInstanceKnown(func(ns, name string) bool { return ns == "team" && name == "inst" })
	running := newRun("a", withPhase(v1alpha1.PhaseRunning))
	failed := &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseFailed, CompletedAt: new(metav1.NewTime(t0.Add(90 * time.Second))),
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTimeout}},
		TokenUsage: &v1alpha1.TokenUsage{InputTokens: 100, OutputTokens: 20, ToolCalls: 3}}
	m.ObserveTransition(running, failed, v1alpha1.ReasonTimeout)
	// A run of an instance that does not exist: counted without its name.
	ghost := newRun("b", withPhase(v1alpha1.PhasePending))
	ghost.Spec.InstanceRef = "made-up"
	m.ObserveTransition(ghost, &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseFailed,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonCancelled}}}, v1alpha1.ReasonCancelled)
	// Not a finish: a transition between live phases, and a finished run
	// written again.
	m.ObserveTransition(newRun("c", withPhase(v1alpha1.PhasePending)), &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning}, v1alpha1.ReasonStarted)
	m.ObserveTransition(newRun("d", withPhase(v1alpha1.PhaseFailed)), failed, v1alpha1.ReasonTimeout)

	assert.Equal(t, 1.0, testutil.ToFloat64(m.finished.WithLabelValues("team", "inst", "Failed", "Timeout")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.finished.WithLabelValues("team", "", "Failed", "Cancelled")))
	assert.Equal(t, 2, testutil.CollectAndCount(m.finished))
	assert.Equal(t, 100.0, testutil.ToFloat64(m.tokens.WithLabelValues("input", "team", "inst", "anthropic", "claude")))
	assert.Equal(t, 20.0, testutil.ToFloat64(m.tokens.WithLabelValues("output", "team", "inst", "anthropic", "claude")))
	assert.Equal(t, 3.0, testutil.ToFloat64(m.toolCalls))
	assert.Equal(t, 4, testutil.CollectAndCount(m.transitions))

	body := scrape(t, m)
	assert.Contains(t, body, `sympozium_agentruns_finished_total{namespace="team",phase="Failed",reason="Timeout",sympozium_instance="inst"} 1`)
	assert.Contains(t, body, `sympozium_agentrun_duration_seconds_sum{phase="Failed",reason="Timeout"} 90`)
	assert.NotContains(t, body, "made-up", "an instance that does not exist is no label value")
}

// TestModelsBounded: past MaxModels provider/model pairs, tokens are
// counted as model "other", so that free-form model names cannot grow the
// series without bound.
func TestModelsBounded(t *testing.T) {
	m := New()
	finish := func(model string) {
		r := newRun("r", withPhase(v1alpha1.PhaseRunning))
		r.Spec.Model.Model = model
		m.ObserveTransition(r, &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded, TokenUsage: &v1alpha1.TokenUsage{InputTokens: 1}}, v1alpha1.ReasonSucceeded)
	}
	for i := range MaxModels + 10 {
		finish(fmt.Sprintf("model-%d", i))
	}
	finish("model-0") // seen before: keeps its name
	assert.Equal(t, 2.0, testutil.ToFloat64(m.tokens.WithLabelValues("input", "team", "inst", "anthropic", "model-0")))
	assert.Equal(t, 10.0, testutil.ToFloat64(m.tokens.WithLabelValues("input", "team", "inst", "other", "other")))
	// input and output for each kept model, and for "other".
	assert.Equal(t, 2*(MaxModels+1), testutil.CollectAndCount(m.tokens))
}

func TestAdmissionAndStart(t *testing.T) {
	m := New()
	m.now = func() time.Time { return t0.Add(3 * time.Second) }
	waiting := newRun("w", withPhase(v1alpha1.PhasePending))
	// Told to wait: nothing to observe.
	m.ObserveStatus(waiting, &waiting.Status)
	assert.Equal(t, 0, testutil.CollectAndCount(m.admission))

	// Admitted 3s after its creation.
	admittedSt := v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, JobName: "w"}
	m.ObserveStatus(waiting, &admittedSt)
	// Written again (a pod name, say): not observed twice.
	again := newRun("w", withPhase(v1alpha1.PhasePending))
	again.Status = admittedSt
	m.ObserveStatus(again, &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, JobName: "w", PodName: "w-x"})
	// Started 7s after its creation.
	started := v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning, JobName: "w", StartedAt: new(metav1.NewTime(t0.Add(7 * time.Second)))}
	m.ObserveStatus(again, &started)

	// A server, admitted in the same write as its first decision.
	server := newRun("s")
	server.Spec.Mode = v1alpha1.ModeServer
	m.ObserveStatus(server, &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, DeploymentName: "s-server"})
	// A sandbox run.
	sb := newRun("b")
	sb.Spec.AgentSandbox = &v1alpha1.AgentSandboxSpec{Enabled: true}
	m.ObserveStatus(sb, &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, SandboxName: "b"})

	body := scrape(t, m)
	for _, want := range []string{
		`sympozium_agentrun_admission_duration_seconds_count{mode="task"} 1`,
		`sympozium_agentrun_admission_duration_seconds_sum{mode="task"} 3`,
		`sympozium_agentrun_admission_duration_seconds_count{mode="server"} 1`,
		`sympozium_agentrun_admission_duration_seconds_count{mode="sandbox"} 1`,
		`sympozium_agentrun_start_duration_seconds_count{mode="task"} 1`,
		`sympozium_agentrun_start_duration_seconds_sum{mode="task"} 7`,
		`sympozium_agentrun_admission_duration_seconds_bucket{mode="task",le="2"} 0`,
		`sympozium_agentrun_admission_duration_seconds_bucket{mode="task",le="4"} 1`,
	} {
		assert.Contains(t, body, want)
	}
}

func TestRunGauges(t *testing.T) {
	m := New()
	store, runs := runStore(t)
	add := func(obj any) {
		t.Helper()
		trimmed, err := runcache.TrimForCache(obj)
		require.NoError(t, err)
		require.NoError(t, store.Add(trimmed))
	}
	// Waiting for capacity: the oldest at t0+5s.
	add(newRun("w1", withPhase(v1alpha1.PhasePending), withCreated(t0.Add(5*time.Second)),
		withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)))
	add(newRun("w2", withPhase(v1alpha1.PhasePending), withCreated(t0.Add(9*time.Second)),
		withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, v1alpha1.ReasonWaitingForCapacity)))
	// Admitted, its pod not running yet.
	add(newRun("p", withPhase(v1alpha1.PhasePending), withCondition(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated)))
	// Never synced yet.
	add(newRun("new", withCreated(t0.Add(time.Second))))
	add(newRun("r", withPhase(v1alpha1.PhaseRunning)))
	ready := newRun("srv1", withPhase(v1alpha1.PhaseServing), withCondition(v1alpha1.ConditionServing, metav1.ConditionTrue, v1alpha1.ReasonStarted))
	ready.Spec.Mode = v1alpha1.ModeServer
	add(ready)
	down := newRun("srv2", withPhase(v1alpha1.PhaseServing), withCondition(v1alpha1.ConditionServing, metav1.ConditionFalse, v1alpha1.ReasonServerNotReady))
	down.Spec.Mode = v1alpha1.ModeServer
	add(down)
	// Finished runs are cached as records (runcache.FinishedRun).
	for i, reason := range []string{v1alpha1.ReasonAgentFailed, v1alpha1.ReasonAgentFailed, v1alpha1.ReasonTimeout} {
		add(newRun(fmt.Sprintf("f%d", i), withPhase(v1alpha1.PhaseFailed), withCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, reason)))
	}
	add(newRun("ok", withPhase(v1alpha1.PhaseSucceeded), withCondition(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonSucceeded)))
	m.RegisterRuns(runs)

	body := scrape(t, m)
	got := append(append(lines(body, "sympozium_agentruns"), lines(body, "sympozium_agentrun_pending_oldest_created_timestamp_seconds")...),
		lines(body, "sympozium_agentrun_servers")...)
	assert.ElementsMatch(t, []string{
		`sympozium_agentruns{namespace="team",phase="Pending",reason="WaitingForCapacity",sympozium_instance="inst"} 2`,
		`sympozium_agentruns{namespace="team",phase="Pending",reason="JobCreated",sympozium_instance="inst"} 1`,
		`sympozium_agentruns{namespace="team",phase="Pending",reason="",sympozium_instance="inst"} 1`,
		`sympozium_agentruns{namespace="team",phase="Running",reason="",sympozium_instance="inst"} 1`,
		`sympozium_agentruns{namespace="team",phase="Serving",reason="",sympozium_instance="inst"} 2`,
		`sympozium_agentruns{namespace="team",phase="Failed",reason="AgentFailed",sympozium_instance="inst"} 2`,
		`sympozium_agentruns{namespace="team",phase="Failed",reason="Timeout",sympozium_instance="inst"} 1`,
		`sympozium_agentruns{namespace="team",phase="Succeeded",reason="Succeeded",sympozium_instance="inst"} 1`,
		`sympozium_agentrun_pending_oldest_created_timestamp_seconds{namespace="team",reason="WaitingForCapacity",sympozium_instance="inst"} ` + promFloat(t0.Add(5*time.Second)),
		`sympozium_agentrun_pending_oldest_created_timestamp_seconds{namespace="team",reason="JobCreated",sympozium_instance="inst"} ` + promFloat(t0),
		`sympozium_agentrun_pending_oldest_created_timestamp_seconds{namespace="team",reason="",sympozium_instance="inst"} ` + promFloat(t0.Add(time.Second)),
		`sympozium_agentrun_servers{namespace="team",ready="true",sympozium_instance="inst"} 1`,
		`sympozium_agentrun_servers{namespace="team",ready="false",sympozium_instance="inst"} 1`,
	}, got)
}

// promFloat formats a timestamp as the text exposition does.
func promFloat(t time.Time) string {
	return fmt.Sprintf("%g", float64(t.UnixNano())/1e9)
}

func TestGrants(t *testing.T) {
	m := New()
	counts := []GrantCount{{Kind: "RoleBinding", Active: 2}, {Kind: "ClusterRole", Active: 1, Left: 1}}
	m.RegisterGrants(func() []GrantCount { return counts })
	got := lines(scrape(t, m), "sympozium_agentrun_grants")
	assert.ElementsMatch(t, []string{
		`sympozium_agentrun_grants{kind="RoleBinding",state="active"} 2`,
		`sympozium_agentrun_grants{kind="RoleBinding",state="left"} 0`,
		`sympozium_agentrun_grants{kind="ClusterRole",state="active"} 1`,
		`sympozium_agentrun_grants{kind="ClusterRole",state="left"} 1`,
	}, got)
}

type fakeTransport struct{ code int }

func (f fakeTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: f.code, Body: io.NopCloser(strings.NewReader(""))}, nil
}

func TestWrapTransport(t *testing.T) {
	m := New()
	rt := m.WrapTransport(fakeTransport{code: 201})
	do := func(method, url string) {
		req := httptest.NewRequest(method, url, nil)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
	}
	do(http.MethodPost, "https://api/apis/batch/v1/namespaces/team/jobs")
	do(http.MethodGet, "https://api/apis/batch/v1/namespaces/team/jobs?watch=true")
	assert.Equal(t, 1.0, testutil.ToFloat64(m.apiRequests.WithLabelValues("create", "jobs", "", "201")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.apiRequests.WithLabelValues("watch", "jobs", "", "201")))
	// Watches stay open for minutes: no latency of theirs.
	assert.Equal(t, 1, testutil.CollectAndCount(m.apiSeconds))
	body := scrape(t, m)
	assert.Contains(t, body, `sympozium_api_request_duration_seconds_count{resource="jobs",verb="create"} 1`)
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		method, path          string
		watch                 bool
		verb, resource, subre string
	}{
		{"PUT", "/apis/sympozium.ai/v1alpha1/namespaces/x/agentruns/r/status", false, "update", "agentruns", "status"},
		{"GET", "/api/v1/namespaces/x/pods", true, "watch", "pods", ""},
		{"GET", "/api/v1/namespaces/x/pods/p/log", false, "get", "pods", "log"},
		{"GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", false, "list", "clusterroles", ""},
		{"DELETE", "/apis/batch/v1/namespaces/x/jobs", false, "deletecollection", "jobs", ""},
		{"PATCH", "/apis/sympozium.ai/v1alpha1/namespaces/x/agentruns/r", false, "patch", "agentruns", ""},
		{"GET", "/version", false, "get", "other", ""},
	} {
		v, r, s := Classify(tc.method, tc.path, tc.watch)
		assert.Equal(t, []string{tc.verb, tc.resource, tc.subre}, []string{v, r, s}, "%s %s", tc.method, tc.path)
	}
}

// TestWorkqueueMetrics: a queue made after RegisterWorkqueueMetrics
// reports under its name.
func TestWorkqueueMetrics(t *testing.T) {
	m := New()
	m.RegisterWorkqueueMetrics()
	q := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[string]{Name: "metrics-test"})
	defer q.ShutDown()
	q.Add("a")
	q.Add("b")
	item, _ := q.Get()
	q.Done(item)
	body := scrape(t, m)
	assert.Contains(t, body, `workqueue_adds_total{name="metrics-test"} 2`)
	assert.Contains(t, body, `workqueue_depth{name="metrics-test"} 1`)
	assert.Contains(t, body, `workqueue_work_duration_seconds_count{name="metrics-test"} 1`)
}

// runStore is a run store over an informer that is never started: the
// test adds what its cache holds.
func runStore(t *testing.T) (cache.Indexer, *runstore.Store) {
	t.Helper()
	inf := cache.NewSharedIndexInformer(&cache.ListWatch{}, &v1alpha1.AgentRun{}, 0, cache.Indexers{})
	runs, err := runstore.New(inf)
	require.NoError(t, err)
	return inf.GetIndexer(), runs
}
