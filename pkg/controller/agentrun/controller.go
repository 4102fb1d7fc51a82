// Package agentrun is the AgentRun controller: one typed, rate-limited
// workqueue of AgentRun keys (new runs first, see admissionRank), fed by the runs themselves and by their
// children (Jobs, Deployments, Services, agent-sandbox Sandboxes and
// SandboxClaims, Pods), whose sync gathers what the listers hold, asks the
// pure phase state machine what to do and applies its decision.
package agentrun

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/worker"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	listers "github.com/sympozium-ai/sympozium-controller/pkg/generated/listers/sympozium/v1alpha1"
)

// Informers are the shared informers the controller reads. ConfigMaps is
// a metadata-only informer.
type Informers struct {
	Runs       sinformers.TypedAgentRunInformer
	Instances  sinformers.TypedSympoziumInstanceInformer
	SkillPacks sinformers.TypedSkillPackInformer
	// Children gives the informer of each kind of child the controller
	// caches (the registrations' childCache kinds: Jobs, Deployments,
	// Services, Pods), filtered to its own children by ChildSelector:
	// ChildFactory of an informers.SharedInformerFactory, asked before the
	// factory starts.
	Children   ChildInformers
	ConfigMaps informers.GenericInformer
	// SystemSkillPacks reads the SkillPacks of the skills namespace when
	// SkillPacks does not (a controller limited to one other namespace);
	// nil otherwise.
	SystemSkillPacks sinformers.TypedSkillPackInformer
	// Grants are the informers of the per-run grants; nil leaves the
	// grants of finished and gone runs in place (tests only).
	Grants *GrantInformers
}

// ChildInformers gives the shared informer of each kind of child the
// controller caches (ChildFactory).
type ChildInformers interface {
	ChildInformer(kind phase.Kind) (cache.SharedIndexInformer, error)
}

// Options tune the controller.
type Options struct {
	Phase phase.Config
	// Logs reads the agent container's log tail for the result marker
	// fallback; nil disables the fallback.
	Logs LogReader
	// SandboxAPI tracks the agent-sandbox API; nil means the cluster is
	// taken not to serve it (runs with agentSandbox fail with
	// SandboxUnavailable). Controller.Run runs it.
	SandboxAPI *SandboxAPI
	// Clock is the controller's one clock: its decisions, its in-memory
	// stores (expectations, admissions), the agent-sandbox API's recheck
	// and its queue's delays run on it. nil is the real clock.
	Clock clock.WithTicker
	// RateLimiter overrides the default per-item exponential backoff.
	RateLimiter workqueue.TypedRateLimiter[cache.ObjectName]
	// ProgressEvents records the Events of the happy path's steps too
	// (phase.Event.Progress: a plain JobCreated, a task's Started), which
	// say nothing the run's conditions do not; without it a run that
	// succeeds gets one Event, its outcome, and every Warning, wait and
	// outcome is recorded as before.
	ProgressEvents bool
	// OnSync, when set, is told the outcome of every sync (metrics).
	OnSync func(queue string, err error, d time.Duration)
	// OnTransition, when set, is told about each phase transition written
	// (metrics): the run as it was, and its new status.
	OnTransition func(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus, reason string)
	// OnStatus, when set, is told about every status write that succeeded
	// (metrics, traces): the run as it was, and its new status.
	OnStatus func(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus)
}

// Controller reconciles AgentRuns.
type Controller struct {
	client     clientset.Interface
	kubeClient kubernetes.Interface
	recorder   record.EventRecorder
	opts       Options

	runs       *runstore.Store
	instances  listers.SympoziumInstanceLister
	skillPacks listers.SkillPackLister
	// children are the informers of the childCache kinds, by kind.
	children   map[phase.Kind]cache.SharedIndexInformer
	podIndex   cache.Indexer
	configMaps cache.GenericLister
	sandboxes  *SandboxAPI
	grants     *GrantInformers
	// systemSkillPacks lists the skills namespace's SkillPacks; nil when
	// skillPacks does.
	systemSkillPacks listers.SkillPackLister
	// kinds reads and writes each kind of child; backends is the
	// controller's part of each backend.
	kinds    map[phase.Kind]kindClient
	backends map[phase.Backend]backendObserver

	synced []cache.InformerSynced
	worker *worker.Worker
	queue  workqueue.TypedRateLimitingInterface[cache.ObjectName]

	// stores are what the controller keeps in memory (stores.go).
	stores

	clock clock.WithTicker
}

func (c *Controller) now() time.Time { return c.clock.Now() }

// NewController wires the event handlers; call Run after the informer
// factories are started.
func NewController(ctx context.Context, client clientset.Interface, kube kubernetes.Interface,
	inf Informers, rec record.EventRecorder, opts Options) (*Controller, error) {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "agentrun")
	c := &Controller{
		client:     client,
		kubeClient: kube,
		recorder:   rec,
		opts:       opts,
		instances:  inf.Instances.Lister(),
		skillPacks: inf.SkillPacks.Lister(),
		sandboxes:  opts.SandboxAPI,
		configMaps: inf.ConfigMaps.Lister(),
		clock:      opts.Clock,
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	c.stores = newStores(c.clock)
	if err := c.childInformers(inf.Children); err != nil {
		return nil, err
	}
	c.kinds, c.backends = c.kindClients(), c.backendObservers()
	if inf.SystemSkillPacks != nil {
		c.systemSkillPacks = inf.SystemSkillPacks.Lister()
		reg, err := inf.SystemSkillPacks.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{})
		if err != nil {
			return nil, err
		}
		c.synced = append(c.synced, reg.HasSynced)
	}
	c.worker = worker.NewWithQueue("agentrun", opts.RateLimiter, c.clock, worker.NewFrontQueue(c.admissionRank), c.sync)
	c.worker.OnResult = opts.OnSync
	c.queue = c.worker.Queue
	var err error
	if c.runs, err = runstore.New(inf.Runs.Informer()); err != nil {
		return nil, err
	}
	regs, err := c.addHandlers(logger, inf)
	if err != nil {
		return nil, err
	}
	for _, r := range regs {
		c.synced = append(c.synced, r.HasSynced)
	}
	grantsSynced, err := c.addGrantInformers(inf.Grants)
	if err != nil {
		return nil, err
	}
	c.synced = append(c.synced, grantsSynced...)
	if c.sandboxes != nil {
		c.sandboxes.setHandler(c.sandboxEvent)
		c.sandboxes.now = c.clock.Now
	}
	return c, nil
}

// Run starts workers and blocks until ctx is done, then drains the queue
// and waits for the workers. The agent-sandbox API is looked up and its
// informers run beside the workers, outside the cache sync.
func (c *Controller) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	if c.sandboxes != nil {
		wg.Go(func() { c.sandboxes.Run(ctx) })
	}
	wg.Go(func() { c.wakes.Run(ctx, c.wake) })
	c.worker.Run(ctx, workers, c.synced...)
	c.wakes.ShutDown()
	wg.Wait()
}

// HasSynced reports whether every informer the controller reads has synced.
func (c *Controller) HasSynced() bool {
	return worker.AllSynced(c.synced...)
}

func (c *Controller) enqueue(key cache.ObjectName) { c.queue.Add(key) }

// wakeAfter has the run synced again after d: the next deadline or grace
// expiry a live run's decision asks for. The wake is timed outside the
// queue, which cannot take back a delayed key: the run handlers cancel it
// when the run finishes or is deleted (cancelWake), and one that comes due
// all the same is dropped (wake). Otherwise every run is synced once more
// for nothing at its deadline, and its wake kept in memory until then, up
// to its timeout (10 minutes by default) after it finished.
//
// The cache is read after the wake is set: a run the cache already holds
// finished (its handler ran before this sync's wake was set) has it
// cancelled here, so that no wake outlives its run's finish.
func (c *Controller) wakeAfter(key cache.ObjectName, d time.Duration) {
	c.wakes.Schedule(key, c.now().Add(d))
	if c.finishedAtRest(key) {
		c.wakes.Cancel(key)
	}
}

// finishedAtRest reports whether the cache holds the run key finished and
// not being deleted (runstore.Entry.FinishedAtRest): it has no deadline to
// wake for.
func (c *Controller) finishedAtRest(key cache.ObjectName) bool { return c.runs.FinishedAtRest(key) }

// cancelWake drops the pending wake of the run e is, if any.
func (c *Controller) cancelWake(e runstore.Entry) {
	if key, ok := e.Key(); ok {
		c.wakes.Cancel(key)
	}
}

// wake moves a wake that came due into the queue, unless the cache holds
// the run finished and not being deleted: the terminal status write that
// finished it brought its own sync, and a finished run has no deadline. It
// may come due before the run's handler saw the finish and cancelled it.
func (c *Controller) wake(key cache.ObjectName) {
	if !c.finishedAtRest(key) {
		c.enqueue(key)
	}
}

// admissionRank orders the queue: runs whose admission is undecided (new
// runs, see phase.AdmissionUndecided) go in front, oldest first, so that
// under a burst a run's workload is created in submission order and not
// behind the status writes of runs whose pods changed. Everything else
// follows in the order it came: runs already admitted, runs that were told
// to wait (a freed slot wakes every waiting run of the instance, and only
// the oldest can take it: a wave of them must not hold back the status
// writes that free the next slots), runs being deleted, and runs the cache
// no longer holds (deleted: their grants are swept), and a run admitted by
// this controller whose cached copy is older than that write (its Job's
// event comes before its own; the sync would wait for the informer). The
// queue keeps the rest from starving (worker.FrontQueue).
func (c *Controller) admissionRank(key cache.ObjectName) (front bool, at time.Time) {
	run, err := c.runs.Get(key.Namespace, key.Name)
	if err != nil || !phase.AdmissionUndecided(run) || c.writes.stale(run) {
		return false, time.Time{}
	}
	return true, run.CreationTimestamp.Time
}
