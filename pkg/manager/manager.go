// Package manager wires the controller process: API clients, shared
// informers (filtered and trimmed), the three controllers, leader election,
// health probes and metrics.
package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/agentrun"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/instance"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/schedule"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/skillpack"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sympoziumscheme "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/scheme"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
	sv1alpha1 "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/metrics"
	"github.com/sympozium-ai/sympozium-controller/pkg/tracing"
)

// eventCacheSize is the size of each of the event correlator's caches (see
// runControllers): the spam filter's entry of every run of a 1000-run
// burst, and the last thousand Events for the dedup and the aggregation;
// an Event evicted sooner only loses the merging of its repeats into one
// Event with a count.
const eventCacheSize = 1024

// Config is the process configuration, filled from flags.
type Config struct {
	Kubeconfig string
	QPS        float32
	Burst      int
	// Compression asks the API server for gzip-compressed responses, the
	// client's default (see clientConfig).
	Compression bool
	Workers     int
	// Namespace limits the controller to one namespace; "" watches all.
	Namespace    string
	ResyncPeriod time.Duration

	AgentImage   string
	SandboxImage string
	// EventBusURL (with IPCBridgeImage) adds sympozium's ipc-bridge
	// sidecar to agent pods; AllowHostAccess lets SkillPack sidecars with
	// hostAccess run. See workload.Config.
	EventBusURL     string
	IPCBridgeImage  string
	AllowHostAccess bool
	// MemoryWaitImage is the image of the wait-for-memory init container
	// of runs whose instance runs a memory server.
	MemoryWaitImage string
	// SkillsNamespace is where cluster admins install SkillPacks; only
	// packs from there may declare clusterRBAC.
	SkillsNamespace string
	DefaultTimeout  time.Duration
	Grace           time.Duration
	MaxResultBytes  int
	ReadLogs        bool
	// ProgressEvents records an Event for every step of a run, the happy
	// path's too (see agentrun.Options.ProgressEvents).
	ProgressEvents bool
	// MaxConcurrentRuns caps the admitted, unfinished runs of the whole
	// controller; 0 is no limit.
	MaxConcurrentRuns int

	// The agent-sandbox API: where to look for it (groups, an optional
	// pinned version) and how often to look again.
	SandboxGroup      string
	SandboxClaimGroup string
	SandboxVersion    string
	SandboxRecheck    time.Duration

	// ImageRegistry and ImageTag make the images of the instances' channel
	// gateways and memory servers (see instancephase.Config).
	ImageRegistry string
	ImageTag      string

	MetricsAddr string
	ProbeAddr   string
	// OTLPEndpoint is the OpenTelemetry collector's OTLP/HTTP base URL
	// (http://collector:4318); empty leaves it to the OTEL_EXPORTER_OTLP_*
	// environment, and without either no span is exported.
	OTLPEndpoint string
	// Profiling serves net/http/pprof under /debug/pprof/ on the metrics
	// address.
	Profiling bool

	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration
}

// DefaultConfig returns the defaults the flags start from.
func DefaultConfig() Config {
	return Config{
		QPS: 100, Burst: 200, Compression: true, Workers: 32, ResyncPeriod: 30 * time.Minute,
		// The specification: every transition is an Event.
		ProgressEvents:  true,
		AgentImage:      "ghcr.io/sympozium-ai/sympozium/agent-runner:latest",
		ImageRegistry:   instancephase.DefaultImageRegistry,
		ImageTag:        instancephase.DefaultImageTag,
		SandboxImage:    "ghcr.io/sympozium-ai/sympozium/sandbox:latest",
		IPCBridgeImage:  "ghcr.io/sympozium-ai/sympozium/ipc-bridge:latest",
		MemoryWaitImage: workload.DefaultMemoryWaitImage,
		SkillsNamespace: workload.DefaultSkillsNamespace,
		DefaultTimeout:  10 * time.Minute, Grace: time.Minute, MaxResultBytes: result.DefaultMaxResultBytes, ReadLogs: true,
		SandboxGroup: workload.SandboxGroup, SandboxClaimGroup: workload.SandboxClaimGroup, SandboxRecheck: time.Minute,
		MetricsAddr: ":8080", ProbeAddr: ":8081",
		LeaderElectionNamespace: "sympozium-system", LeaderElectionID: "sympozium-controller",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.AgentImage == "" {
		errs = append(errs, errors.New("--agent-image must not be empty"))
	}
	if c.EventBusURL != "" && c.IPCBridgeImage == "" {
		errs = append(errs, errors.New("--event-bus-url needs --ipc-bridge-image"))
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if c.MaxConcurrentRuns < 0 {
		errs = append(errs, errors.New("--max-concurrent-runs must be 0 (no limit) or positive"))
	}
	if c.DefaultTimeout <= 0 {
		errs = append(errs, errors.New("--default-timeout must be positive"))
	}
	if c.SandboxVersion != "" && c.SandboxVersion != "v1beta1" && c.SandboxVersion != "v1alpha1" {
		errs = append(errs, errors.New("--agent-sandbox-version must be empty (discover), v1beta1 or v1alpha1"))
	}
	if c.QPS <= 0 || c.Burst < 1 {
		errs = append(errs, errors.New("--kube-api-qps and --kube-api-burst must be positive"))
	}
	if c.LeaderElect && !(c.LeaseDuration > c.RenewDeadline && c.RenewDeadline > c.RetryPeriod) {
		errs = append(errs, errors.New("leader election needs lease duration > renew deadline > retry period"))
	}
	return errors.Join(errs...)
}

// Run runs the process until ctx is done. With leader election it reconciles
// only while it leads, and returns an error when it loses the lease.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	m := metrics.New()
	m.RegisterWorkqueueMetrics()

	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	restCfg = clientConfig(restCfg, cfg)
	restCfg.Wrap(m.WrapTransport)

	p := &process{cfg: cfg, metrics: m}
	traces, err := tracing.ConfigFromEnv(cfg.OTLPEndpoint, nil)
	if err != nil {
		return err
	}
	if traces.Enabled() {
		p.traces = tracing.New(traces)
		tctx, stopTraces := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { defer close(done); p.traces.Run(tctx) }()
		// After the controllers: the spans of their last writes go too.
		defer func() { stopTraces(); <-done }()
		logger.Info("Exporting a span per finished run", "endpoint", traces.Endpoint)
	}
	servers, err := p.serve(ctx)
	if err != nil {
		return err
	}
	defer servers()

	if !cfg.LeaderElect {
		m.SetLeader(true)
		return p.runControllers(ctx, restCfg)
	}
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	id, err := os.Hostname()
	if err != nil {
		return err
	}
	id += "_" + randomSuffix()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, cfg.LeaderElectionNamespace, cfg.LeaderElectionID,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return err
	}
	var runErr error
	leCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	leaderelection.RunOrDie(leCtx, leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: cfg.LeaderElectionID,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Started leading", "identity", id)
				p.leading.Store(true)
				m.SetLeader(true)
				runErr = p.runControllers(ctx, restCfg)
				cancel()
			},
			OnStoppedLeading: func() {
				logger.Info("Stopped leading", "identity", id)
				p.leading.Store(false)
				m.SetLeader(false)
				if ctx.Err() == nil && runErr == nil {
					runErr = errors.New("lost the leader lease")
				}
			},
			OnNewLeader: func(identity string) {
				if identity != id {
					logger.Info("New leader elected", "leader", identity)
				}
			},
		},
	})
	return runErr
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type process struct {
	cfg     Config
	metrics *metrics.Metrics
	// traces exports the runs' spans; nil without an OTLP endpoint.
	traces  *tracing.Exporter
	leading atomic.Bool
	mu      sync.Mutex
	synced  []func() bool
}

// metricsHandler serves /metrics and, with --profiling, /debug/pprof/.
func (p *process) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", p.metrics.Handler())
	if p.cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// ready: caches synced, or a standby replica (it has nothing to sync yet).
func (p *process) ready() error {
	if p.cfg.LeaderElect && !p.leading.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.synced) == 0 {
		return errors.New("controllers not started")
	}
	for _, s := range p.synced {
		if !s() {
			return errors.New("caches not synced")
		}
	}
	return nil
}

// serve starts the probe and metrics servers; the returned func stops them.
func (p *process) serve(ctx context.Context) (func(), error) {
	logger := klog.FromContext(ctx)
	var servers []*http.Server
	start := func(addr string, h http.Handler) error {
		if addr == "" || addr == "0" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "HTTP server failed", "address", addr)
			}
		}()
		logger.Info("Serving", "address", ln.Addr().String())
		return nil
	}
	probes := http.NewServeMux()
	probes.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	probes.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := p.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	stop := func() {
		for _, s := range servers {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Shutdown(sctx)
			cancel()
		}
	}
	if err := start(p.cfg.ProbeAddr, probes); err != nil {
		return stop, err
	}
	if err := start(p.cfg.MetricsAddr, p.metricsHandler()); err != nil {
		stop()
		return stop, err
	}
	return stop, nil
}

// clientConfig is the controller's client configuration on top of what the
// kubeconfig (or the pod's service account) gives: its rate limits, its user
// agent, and gzip unless --kube-api-compression=false. Since Kubernetes 1.37
// (WatchListCompression, beta, on by default) the API server gzips each
// flush of the watch-list streams informers open, that is every watch
// event, for clients that accept gzip: about 0.3 ms of API-server CPU per
// run in a 1000-run burst. Without it the streams are several times
// larger, and in a burst on a busy 2-core machine the API server closed
// three to four times as many of the controller's watches as unresponsive
// (each resumed from its resourceVersion, nothing lost), so gzip stays the
// default (docs/bench.md section 8).
func clientConfig(base *rest.Config, cfg Config) *rest.Config {
	c := rest.CopyConfig(base)
	c.QPS, c.Burst = cfg.QPS, cfg.Burst
	c.UserAgent = "sympozium-controller"
	c.DisableCompression = !cfg.Compression
	return c
}

// protobuf returns a copy of cfg that talks protobuf, which built-in
// kinds (Jobs, pods, Events, ...) support and custom resources do not: it
// costs the API server and the controller less to encode and decode than
// JSON, for every watch event as for every write (kube-controller-manager
// does the same).
func protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}

func (p *process) runControllers(ctx context.Context, restCfg *rest.Config) error {
	cfg := p.cfg
	kube, err := kubernetes.NewForConfig(protobuf(restCfg))
	if err != nil {
		return err
	}
	client, err := clientset.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	childSelector := func(o *metav1.ListOptions) {
		o.LabelSelector = agentrun.ChildSelector
	}
	sf := sinformers.NewSharedInformerFactoryWithOptions(client, cfg.ResyncPeriod,
		sinformers.WithNamespace(cfg.Namespace), sinformers.WithTransform(runcache.TrimForCache))
	// The runs' informer keeps no namespace index (the factory's default):
	// runs are looked up through the run store's own indexes
	// (pkg/controller/runstore), and a namespace index would hold an entry for
	// every kept run, tens of thousands in one instance.
	sf.InformerFor(&v1alpha1.AgentRun{}, func(c clientset.Interface, resync time.Duration) cache.SharedIndexInformer {
		return sv1alpha1.NewFilteredAgentRunInformer(c, cfg.Namespace, resync, cache.Indexers{}, nil)
	})
	kf := informers.NewSharedInformerFactoryWithOptions(kube, cfg.ResyncPeriod,
		informers.WithNamespace(cfg.Namespace), informers.WithTweakListOptions(childSelector), informers.WithTransform(runcache.TrimForCache))
	mf := metadatainformer.NewFilteredSharedInformerFactory(meta, cfg.ResyncPeriod, cfg.Namespace, nil)
	// The cluster-scoped grants of runs (of the watched namespace only).
	cf := informers.NewSharedInformerFactoryWithOptions(kube, cfg.ResyncPeriod, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = agentrun.IdentitySelector(cfg.Namespace)
	}), informers.WithTransform(runcache.TrimForCache))
	configMaps := mf.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"})
	if err := configMaps.Informer().SetTransform(runcache.TrimForCache); err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	if err := kubescheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := sympoziumscheme.AddToScheme(scheme); err != nil {
		return err
	}
	// The event correlator (client-go's dedup, aggregation and spam filter
	// of Events) keeps three LRU caches of event keys, 4096 entries each by
	// default, about 450 bytes an entry. This controller records an Event
	// per transition of a run (three for a successful one), not per sync,
	// so repeats are rare and come within the run's own lifetime: at the
	// default, the keys of runs long finished held 5.6 MB of a 19 MB heap
	// after 10,000 runs (issue 15's memory figures).
	broadcaster := record.NewBroadcaster(record.WithContext(ctx),
		record.WithCorrelatorOptions(record.CorrelatorOptions{LRUCacheSize: eventCacheSize}))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: v1alpha1.FieldManager})

	sv := sf.Sympozium().V1alpha1()
	inf := agentrun.Informers{
		Runs:       sv1alpha1.ToTypedAgentRunInformer(sv.AgentRuns()),
		Instances:  sv1alpha1.ToTypedSympoziumInstanceInformer(sv.SympoziumInstances()),
		SkillPacks: sv1alpha1.ToTypedSkillPackInformer(sv.SkillPacks()),
		Children:   agentrun.ChildFactory(kf),
		ConfigMaps: configMaps,
		Grants: &agentrun.GrantInformers{
			RoleBindings:        kf.Rbac().V1().RoleBindings().Informer(),
			ClusterRoles:        cf.Rbac().V1().ClusterRoles().Informer(),
			ClusterRoleBindings: cf.Rbac().V1().ClusterRoleBindings().Informer(),
		},
	}
	opts := agentrun.Options{
		Phase: phase.Config{
			Workload: workload.Config{
				AgentImage: cfg.AgentImage, SandboxImage: cfg.SandboxImage,
				EventBusURL: cfg.EventBusURL, IPCBridgeImage: cfg.IPCBridgeImage, AllowHostAccess: cfg.AllowHostAccess,
				RunIdentity: true, MemoryWaitImage: cfg.MemoryWaitImage,
				DefaultTimeout: cfg.DefaultTimeout, DeadlineSlack: 15 * time.Second,
			},
			Grace: cfg.Grace, MaxResultBytes: cfg.MaxResultBytes, MaxConcurrentRuns: cfg.MaxConcurrentRuns,
			SkillsNamespace: cfg.SkillsNamespace,
		},
		ProgressEvents: cfg.ProgressEvents,
		OnSync:         p.metrics.ObserveSync,
		OnTransition:   p.metrics.ObserveTransition,
		OnStatus:       p.onStatus(),
		SandboxAPI: agentrun.NewSandboxAPI(kube.Discovery(), dyn, agentrun.SandboxAPIConfig{
			Group: cfg.SandboxGroup, ClaimGroup: cfg.SandboxClaimGroup, Version: cfg.SandboxVersion,
			Namespace: cfg.Namespace, Resync: cfg.ResyncPeriod, Recheck: cfg.SandboxRecheck,
		}),
	}
	if cfg.ReadLogs {
		opts.Logs = agentrun.KubeLogReader{Client: kube}
	}
	// SkillPacks of the skills namespace, when the controller watches
	// another one only.
	var skillsFactory sinformers.SharedInformerFactory
	if cfg.Namespace != "" && cfg.SkillsNamespace != "" && cfg.SkillsNamespace != cfg.Namespace {
		skillsFactory = sinformers.NewSharedInformerFactoryWithOptions(client, cfg.ResyncPeriod,
			sinformers.WithNamespace(cfg.SkillsNamespace), sinformers.WithTransform(runcache.TrimForCache))
		inf.SystemSkillPacks = sv1alpha1.ToTypedSkillPackInformer(skillsFactory.Sympozium().V1alpha1().SkillPacks())
	}
	runCtl, err := agentrun.NewController(ctx, client, kube, inf, recorder, opts)
	if err != nil {
		return err
	}
	instCtl, err := instance.NewController(ctx, client, inf.Instances, inf.Runs, kf.Core().V1().Pods().Informer(), nil, nil)
	if err != nil {
		return err
	}
	// The objects instances run (channels, memory), the original's ones
	// too: selected by their component label, not by managed-by.
	instf := informers.NewSharedInformerFactoryWithOptions(kube, cfg.ResyncPeriod,
		informers.WithNamespace(cfg.Namespace), informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = instancephase.ChildSelector
		}), informers.WithTransform(trimMeta))
	// The PersonaPack controller's memory ConfigMaps (their names are the
	// instances' memory ConfigMaps'), without their memories.
	personaf := informers.NewSharedInformerFactoryWithOptions(kube, cfg.ResyncPeriod,
		informers.WithNamespace(cfg.Namespace), informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = instance.PersonaMemorySelector
		}), informers.WithTransform(trimData))
	// Which Secrets exist, for the channels' configRef.secret: metadata
	// only, never their data.
	secrets := mf.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"})
	if err := secrets.Informer().SetTransform(runcache.TrimForCache); err != nil {
		return err
	}
	if err := instCtl.ManageChildren(instance.Children{
		Kube: kube, ConfigMaps: instf.Core().V1().ConfigMaps(), Deployments: instf.Apps().V1().Deployments(),
		Services: instf.Core().V1().Services(), PVCs: instf.Core().V1().PersistentVolumeClaims(),
		PersonaMemory: personaf.Core().V1().ConfigMaps(), Secrets: secrets.Informer(), Recorder: recorder,
		Config: instancephase.Config{
			ImageRegistry: cfg.ImageRegistry, ImageTag: cfg.ImageTag, EventBusURL: cfg.EventBusURL,
			OTLPEndpoint: os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		},
	}); err != nil {
		return err
	}
	packCtl, err := skillpack.NewController(ctx, client, kube, inf.SkillPacks, configMaps, nil)
	if err != nil {
		return err
	}
	schedCtl, err := schedule.NewController(ctx, client, kube,
		sv1alpha1.ToTypedSympoziumScheduleInformer(sv.SympoziumSchedules()), inf.Instances, inf.Runs, recorder, nil, nil)
	if err != nil {
		return err
	}
	runs, err := runstore.New(inf.Runs.Informer())
	if err != nil {
		return err
	}
	instCtl.ReportSyncs(p.metrics.ObserveSync)
	schedCtl.ReportSyncs(p.metrics.ObserveSync)
	packCtl.ReportSyncs(p.metrics.ObserveSync)
	p.registerMetrics(inf, runs, runCtl)
	p.mu.Lock()
	p.synced = []func() bool{runCtl.HasSynced, instCtl.HasSynced, packCtl.HasSynced, schedCtl.HasSynced}
	p.mu.Unlock()

	sf.Start(ctx.Done())
	kf.Start(ctx.Done())
	mf.Start(ctx.Done())
	cf.Start(ctx.Done())
	instf.Start(ctx.Done())
	personaf.Start(ctx.Done())
	defer instf.Shutdown()
	if skillsFactory != nil {
		skillsFactory.Start(ctx.Done())
		defer skillsFactory.Shutdown()
	}
	var wg sync.WaitGroup
	wg.Go(func() { runCtl.Run(ctx, cfg.Workers) })
	wg.Go(func() { instCtl.Run(ctx, max(1, cfg.Workers/4)) })
	wg.Go(func() { packCtl.Run(ctx, max(1, cfg.Workers/4)) })
	wg.Go(func() { schedCtl.Run(ctx, max(1, cfg.Workers/4)) })
	<-ctx.Done()
	wg.Wait()
	sf.Shutdown()
	kf.Shutdown()
	mf.Shutdown()
	cf.Shutdown()
	return nil
}

// onStatus is the hook of every status write: the metrics, and the spans
// when they are exported (without, the metrics' hook alone: no cost).
func (p *process) onStatus() func(*v1alpha1.AgentRun, *v1alpha1.AgentRunStatus) {
	if p.traces == nil {
		return p.metrics.ObserveStatus
	}
	return func(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus) {
		p.metrics.ObserveStatus(run, next)
		p.traces.ObserveStatus(run, next)
	}
}

// registerMetrics adds the metrics read from the caches at scrape time: the
// runs, and the grants of their identities.
func (p *process) registerMetrics(inf agentrun.Informers, runs *runstore.Store, runCtl *agentrun.Controller) {
	instances := inf.Instances.Lister()
	p.metrics.SetInstanceKnown(func(namespace, name string) bool {
		_, err := instances.SympoziumInstances(namespace).Get(name)
		return err == nil
	})
	p.metrics.RegisterRuns(runs)
	p.metrics.RegisterGrants(func() []metrics.GrantCount {
		var out []metrics.GrantCount
		for _, g := range runCtl.CountGrants() {
			out = append(out, metrics.GrantCount{Kind: string(g.Kind), Active: g.Active, Left: g.Left})
		}
		return out
	})
}

// trimMeta drops what the instance controller never reads of its
// children: managed fields and kubectl's last-applied annotation.
// trimData is trimMeta, and a ConfigMap's data dropped.
func trimData(obj any) (any, error) {
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		cm.Data, cm.BinaryData = nil, nil
	}
	return trimMeta(obj)
}

func trimMeta(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				m.SetAnnotations(a)
			}
		}
	}
	return obj, nil
}
