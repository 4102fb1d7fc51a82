// Package metrics exposes the controller's Prometheus metrics: workqueue
// metrics for every queue, API requests by verb and resource, sync results,
// and AgentRun phases, transitions, durations and token usage.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/workqueue"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

const namespace = "sympozium"

// Metrics holds the collectors of one controller process.
type Metrics struct {
	Registry *prometheus.Registry

	apiRequests *prometheus.CounterVec
	syncs       *prometheus.CounterVec
	syncSeconds *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	runSeconds  *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	toolCalls   prometheus.Counter
}

// New registers every collector on a fresh registry, with the Go and
// process collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "api_requests_total",
		Help: "Requests this controller sent to the API server, by verb, resource, subresource and status code."},
		[]string{"verb", "resource", "subresource", "code"})
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sync_total",
		Help: "Syncs by controller and result (success, conflict, error)."}, []string{"controller", "result"})
	m.syncSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "sync_duration_seconds",
		Help: "Time one sync took.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"controller"})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "agentrun_phase_transitions_total",
		Help: "AgentRun phase transitions written, by from, to and reason."}, []string{"from", "to", "reason"})
	m.runSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "agentrun_duration_seconds",
		Help:    "Time from a run's creation to its completion, by phase and reason.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 16)}, []string{"phase", "reason"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "agentrun_tokens_total",
		Help: "LLM tokens reported by finished runs, by kind (input, output)."}, []string{"kind"})
	m.toolCalls = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "agentrun_tool_calls_total",
		Help: "Tool calls reported by finished runs."})
	m.Registry.MustRegister(m.apiRequests, m.syncs, m.syncSeconds, m.transitions, m.runSeconds, m.tokens, m.toolCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ObserveSync counts one sync.
func (m *Metrics) ObserveSync(controller string, err error, d time.Duration) {
	res := "success"
	if err != nil {
		res = "error"
		if apierrors.IsConflict(err) {
			res = "conflict"
		}
	}
	m.syncs.WithLabelValues(controller, res).Inc()
	m.syncSeconds.WithLabelValues(controller).Observe(d.Seconds())
}

// ObserveTransition counts a phase transition and, for a finished run, its
// duration and usage.
func (m *Metrics) ObserveTransition(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus, reason string) {
	m.transitions.WithLabelValues(string(run.Status.Phase), string(next.Phase), reason).Inc()
	if !next.Phase.IsTerminal() || run.Status.Phase.IsTerminal() {
		return
	}
	if next.CompletedAt != nil {
		m.runSeconds.WithLabelValues(string(next.Phase), reason).Observe(next.CompletedAt.Sub(run.CreationTimestamp.Time).Seconds())
	}
	if u := next.TokenUsage; u != nil {
		m.tokens.WithLabelValues("input").Add(float64(u.InputTokens))
		m.tokens.WithLabelValues("output").Add(float64(u.OutputTokens))
		m.toolCalls.Add(float64(u.ToolCalls))
	}
}

// RegisterRunsByPhase adds a gauge of AgentRuns by phase, read from the
// run store at scrape time.
func (m *Metrics) RegisterRunsByPhase(runs *runstore.Store) {
	m.Registry.MustRegister(&phaseCollector{runs: runs, desc: prometheus.NewDesc(namespace+"_agentruns",
		"AgentRuns in the controller's cache, by phase and, for finished runs, reason.", []string{"phase", "reason"}, nil)})
}

type phaseCollector struct {
	runs *runstore.Store
	desc *prometheus.Desc
}

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ phase, reason string }
	counts := map[key]int{}
	for pr, n := range c.runs.CountByPhase() {
		k := key{phase: string(pr.Phase), reason: pr.Reason}
		if k.phase == "" {
			k.phase = "New"
		}
		counts[k] += n
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.phase, k.reason)
	}
}

// WrapTransport counts every API request by verb and resource. Use it as a
// rest.Config WrapTransport.
func (m *Metrics) WrapTransport(rt http.RoundTripper) http.RoundTripper {
	return roundTripper{next: rt, m: m}
}

type roundTripper struct {
	next http.RoundTripper
	m    *Metrics
}

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	verb, resource, sub := Classify(req.Method, req.URL.Path, req.URL.Query().Get("watch") == "true")
	r.m.apiRequests.WithLabelValues(verb, resource, sub, code).Inc()
	return resp, err
}

// Classify maps an API request to a Kubernetes verb, resource and
// subresource, e.g. ("PUT", "/apis/sympozium.ai/v1alpha1/namespaces/x/agentruns/r/status")
// → ("update", "agentruns", "status").
func Classify(method, path string, watch bool) (verb, resource, subresource string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// Drop /api/v1 or /apis/<group>/<version>.
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(method), "other", ""
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	named := false
	if len(parts) >= 1 {
		resource = parts[0]
	}
	if len(parts) >= 2 {
		named = true
	}
	if len(parts) >= 3 {
		subresource = parts[2]
	}
	switch method {
	case http.MethodGet:
		switch {
		case watch:
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(method)
	}
	return verb, resource, subresource
}

// workqueue metrics --------------------------------------------------------

var registerQueueMetrics sync.Once

// RegisterWorkqueueMetrics makes every workqueue created afterwards report
// depth, adds, latency, work duration, unfinished work and retries.
func (m *Metrics) RegisterWorkqueueMetrics() {
	registerQueueMetrics.Do(func() {
		workqueue.SetProvider(queueProvider{m: m})
	})
}

type queueProvider struct{ m *Metrics }

func (p queueProvider) gauge(name, help string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "workqueue", Name: name, Help: help}, []string{"name"})
	return registerOrGet(p.m.Registry, v).(*prometheus.GaugeVec)
}

func registerOrGet(reg *prometheus.Registry, c prometheus.Collector) prometheus.Collector {
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			return are.ExistingCollector
		}
		panic(err)
	}
	return c
}

func (p queueProvider) counter(name, help string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "workqueue", Name: name, Help: help}, []string{"name"})
	return registerOrGet(p.m.Registry, v).(*prometheus.CounterVec)
}

func (p queueProvider) histogram(name, help string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "workqueue", Name: name, Help: help,
		Buckets: prometheus.ExponentialBuckets(10e-9, 10, 12)}, []string{"name"})
	return registerOrGet(p.m.Registry, v).(*prometheus.HistogramVec)
}

func (p queueProvider) NewDepthMetric(name string) workqueue.GaugeMetric {
	return p.gauge("depth", "Current depth of the workqueue.").WithLabelValues(name)
}
func (p queueProvider) NewAddsMetric(name string) workqueue.CounterMetric {
	return p.counter("adds_total", "Adds handled by the workqueue.").WithLabelValues(name)
}
func (p queueProvider) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return p.histogram("queue_duration_seconds", "How long an item stays in the workqueue before being processed.").WithLabelValues(name)
}
func (p queueProvider) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return p.histogram("work_duration_seconds", "How long processing an item takes.").WithLabelValues(name)
}
func (p queueProvider) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.gauge("unfinished_work_seconds", "Seconds of work in progress not yet observed by work_duration.").WithLabelValues(name)
}
func (p queueProvider) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.gauge("longest_running_processor_seconds", "Seconds the longest running processor has been running.").WithLabelValues(name)
}
func (p queueProvider) NewRetriesMetric(name string) workqueue.CounterMetric {
	return p.counter("retries_total", "Retries handled by the workqueue.").WithLabelValues(name)
}
