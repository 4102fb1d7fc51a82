package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// otlpSpan is what the test reads of a span of an OTLP/HTTP JSON request.
type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Attributes   []struct {
		Key   string `json:"key"`
		Value struct {
			StringValue string `json:"stringValue"`
		} `json:"value"`
	} `json:"attributes"`
	Events []struct {
		Name string `json:"name"`
	} `json:"events"`
	Status struct {
		Code int `json:"code"`
	} `json:"status"`
}

func (s otlpSpan) attr(k string) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.StringValue
		}
	}
	return ""
}

// otlpReceiver is an in-test OpenTelemetry collector: it accepts OTLP/HTTP
// JSON on /v1/traces, on loopback, and keeps the spans.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		var body struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []otlpSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range body.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(r.Close)
	return r
}

// runSpan waits for the span of the run name in namespace ns.
func (r *otlpReceiver) runSpan(t *testing.T, ns, name string) otlpSpan {
	t.Helper()
	var found otlpSpan
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.spans {
			if strings.HasPrefix(s.Name, "AgentRun") && s.attr("k8s.namespace.name") == ns && s.attr("sympozium.agentrun.name") == name {
				found = s
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "no span of run %s/%s", ns, name)
	return found
}

// TestTracesJoinTheRunsTrace: with --otlp-endpoint the controller exports
// a span per finished run to the collector (here one in the test), in the
// caller's trace from otel.dev/traceparent, as a child of the caller's
// span, under the span ID the agent's TRACEPARENT names (so the agent's
// spans are its children). Without a caller, the run's span is the root of
// status.traceID.
func TestTracesJoinTheRunsTrace(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	recv := newOTLPReceiver(t)
	e.startController(t, ns, "--otlp-endpoint", recv.URL)
	e.apply(t, instanceYAML(ns, "inst", ""))

	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	run := runYAML(ns, "traced", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  cleanup: keep\n")
	run = strings.Replace(run, "metadata: {name: traced, namespace: "+ns+"}",
		"metadata: {name: traced, namespace: "+ns+", annotations: {otel.dev/traceparent: 00-"+callerTrace+"-"+callerSpan+"-01}}", 1)
	e.apply(t, run)
	e.apply(t, runYAML(ns, "broken", "inst", map[string]string{"SIM_EXIT_CODE": "2"}, ""))
	r := e.waitPhase(t, ns, "traced", v1alpha1.PhaseSucceeded, 60*time.Second)
	broken := e.waitPhase(t, ns, "broken", v1alpha1.PhaseFailed, 60*time.Second)

	job, err := e.kube.BatchV1().Jobs(ns).Get(context.Background(), r.Status.JobName, metav1.GetOptions{})
	require.NoError(t, err)
	traceparent := ""
	for _, c := range job.Spec.Template.Spec.Containers {
		for _, env := range c.Env {
			if c.Name == v1alpha1.AgentContainerName && env.Name == "TRACEPARENT" {
				traceparent = env.Value
			}
		}
	}
	parts := strings.Split(traceparent, "-")
	require.Len(t, parts, 4, "the agent's TRACEPARENT: %q", traceparent)

	s := recv.runSpan(t, ns, "traced")
	assert.Equal(t, callerTrace, r.Status.TraceID)
	assert.Equal(t, callerTrace, s.TraceID, "the caller's trace")
	assert.Equal(t, callerSpan, s.ParentSpanID, "a child of the caller's span")
	assert.Equal(t, parts[2], s.SpanID, "the span the agent's TRACEPARENT names")
	assert.Equal(t, "Succeeded", s.attr("sympozium.agentrun.reason"))
	var events []string
	for _, ev := range s.Events {
		events = append(events, ev.Name)
	}
	assert.Equal(t, []string{"workload created", "agent started", "finished"}, events)
	assert.Equal(t, 1, s.Status.Code)

	f := recv.runSpan(t, ns, "broken")
	assert.Equal(t, broken.Status.TraceID, f.TraceID, "its own trace: status.traceID")
	assert.Empty(t, f.ParentSpanID)
	assert.Equal(t, "AgentFailed", f.attr("sympozium.agentrun.reason"))
	assert.Equal(t, 2, f.Status.Code)
}
