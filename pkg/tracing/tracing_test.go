package tracing

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func TestConfigFromEnv(t *testing.T) {
	for name, tc := range map[string]struct {
		flag    string
		env     map[string]string
		want    string // endpoint; "" disabled
		wantErr string
		check   func(*testing.T, Config)
	}{
		"nothing: off":        {},
		"flag: a base URL":    {flag: "http://collector:4318", want: "http://collector:4318/v1/traces"},
		"flag before the env": {flag: "http://a:4318/", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318"}, want: "http://a:4318/v1/traces"},
		"base endpoint":       {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://b:4318"}, want: "https://b:4318/v1/traces"},
		"traces endpoint, used as is": {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9999/custom"}, want: "http://c:9999/custom"},
		"disabled by the SDK switch": {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318", "OTEL_SDK_DISABLED": "true"}},
		"disabled by the exporter":   {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4318", "OTEL_TRACES_EXPORTER": "none"}},
		"grpc refused": {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://b:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantErr: "not supported"},
		"not a URL": {flag: "collector:4318", wantErr: "http:// or https://"},
		"headers, resource, service name, timeout": {flag: "http://a:4318", env: map[string]string{
			"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc, x-tenant=t1",
			"OTEL_RESOURCE_ATTRIBUTES":   "deployment.environment=prod,service.name=from-attrs",
			"OTEL_SERVICE_NAME":          "ctl",
			"OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
		}, want: "http://a:4318/v1/traces", check: func(t *testing.T, c Config) {
			assert.Equal(t, map[string]string{"authorization": "Bearer abc", "x-tenant": "t1"}, c.Headers)
			assert.Equal(t, map[string]string{"deployment.environment": "prod", "service.name": "ctl"}, c.Resource)
			assert.Equal(t, 2500*time.Millisecond, c.Timeout)
		}},
		"default service name": {flag: "http://a:4318", want: "http://a:4318/v1/traces", check: func(t *testing.T, c Config) {
			assert.Equal(t, "sympozium-controller", c.Resource["service.name"])
			assert.Equal(t, 10*time.Second, c.Timeout)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := ConfigFromEnv(tc.flag, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, c.Endpoint)
			assert.Equal(t, tc.want != "", c.Enabled())
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// receiver is an OTLP/HTTP JSON receiver: what a collector's
// otlpreceiver gets on /v1/traces.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []exportRequest
	headers  []http.Header
	fail     bool
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "not OTLP/HTTP JSON", http.StatusBadRequest)
			return
		}
		var body exportRequest
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fail {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		r.requests = append(r.requests, body)
		r.headers = append(r.headers, req.Header.Clone())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) spans() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []span
	for _, req := range r.requests {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func at(d time.Duration) *metav1.Time { return new(metav1.NewTime(t0.Add(d))) }

func runningRun(annotations map[string]string) *v1alpha1.AgentRun {
	return &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "r1", UID: "6f2b7d9c-0000-4000-8000-000000000001",
			CreationTimestamp: metav1.NewTime(t0), Annotations: annotations},
		Spec:   v1alpha1.AgentRunSpec{InstanceRef: "inst", Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}},
		Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning},
	}
}

func failedStatus(run *v1alpha1.AgentRun) *v1alpha1.AgentRunStatus {
	traceID, _ := workload.TraceParent(run)
	exit := int32(2)
	return &v1alpha1.AgentRunStatus{
		Phase: v1alpha1.PhaseFailed, JobName: "r1", TraceID: traceID,
		StartedAt: at(5 * time.Second), CompletedAt: at(20 * time.Second), ExitCode: &exit,
		Error:      "AgentFailed: the model refused",
		TokenUsage: &v1alpha1.TokenUsage{InputTokens: 120, OutputTokens: 30},
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionAdmitted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonJobCreated, LastTransitionTime: *at(2 * time.Second)},
			{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAgentFailed, LastTransitionTime: *at(20 * time.Second)},
		},
	}
}

func exporterTo(t *testing.T, r *receiver, headers map[string]string) (*Exporter, func()) {
	e := New(Config{Endpoint: r.URL + "/v1/traces", Headers: headers, Resource: map[string]string{"service.name": "sympozium-controller"}, Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	return e, func() { cancel(); <-done }
}

func attrs(as []attribute) map[string]string {
	out := map[string]string{}
	for _, a := range as {
		switch {
		case a.Value.StringValue != nil:
			out[a.Key] = *a.Value.StringValue
		case a.Value.IntValue != nil:
			out[a.Key] = *a.Value.IntValue
		}
	}
	return out
}

// TestSpansJoinTheCallersTrace: a run created with the caller's
// traceparent (otel.dev/traceparent, as sympozium's channel router writes
// it) gets its span in the caller's trace, as a child of the caller's
// span, with the span ID its agent's TRACEPARENT names: the agent's own
// spans are children of the run's span.
func TestSpansJoinTheCallersTrace(t *testing.T) {
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := newReceiver(t)
	e, stop := exporterTo(t, r, map[string]string{"Authorization": "Bearer t"})
	defer stop()
	run := runningRun(map[string]string{workload.AnnotationOTelTraceParent: "00-" + callerTrace + "-" + callerSpan + "-01"})
	next := failedStatus(run)
	require.Equal(t, callerTrace, next.TraceID, "the run continues the caller's trace")
	e.ObserveStatus(run, next)
	require.NoError(t, e.Flush(context.Background()))

	spans := r.spans()
	require.Len(t, spans, 2)
	_, agentTraceParent := workload.TraceParent(run)
	runSpan, admission := spans[0], spans[1]
	assert.Equal(t, "00-"+callerTrace+"-"+runSpan.SpanID+"-01", agentTraceParent, "the agent's TRACEPARENT names the run's span")
	assert.Equal(t, callerTrace, runSpan.TraceID)
	assert.Equal(t, callerSpan, runSpan.ParentSpanID)
	assert.Equal(t, "AgentRun task", runSpan.Name)
	assert.Equal(t, nanos(t0), runSpan.StartTimeUnixNano)
	assert.Equal(t, nanos(t0.Add(20*time.Second)), runSpan.EndTimeUnixNano)
	assert.Equal(t, &status{Code: statusError, Message: "AgentFailed: the model refused"}, runSpan.Status)
	a := attrs(runSpan.Attributes)
	assert.Equal(t, "team", a["k8s.namespace.name"])
	assert.Equal(t, "r1", a["sympozium.agentrun.name"])
	assert.Equal(t, "inst", a["sympozium.instance"])
	assert.Equal(t, "Failed", a["sympozium.agentrun.phase"])
	assert.Equal(t, "AgentFailed", a["sympozium.agentrun.reason"])
	assert.Equal(t, "2", a["sympozium.agentrun.exit_code"])
	assert.Equal(t, "gpt-4o", a["gen_ai.request.model"])
	assert.Equal(t, "120", a["gen_ai.usage.input_tokens"])
	var events []string
	for _, ev := range runSpan.Events {
		events = append(events, ev.Name+"@"+ev.TimeUnixNano)
	}
	assert.Equal(t, []string{
		"workload created@" + nanos(t0.Add(2*time.Second)),
		"agent started@" + nanos(t0.Add(5*time.Second)),
		"finished@" + nanos(t0.Add(20*time.Second)),
	}, events)
	assert.Equal(t, "r1", attrs(runSpan.Events[0].Attributes)["k8s.job.name"])
	assert.Equal(t, "AgentFailed", attrs(runSpan.Events[2].Attributes)["sympozium.agentrun.reason"])

	assert.Equal(t, "admission", admission.Name)
	assert.Equal(t, callerTrace, admission.TraceID)
	assert.Equal(t, runSpan.SpanID, admission.ParentSpanID)
	assert.Len(t, admission.SpanID, 16)
	assert.NotEqual(t, runSpan.SpanID, admission.SpanID)
	assert.Equal(t, nanos(t0.Add(2*time.Second)), admission.EndTimeUnixNano)

	r.mu.Lock()
	assert.Equal(t, "Bearer t", r.headers[0].Get("Authorization"))
	res := attrs(r.requests[0].ResourceSpans[0].Resource.Attributes)
	r.mu.Unlock()
	assert.Equal(t, "sympozium-controller", res["service.name"])
	exported, dropped := e.Stats()
	assert.Equal(t, 2, exported)
	assert.Zero(t, dropped)
}

// TestSpansOwnTrace: without a caller, the run's span is the root of the
// trace status.traceID names.
func TestSpansOwnTrace(t *testing.T) {
	r := newReceiver(t)
	e, stop := exporterTo(t, r, nil)
	defer stop()
	run := runningRun(nil)
	next := failedStatus(run)
	next.Phase, next.ExitCode, next.Error = v1alpha1.PhaseSucceeded, nil, ""
	next.Conditions[1] = metav1.Condition{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded}
	e.ObserveStatus(run, next)
	require.NoError(t, e.Flush(context.Background()))
	spans := r.spans()
	require.Len(t, spans, 2)
	assert.Equal(t, next.TraceID, spans[0].TraceID)
	assert.Len(t, spans[0].TraceID, 32)
	assert.Empty(t, spans[0].ParentSpanID)
	assert.Equal(t, &status{Code: statusOK}, spans[0].Status)
}

// TestOnlyTheFinish: only the write that finishes a run exports spans.
func TestOnlyTheFinish(t *testing.T) {
	r := newReceiver(t)
	e, stop := exporterTo(t, r, nil)
	defer stop()
	run := runningRun(nil)
	e.ObserveStatus(run, &v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseRunning, PodName: "p"})
	done := runningRun(nil)
	done.Status = *failedStatus(run)
	e.ObserveStatus(done, failedStatus(run)) // a finished run written again
	require.NoError(t, e.Flush(context.Background()))
	assert.Empty(t, r.spans())
}

// TestCollectorDown: a collector that fails loses the spans (counted);
// the status hook never blocks, not even with a full queue.
func TestCollectorDown(t *testing.T) {
	r := newReceiver(t)
	r.mu.Lock()
	r.fail = true
	r.mu.Unlock()
	e, stop := exporterTo(t, r, nil)
	defer stop()
	run := runningRun(nil)
	start := time.Now()
	for range queueSize + 100 {
		e.ObserveStatus(run, failedStatus(run))
	}
	assert.Less(t, time.Since(start), 2*time.Second)
	require.NoError(t, e.Flush(context.Background()))
	exported, dropped := e.Stats()
	assert.Zero(t, exported)
	assert.Equal(t, 2*(queueSize+100), dropped)
}

// TestWorkloadAttributes: the span's "workload created" event names the
// run's workload under the attribute of its kind.
func TestWorkloadAttributes(t *testing.T) {
	for _, c := range []struct {
		status v1alpha1.AgentRunStatus
		want   map[string]string
	}{
		{v1alpha1.AgentRunStatus{}, map[string]string{}},
		{v1alpha1.AgentRunStatus{JobName: "j"}, map[string]string{"k8s.job.name": "j"}},
		{v1alpha1.AgentRunStatus{DeploymentName: "d", ServiceName: "s"}, map[string]string{"k8s.deployment.name": "d"}},
		{v1alpha1.AgentRunStatus{SandboxName: "sb"}, map[string]string{"sympozium.sandbox.name": "sb"}},
		{v1alpha1.AgentRunStatus{SandboxClaimName: "c"}, map[string]string{"sympozium.sandboxclaim.name": "c"}},
	} {
		assert.Equal(t, c.want, attrs(workloadAttrs(&c.status)))
	}
}
