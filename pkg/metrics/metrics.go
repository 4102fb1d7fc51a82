// Package metrics exposes the controller's Prometheus metrics: workqueue
// metrics for every queue, API requests by verb and resource, sync results,
// leadership, and AgentRuns: by phase and instance, finished by outcome and
// reason, time to admission and to the agent's start, runs waiting, servers
// not ready, per-run grants, tokens by instance and model.
//
// Cardinality is bounded: no label carries a run's name or UID. The labels
// are enums of this controller (phase, reason, mode, result, kind, state,
// verb, code), the run's namespace and instance (bounded by the namespaces
// and SympoziumInstances of the cluster: a counter takes an instance's name
// only when the instance exists, else ""), the queue and controller names,
// and the model (spec.model.provider and .model as written: the first
// MaxModels pairs seen keep their names, later ones are counted as
// "other").
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

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

const namespace = "sympozium"

// Label names of a run's place. "namespace" is the run's namespace: the
// scrape configs of manifests/monitoring keep it (honor_labels) over the
// namespace of the controller's pod. The instance label is not "instance",
// which Prometheus gives every target.
const (
	LabelNamespace = "namespace"
	LabelInstance  = "sympozium_instance"
)

// MaxModels bounds the model label: the first MaxModels provider/model
// pairs seen keep their names, the others are counted as model "other".
const MaxModels = 100

// Metrics holds the collectors of one controller process.
type Metrics struct {
	Registry *prometheus.Registry

	apiRequests *prometheus.CounterVec
	apiSeconds  *prometheus.HistogramVec
	syncs       *prometheus.CounterVec
	syncSeconds *prometheus.HistogramVec
	leader      prometheus.Gauge
	transitions *prometheus.CounterVec
	runSeconds  *prometheus.HistogramVec
	finished    *prometheus.CounterVec
	admission   *prometheus.HistogramVec
	start       *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	toolCalls   prometheus.Counter

	models boundedLabel
	mu     sync.Mutex
	known  func(namespace, name string) bool
	now    func() time.Time
}

// New registers every collector on a fresh registry, with the Go and
// process collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), now: time.Now, models: boundedLabel{max: MaxModels}}
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "api_requests_total",
		Help: "Requests this controller sent to the API server, by verb, resource, subresource and status code."},
		[]string{"verb", "resource", "subresource", "code"})
	m.apiSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "api_request_duration_seconds",
		Help:    "Time from sending a request to the API server to its response headers, by verb and resource (watches excluded).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"verb", "resource"})
	m.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sync_total",
		Help: "Syncs by controller and result (success, conflict, error)."}, []string{"controller", "result"})
	m.syncSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "sync_duration_seconds",
		Help: "Time one sync took.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"controller"})
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "is_leader",
		Help: "1 while this process reconciles (it holds the leader lease, or runs without leader election), 0 on a standby."})
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "agentrun_phase_transitions_total",
		Help: "AgentRun phase transitions written, by from, to and reason."}, []string{"from", "to", "reason"})
	m.runSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "agentrun_duration_seconds",
		Help:    "Time from a run's creation to its completion, by phase and reason.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 16)}, []string{"phase", "reason"})
	m.finished = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "agentruns_finished_total",
		Help: "Runs this controller finished, by namespace, instance, outcome (phase) and reason."},
		[]string{LabelNamespace, LabelInstance, "phase", "reason"})
	latency := prometheus.ExponentialBuckets(0.25, 2, 14) // 0.25 s to 34 min
	m.admission = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "agentrun_admission_duration_seconds",
		Help:    "Time from a run's creation to its workload's creation (Job, Deployment, Sandbox or SandboxClaim), waits for capacity included, by mode (task, server, sandbox).",
		Buckets: latency}, []string{"mode"})
	m.start = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "agentrun_start_duration_seconds",
		Help:    "Time from a run's creation to its agent's start (status.startedAt: the agent container running, a server available), by mode (task, server, sandbox).",
		Buckets: latency}, []string{"mode"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "agentrun_tokens_total",
		Help: "LLM tokens reported by finished runs, by kind (input, output), namespace, instance, provider and model."},
		[]string{"kind", LabelNamespace, LabelInstance, "provider", "model"})
	m.toolCalls = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "agentrun_tool_calls_total",
		Help: "Tool calls reported by finished runs."})
	m.Registry.MustRegister(m.apiRequests, m.apiSeconds, m.syncs, m.syncSeconds, m.leader, m.transitions, m.runSeconds,
		m.finished, m.admission, m.start, m.tokens, m.toolCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// SetLeader sets sympozium_is_leader.
func (m *Metrics) SetLeader(leading bool) {
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
}

// SetInstanceKnown sets how the counters learn whether a run's instance
// exists (its name is a label value only then): the instance lister.
// Without it every instanceRef is taken as is.
func (m *Metrics) SetInstanceKnown(known func(namespace, name string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.known = known
}

// instanceLabel is the instance label value of a counter: the run's
// instanceRef when that instance exists, else "".
func (m *Metrics) instanceLabel(ns, name string) string {
	m.mu.Lock()
	known := m.known
	m.mu.Unlock()
	if known != nil && !known(ns, name) {
		return ""
	}
	return name
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
// outcome, duration and usage.
func (m *Metrics) ObserveTransition(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus, reason string) {
	m.transitions.WithLabelValues(string(run.Status.Phase), string(next.Phase), reason).Inc()
	if !next.Phase.IsTerminal() || run.Status.Phase.IsTerminal() {
		return
	}
	outcome := runcache.OutcomeReason(next.Conditions)
	if outcome == "" {
		outcome = reason
	}
	inst := m.instanceLabel(run.Namespace, run.Spec.InstanceRef)
	m.finished.WithLabelValues(run.Namespace, inst, string(next.Phase), outcome).Inc()
	if next.CompletedAt != nil {
		m.runSeconds.WithLabelValues(string(next.Phase), reason).Observe(next.CompletedAt.Sub(run.CreationTimestamp.Time).Seconds())
	}
	if u := next.TokenUsage; u != nil {
		provider := run.Spec.Model.Provider
		model := run.Spec.Model.Model
		if !m.models.keep(provider + "/" + model) {
			provider, model = "other", "other"
		}
		m.tokens.WithLabelValues("input", run.Namespace, inst, provider, model).Add(float64(u.InputTokens))
		m.tokens.WithLabelValues("output", run.Namespace, inst, provider, model).Add(float64(u.OutputTokens))
		m.toolCalls.Add(float64(u.ToolCalls))
	}
}

// ObserveStatus observes what a status write records for the first time:
// the admission (a workload recorded) and the agent's start
// (status.startedAt), each as the time since the run's creation.
func (m *Metrics) ObserveStatus(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus) {
	created := run.CreationTimestamp.Time
	if created.IsZero() {
		return
	}
	mode := Mode(run)
	if !admitted(&run.Status) && admitted(next) {
		m.admission.WithLabelValues(mode).Observe(max(0, m.now().Sub(created).Seconds()))
	}
	if run.Status.StartedAt == nil && next.StartedAt != nil {
		m.start.WithLabelValues(mode).Observe(max(0, next.StartedAt.Sub(created).Seconds()))
	}
}

// Mode is the mode label of a run: task, server, or sandbox (a task run
// in an agent-sandbox Sandbox).
func Mode(run *v1alpha1.AgentRun) string {
	switch {
	case run.Spec.Mode == v1alpha1.ModeServer:
		return string(v1alpha1.ModeServer)
	case run.Spec.AgentSandbox != nil && run.Spec.AgentSandbox.Enabled:
		return "sandbox"
	}
	return string(v1alpha1.ModeTask)
}

func admitted(st *v1alpha1.AgentRunStatus) bool {
	_, name := st.Workload()
	return name != ""
}

// boundedLabel admits the first max values it is asked about.
type boundedLabel struct {
	mu   sync.Mutex
	seen map[string]struct{}
	max  int
}

func (b *boundedLabel) keep(v string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return true
	}
	if len(b.seen) >= b.max {
		return false
	}
	if b.seen == nil {
		b.seen = map[string]struct{}{}
	}
	b.seen[v] = struct{}{}
	return true
}

// RegisterRuns adds the gauges read from the run informer's store at
// scrape time (live runs and finished runs' records alike, see
// runstore.Summary): runs by namespace, instance, phase and reason; the
// creation time of the oldest Pending run by namespace, instance and
// reason (the age of the longest wait); server runs by readiness.
func (m *Metrics) RegisterRuns(runs *runstore.Store) {
	m.Registry.MustRegister(&runCollector{runs: runs,
		byPhase: prometheus.NewDesc(namespace+"_agentruns",
			"AgentRuns in the controller's cache, by namespace, instance, phase and reason: a finished run's outcome reason; a Pending run's Admitted reason (WaitingForCapacity, InstanceNotFound, ... while it waits; JobCreated once its workload exists).",
			[]string{LabelNamespace, LabelInstance, "phase", "reason"}, nil),
		pending: prometheus.NewDesc(namespace+"_agentrun_pending_oldest_created_timestamp_seconds",
			"Creation time (Unix seconds) of the oldest Pending run, by namespace, instance and reason (as for sympozium_agentruns): time() minus it is the longest current wait.",
			[]string{LabelNamespace, LabelInstance, "reason"}, nil),
		servers: prometheus.NewDesc(namespace+"_agentrun_servers",
			"Unfinished server-mode runs, by namespace, instance and readiness (ready: Serving with its Deployment available).",
			[]string{LabelNamespace, LabelInstance, "ready"}, nil),
	})
}

type runCollector struct {
	runs                      *runstore.Store
	byPhase, pending, servers *prometheus.Desc
}

func (c *runCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byPhase
	ch <- c.pending
	ch <- c.servers
}

func (c *runCollector) Collect(ch chan<- prometheus.Metric) {
	type place struct{ ns, inst string }
	type phaseKey struct {
		place
		phase, reason string
	}
	type readyKey struct {
		place
		ready bool
	}
	counts := map[phaseKey]int{}
	oldest := map[phaseKey]time.Time{}
	servers := map[readyKey]int{}
	for _, s := range c.runs.Summaries() {
		k := phaseKey{place: place{s.Namespace, s.Instance}, phase: string(s.Phase), reason: s.Reason}
		if k.phase == "" {
			k.phase = string(v1alpha1.PhasePending)
		}
		counts[k]++
		if s.Phase.IsTerminal() {
			continue
		}
		if k.phase == string(v1alpha1.PhasePending) {
			if t, seen := oldest[k]; !seen || s.Created.Time.Before(t) {
				oldest[k] = s.Created.Time
			}
		}
		if s.Mode == v1alpha1.ModeServer {
			servers[readyKey{place: k.place, ready: s.Ready}]++
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.byPhase, prometheus.GaugeValue, float64(n), k.ns, k.inst, k.phase, k.reason)
	}
	for k, t := range oldest {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(t.UnixNano())/1e9, k.ns, k.inst, k.reason)
	}
	for k, n := range servers {
		ch <- prometheus.MustNewConstMetric(c.servers, prometheus.GaugeValue, float64(n), k.ns, k.inst, strconv.FormatBool(k.ready))
	}
}

// GrantCount is how many per-run grants of one kind (RoleBinding,
// ClusterRole, ClusterRoleBinding) the caches hold: Active those of live
// runs, Left those of runs finished or gone.
type GrantCount struct {
	Kind         string
	Active, Left int
}

// RegisterGrants adds sympozium_agentrun_grants{kind,state}, read from
// count at scrape time. Every kind count returns is reported, zeros
// included, so that an alert on state="left" has a series to read.
func (m *Metrics) RegisterGrants(count func() []GrantCount) {
	m.Registry.MustRegister(&grantCollector{count: count, desc: prometheus.NewDesc(namespace+"_agentrun_grants",
		"Per-run grants (RoleBindings, ClusterRoles, ClusterRoleBindings of a run's identity) in the controller's cache, by kind and state: active (its run is live) or left (its run is finished or gone; the controller revokes these at once).",
		[]string{"kind", "state"}, nil)})
}

type grantCollector struct {
	count func() []GrantCount
	desc  *prometheus.Desc
}

func (c *grantCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *grantCollector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.count() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(g.Active), g.Kind, "active")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(g.Left), g.Kind, "left")
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
	start := time.Now()
	resp, err := r.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	verb, resource, sub := Classify(req.Method, req.URL.Path, req.URL.Query().Get("watch") == "true")
	r.m.apiRequests.WithLabelValues(verb, resource, sub, code).Inc()
	if verb != "watch" {
		r.m.apiSeconds.WithLabelValues(verb, resource).Observe(time.Since(start).Seconds())
	}
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
