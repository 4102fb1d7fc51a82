// Package tracing exports a span per finished AgentRun to an OpenTelemetry
// collector, over OTLP/HTTP with the JSON encoding, in the run's own trace.
//
// The run's trace is the one its agent joins: status.traceID, the trace of
// the caller when the run carries a valid W3C traceparent
// (sympozium.ai/traceparent, else otel.dev/traceparent), and the agent's
// TRACEPARENT names the run's span (workload.TraceParent). The exported
// span has that span ID, so the agent's spans are its children, and the
// caller's span (from the annotation) as its parent. It runs from the
// run's creation to its completion, with events for the workload created,
// the agent started and the finish (phase, reason), and a child span
// "admission" from the creation to the workload created (waits for
// capacity included).
//
// A small exporter of its own rather than the OpenTelemetry SDK: the
// controller sends one span pair per run, at its end, from data it already
// holds; the SDK (go.opentelemetry.io/otel, its OTLP exporters and their
// gRPC and protobuf dependencies) would add some twenty modules to a
// binary whose dependencies are otherwise client-go's and
// client_golang's, for a context propagation and sampling machinery this
// controller does not use. OTLP/HTTP JSON is a stable encoding every
// collector accepts on its HTTP port (4318) at /v1/traces.
package tracing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Config says where spans go. The zero value exports nothing.
type Config struct {
	// Endpoint is the URL spans are POSTed to (…/v1/traces).
	Endpoint string
	// Headers are sent with every request (authentication).
	Headers map[string]string
	// Resource attributes; service.name among them.
	Resource map[string]string
	// Timeout bounds one export request.
	Timeout time.Duration
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// ConfigFromEnv builds the configuration from the --otlp-endpoint flag
// (endpoint, a base URL such as http://collector:4318 to which
// /v1/traces is added, as for OTEL_EXPORTER_OTLP_ENDPOINT) and the
// OpenTelemetry environment variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// (used as is), OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS
// and _TRACES_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT and _TRACES_TIMEOUT
// (milliseconds), OTEL_EXPORTER_OTLP_PROTOCOL and _TRACES_PROTOCOL (only
// http/json and http/protobuf, served on the same port: the spans are sent
// as JSON), OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, and
// OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none, which turn it off. The
// flag comes before the environment.
func ConfigFromEnv(endpoint string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := strings.TrimSpace(getenv(k)); v != "" {
				return v
			}
		}
		return ""
	}
	var c Config
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || getenv("OTEL_TRACES_EXPORTER") == "none" {
		if endpoint == "" {
			return c, nil
		}
	}
	switch {
	case endpoint != "":
		c.Endpoint = signalURL(endpoint)
	case first("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		c.Endpoint = first("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	case first("OTEL_EXPORTER_OTLP_ENDPOINT") != "":
		c.Endpoint = signalURL(first("OTEL_EXPORTER_OTLP_ENDPOINT"))
	default:
		return c, nil
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Config{}, fmt.Errorf("OTLP endpoint %q: an http:// or https:// URL is needed", c.Endpoint)
	}
	switch p := first("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p {
	case "", "http/json", "http/protobuf":
	default:
		return Config{}, fmt.Errorf("OTLP protocol %q is not supported: the controller exports over OTLP/HTTP (http/json), the collector's HTTP port (4318)", p)
	}
	c.Headers = parseList(first("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"))
	c.Resource = parseList(getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if c.Resource == nil {
		c.Resource = map[string]string{}
	}
	if name := first("OTEL_SERVICE_NAME"); name != "" {
		c.Resource["service.name"] = name
	}
	if c.Resource["service.name"] == "" {
		c.Resource["service.name"] = "sympozium-controller"
	}
	c.Timeout = 10 * time.Second
	if ms, err := strconv.Atoi(first("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")); err == nil && ms > 0 {
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	return c, nil
}

// signalURL is base's traces URL: base with /v1/traces appended.
func signalURL(base string) string {
	return strings.TrimSuffix(base, "/") + "/v1/traces"
}

// parseList parses "k1=v1,k2=v2" (W3C Baggage-like, values URL-decoded).
func parseList(s string) map[string]string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	out := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if dv, err := url.QueryUnescape(strings.TrimSpace(v)); err == nil {
			v = dv
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// queueSize bounds the spans waiting to be sent; beyond it spans are
// dropped (and counted), never blocking a sync.
const queueSize = 2048

// batchSize is the most spans one request carries.
const batchSize = 256

// Exporter sends runs' spans in the background.
type Exporter struct {
	cfg    Config
	client *http.Client
	queue  chan span
	mu     sync.Mutex
	// Dropped counts spans lost: the queue was full or a request failed.
	dropped int
	// Exported counts spans the collector accepted.
	exported int
	flushed  chan chan struct{}
}

// New returns an exporter for cfg; call Run.
func New(cfg Config) *Exporter {
	return &Exporter{cfg: cfg, client: &http.Client{Timeout: cfg.Timeout}, queue: make(chan span, queueSize), flushed: make(chan chan struct{})}
}

// Stats returns the spans exported and dropped so far.
func (e *Exporter) Stats() (exported, dropped int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exported, e.dropped
}

// ObserveStatus is the controller's status hook: when the write finishes
// the run, its spans are queued. It never blocks.
func (e *Exporter) ObserveStatus(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus) {
	if !next.Phase.IsTerminal() || run.Status.Phase.IsTerminal() {
		return
	}
	for _, s := range runSpans(run, next, time.Now()) {
		select {
		case e.queue <- s:
		default:
			e.mu.Lock()
			e.dropped++
			e.mu.Unlock()
		}
	}
}

// Run sends queued spans in batches (every second, or at batchSize) until
// ctx is done, then sends what is left, within the timeout.
func (e *Exporter) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var batch []span
	send := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if err := e.send(ctx, batch); err != nil {
			logger.V(2).Info("Exporting spans failed", "spans", len(batch), "err", err)
			e.mu.Lock()
			e.dropped += len(batch)
			e.mu.Unlock()
		} else {
			e.mu.Lock()
			e.exported += len(batch)
			e.mu.Unlock()
		}
		batch = batch[:0]
	}
	for {
		select {
		case s := <-e.queue:
			batch = append(batch, s)
			if len(batch) >= batchSize {
				send(ctx)
			}
		case <-tick.C:
			send(ctx)
		case done := <-e.flushed:
			for drained := false; !drained; {
				select {
				case s := <-e.queue:
					batch = append(batch, s)
				default:
					drained = true
				}
			}
			send(ctx)
			close(done)
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case s := <-e.queue:
					batch = append(batch, s)
				default:
					drained = true
				}
			}
			sctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
			send(sctx)
			cancel()
			return
		}
	}
}

// Flush sends every queued span now (tests); Run must be running.
func (e *Exporter) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case e.flushed <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Exporter) send(ctx context.Context, spans []span) error {
	body, err := json.Marshal(e.request(spans))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range e.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the collector answered %s: %s", resp.Status, msg)
	}
	return nil
}

// The OTLP/HTTP JSON request (opentelemetry-proto, JSON mapping: IDs as
// hex, 64-bit integers as decimal strings).

type exportRequest struct {
	ResourceSpans []resourceSpans `json:"resourceSpans"`
}

type resourceSpans struct {
	Resource   resource     `json:"resource"`
	ScopeSpans []scopeSpans `json:"scopeSpans"`
}

type resource struct {
	Attributes []attribute `json:"attributes"`
}

type scopeSpans struct {
	Scope scope  `json:"scope"`
	Spans []span `json:"spans"`
}

type scope struct {
	Name string `json:"name"`
}

type span struct {
	TraceID           string      `json:"traceId"`
	SpanID            string      `json:"spanId"`
	ParentSpanID      string      `json:"parentSpanId,omitempty"`
	Name              string      `json:"name"`
	Kind              int         `json:"kind"`
	StartTimeUnixNano string      `json:"startTimeUnixNano"`
	EndTimeUnixNano   string      `json:"endTimeUnixNano"`
	Attributes        []attribute `json:"attributes,omitempty"`
	Events            []event     `json:"events,omitempty"`
	Status            *status     `json:"status,omitempty"`
}

type event struct {
	TimeUnixNano string      `json:"timeUnixNano"`
	Name         string      `json:"name"`
	Attributes   []attribute `json:"attributes,omitempty"`
}

type status struct {
	Code    int    `json:"code"`
	Message string `json:"message,omitempty"`
}

type attribute struct {
	Key   string `json:"key"`
	Value value  `json:"value"`
}

type value struct {
	StringValue *string `json:"stringValue,omitempty"`
	IntValue    *string `json:"intValue,omitempty"`
}

func str(k, v string) attribute { return attribute{Key: k, Value: value{StringValue: &v}} }

func integer(k string, v int64) attribute {
	s := strconv.FormatInt(v, 10)
	return attribute{Key: k, Value: value{IntValue: &s}}
}

// Span kinds and status codes of OTLP.
const (
	kindInternal = 1
	statusOK     = 1
	statusError  = 2
)

func (e *Exporter) request(spans []span) exportRequest {
	var res []attribute
	for k, v := range e.cfg.Resource {
		res = append(res, str(k, v))
	}
	return exportRequest{ResourceSpans: []resourceSpans{{
		Resource:   resource{Attributes: res},
		ScopeSpans: []scopeSpans{{Scope: scope{Name: "sympozium-controller"}, Spans: spans}},
	}}}
}

func nanos(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

// runSpans returns the spans of a run that next finishes: the run's span
// and its admission span. now stands in for a missing completion time.
func runSpans(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus, now time.Time) []span {
	traceID, traceparent := workload.TraceParent(run)
	if next.TraceID != "" {
		traceID = next.TraceID
	}
	// "00-<trace>-<span>-01": the span the agent's TRACEPARENT names.
	runSpanID := strings.Split(traceparent, "-")[2]
	start := run.CreationTimestamp.Time
	end := now
	if next.CompletedAt != nil {
		end = next.CompletedAt.Time
	}
	reason := runcache.OutcomeReason(next.Conditions)
	mode := string(run.Spec.Mode)
	if mode == "" {
		mode = string(v1alpha1.ModeTask)
	}
	attrs := []attribute{
		str("k8s.namespace.name", run.Namespace),
		str("sympozium.agentrun.name", run.Name),
		str("sympozium.agentrun.uid", string(run.UID)),
		str("sympozium.instance", run.Spec.InstanceRef),
		str("sympozium.agentrun.mode", mode),
		str("sympozium.agentrun.phase", string(next.Phase)),
		str("sympozium.agentrun.reason", reason),
		str("gen_ai.system", run.Spec.Model.Provider),
		str("gen_ai.request.model", run.Spec.Model.Model),
	}
	if next.ExitCode != nil {
		attrs = append(attrs, integer("sympozium.agentrun.exit_code", int64(*next.ExitCode)))
	}
	if u := next.TokenUsage; u != nil {
		attrs = append(attrs, integer("gen_ai.usage.input_tokens", u.InputTokens), integer("gen_ai.usage.output_tokens", u.OutputTokens))
	}
	if next.Attempts > 0 {
		attrs = append(attrs, integer("sympozium.agentrun.attempts", int64(next.Attempts)))
	}
	var events []event
	admitted := admittedAt(next)
	if admitted != nil {
		events = append(events, event{TimeUnixNano: nanos(admitted.Time), Name: "workload created", Attributes: workloadAttrs(next)})
	}
	if next.StartedAt != nil {
		events = append(events, event{TimeUnixNano: nanos(next.StartedAt.Time), Name: "agent started"})
	}
	events = append(events, event{TimeUnixNano: nanos(end), Name: "finished",
		Attributes: []attribute{str("sympozium.agentrun.phase", string(next.Phase)), str("sympozium.agentrun.reason", reason)}})
	st := &status{Code: statusOK}
	if next.Phase == v1alpha1.PhaseFailed {
		msg := next.Error // it starts with the reason
		if msg == "" {
			msg = reason
		}
		st = &status{Code: statusError, Message: truncate(msg, 512)}
	}
	runSpan := span{
		TraceID: traceID, SpanID: runSpanID, ParentSpanID: callerSpanID(run, traceID),
		Name: "AgentRun " + mode, Kind: kindInternal,
		StartTimeUnixNano: nanos(start), EndTimeUnixNano: nanos(end),
		Attributes: attrs, Events: events, Status: st,
	}
	admissionEnd := end
	admissionStatus := &status{Code: statusError, Message: "never admitted: " + reason}
	if admitted != nil {
		admissionEnd, admissionStatus = admitted.Time, &status{Code: statusOK}
	}
	admission := span{
		TraceID: traceID, SpanID: derivedSpanID("admission/" + string(run.UID)), ParentSpanID: runSpanID,
		Name: "admission", Kind: kindInternal,
		StartTimeUnixNano: nanos(start), EndTimeUnixNano: nanos(admissionEnd),
		Attributes: []attribute{str("k8s.namespace.name", run.Namespace), str("sympozium.agentrun.name", run.Name)},
		Status:     admissionStatus,
	}
	return []span{runSpan, admission}
}

// admittedAt is when the run's workload was created: the Admitted
// condition's transition to True.
func admittedAt(st *v1alpha1.AgentRunStatus) *metav1.Time {
	for _, c := range st.Conditions {
		if c.Type == v1alpha1.ConditionAdmitted && c.Status == metav1.ConditionTrue {
			return &c.LastTransitionTime
		}
	}
	return nil
}

func workloadAttrs(st *v1alpha1.AgentRunStatus) []attribute {
	kind, name := st.Workload()
	switch kind {
	case "":
		return nil
	case "Job", "Deployment":
		// OpenTelemetry's semantic conventions name these.
		return []attribute{str("k8s."+strings.ToLower(kind)+".name", name)}
	}
	return []attribute{str("sympozium."+strings.ToLower(kind)+".name", name)}
}

// callerSpanID is the span of the run's caller, from the traceparent
// annotation whose trace the run continues; "" when it has none.
func callerSpanID(run *v1alpha1.AgentRun, traceID string) string {
	for _, k := range []string{workload.AnnotationTraceParent, workload.AnnotationOTelTraceParent} {
		tp := strings.TrimSpace(run.Annotations[k])
		parts := strings.Split(tp, "-")
		if len(parts) >= 4 && parts[1] == traceID && isHex(parts[2], 16) {
			return parts[2]
		}
	}
	return ""
}

func isHex(s string, n int) bool {
	if len(s) != n || strings.Trim(s, "0") == "" {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// derivedSpanID is a stable span ID of 16 hex digits from seed, never
// all zeros.
func derivedSpanID(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	id := hex.EncodeToString(sum[:8])
	if strings.Trim(id, "0") == "" {
		id = id[:15] + "1"
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
