// Package agentrun is the AgentRun controller: one typed, rate-limited
// workqueue of AgentRun keys, fed by the runs themselves and by their
// children (Jobs, Pods), whose sync gathers what the listers hold, asks the
// pure phase state machine what to do and applies its decision.
package agentrun

import (
	"context"
	"time"

	"k8s.io/client-go/informers"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	cworkqueue "github.com/sympozium-ai/sympozium-controller/pkg/controller/workqueue"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	listers "github.com/sympozium-ai/sympozium-controller/pkg/generated/listers/sympozium/v1alpha1"
)

// ControllerName is the field manager and the event source.
const ControllerName = "sympozium-controller"

// Informers are the shared informers the controller reads. Jobs and Pods
// should be filtered to the controller's own children (label
// app.kubernetes.io/managed-by); ConfigMaps is a metadata-only informer.
type Informers struct {
	Runs       sinformers.TypedAgentRunInformer
	Instances  sinformers.TypedSympoziumInstanceInformer
	SkillPacks sinformers.TypedSkillPackInformer
	Jobs       batchinformers.TypedJobInformer
	Pods       coreinformers.TypedPodInformer
	ConfigMaps informers.GenericInformer
}

// Options tune the controller.
type Options struct {
	Phase phase.Config
	// Logs reads the agent container's log tail for the result marker
	// fallback; nil disables the fallback.
	Logs LogReader
	// RateLimiter overrides the default per-item exponential backoff.
	RateLimiter workqueue.TypedRateLimiter[cache.ObjectName]
	// OnSync, when set, is told the outcome of every sync (metrics).
	OnSync func(queue string, err error, d time.Duration)
	// OnTransition, when set, is told about each phase transition written
	// (metrics): the run as it was, and its new status.
	OnTransition func(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus, reason string)
}

// Controller reconciles AgentRuns.
type Controller struct {
	client     clientset.Interface
	kubeClient kubernetes.Interface
	recorder   record.EventRecorder
	opts       Options

	runs       listers.AgentRunLister
	runIndex   cache.Indexer
	instances  listers.SympoziumInstanceLister
	skillPacks listers.SkillPackLister
	jobs       batchlisters.JobLister
	pods       corelisters.PodLister
	podIndex   cache.Indexer
	configMaps cache.GenericLister

	synced []cache.InformerSynced
	worker *cworkqueue.Worker
	queue  workqueue.TypedRateLimitingInterface[cache.ObjectName]

	expectations *expectations
	admissions   *admissions
	writes       *ownWrites

	now func() time.Time
}

// NewController wires the event handlers; call Run after the informer
// factories are started.
func NewController(ctx context.Context, client clientset.Interface, kube kubernetes.Interface,
	inf Informers, rec record.EventRecorder, opts Options) (*Controller, error) {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "agentrun")
	c := &Controller{
		client:       client,
		kubeClient:   kube,
		recorder:     rec,
		opts:         opts,
		runs:         inf.Runs.Lister(),
		runIndex:     inf.Runs.Informer().GetIndexer(),
		instances:    inf.Instances.Lister(),
		skillPacks:   inf.SkillPacks.Lister(),
		jobs:         inf.Jobs.Lister(),
		pods:         inf.Pods.Lister(),
		podIndex:     inf.Pods.Informer().GetIndexer(),
		configMaps:   inf.ConfigMaps.Lister(),
		expectations: newExpectations(),
		admissions:   newAdmissions(),
		writes:       newOwnWrites(),
		now:          time.Now,
	}
	c.worker = cworkqueue.New("agentrun", opts.RateLimiter, c.sync)
	c.worker.OnResult = opts.OnSync
	c.queue = c.worker.Queue
	if err := AddIndexers(inf.Runs.Informer(), inf.Pods.Informer()); err != nil {
		return nil, err
	}
	regs, err := c.addHandlers(logger, inf)
	if err != nil {
		return nil, err
	}
	for _, r := range regs {
		c.synced = append(c.synced, r.HasSynced)
	}
	return c, nil
}

// Run starts workers and blocks until ctx is done, then drains the queue
// and waits for the workers.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.worker.Run(ctx, workers, c.synced...)
}

// HasSynced reports whether every informer the controller reads has synced.
func (c *Controller) HasSynced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

func (c *Controller) enqueue(key cache.ObjectName) { c.queue.Add(key) }
