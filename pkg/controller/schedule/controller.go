// Package schedule is the SympoziumSchedule controller: at each tick of a
// schedule it creates the run that sympozium's schedule controller would
// create, with the decision of pkg/schedule (Forbid, Replace, missed
// ticks, starting deadline, suspend). It does not poll: each schedule is
// woken at its next tick by a cancellable timer (worker.Timers), its
// status is written only when it changes, and between ticks it sends
// nothing to the API server.
package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/worker"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	listers "github.com/sympozium-ai/sympozium-controller/pkg/generated/listers/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/schedule"
)

// schedulesByInstance keys schedules by <namespace>/<spec.instanceRef>:
// an instance created (or deleted) wakes its schedules.
const schedulesByInstance = "sympozium.ai/by-instance"

// Controller runs SympoziumSchedules.
type Controller struct {
	client    clientset.Interface
	kube      kubernetes.Interface
	schedules listers.SympoziumScheduleLister
	byIndex   cache.Indexer
	instances listers.SympoziumInstanceLister
	runs      *runstore.Store
	recorder  record.EventRecorder
	synced    []cache.InformerSynced
	worker    *worker.Worker
	queue     workqueue.TypedRateLimitingInterface[cache.ObjectName]
	// wakes holds each schedule's next tick.
	wakes *worker.Timers
	clock clock.WithTicker
}

// NewController wires the event handlers. rl may be nil; clk nil is the
// real clock (the ticks are timed on it).
func NewController(ctx context.Context, client clientset.Interface, kube kubernetes.Interface,
	schedules sinformers.TypedSympoziumScheduleInformer, instances sinformers.TypedSympoziumInstanceInformer,
	runs sinformers.TypedAgentRunInformer, recorder record.EventRecorder, rl workqueue.TypedRateLimiter[cache.ObjectName],
	clk clock.WithTicker) (*Controller, error) {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "schedule")
	if clk == nil {
		clk = clock.RealClock{}
	}
	c := &Controller{
		client: client, kube: kube,
		schedules: schedules.Lister(), byIndex: schedules.Informer().GetIndexer(),
		instances: instances.Lister(), recorder: recorder, clock: clk,
		wakes: worker.NewTimers(clk),
	}
	c.worker = worker.New("sympoziumschedule", rl, clk, c.sync)
	c.queue = c.worker.Queue
	var err error
	if c.runs, err = runstore.New(runs.Informer()); err != nil {
		return nil, err
	}
	if err := schedules.Informer().AddIndexers(cache.Indexers{schedulesByInstance: func(obj any) ([]string, error) {
		s, ok := obj.(*v1alpha1.SympoziumSchedule)
		if !ok {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Spec.InstanceRef}, nil
	}}); err != nil {
		return nil, fmt.Errorf("adding SympoziumSchedule indexer: %w", err)
	}
	opts := cache.HandlerOptions{Logger: &logger}
	sreg, err := schedules.TypedInformer().AddTypedEventHandler(sinformers.SympoziumScheduleHandlerFuncs{
		AddFunc:    func(s *v1alpha1.SympoziumSchedule) { c.queue.Add(cache.MetaObjectToName(s)) },
		UpdateFunc: func(_, cur *v1alpha1.SympoziumSchedule) { c.queue.Add(cache.MetaObjectToName(cur)) },
		DeleteFunc: func(d cache.DeletedObject[*v1alpha1.SympoziumSchedule]) { c.wakes.Cancel(d.GetObjectName()) },
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("adding SympoziumSchedule event handler: %w", err)
	}
	// An instance that appears (or goes) changes what its schedules
	// report: they are woken, not polled.
	wakeOf := func(i cache.ObjectName) { c.wakeSchedulesOf(i) }
	ireg, err := instances.TypedInformer().AddTypedEventHandler(sinformers.SympoziumInstanceHandlerFuncs{
		AddFunc:    func(i *v1alpha1.SympoziumInstance) { wakeOf(cache.MetaObjectToName(i)) },
		DeleteFunc: func(d cache.DeletedObject[*v1alpha1.SympoziumInstance]) { wakeOf(d.GetObjectName()) },
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("adding SympoziumInstance event handler: %w", err)
	}
	// The runs are read at a tick only: no run event wakes a schedule.
	rreg, err := runs.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{}, opts)
	if err != nil {
		return nil, fmt.Errorf("adding AgentRun event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{sreg.HasSynced, ireg.HasSynced, rreg.HasSynced}
	return c, nil
}

// wakeSchedulesOf queues the schedules of the instance i.
func (c *Controller) wakeSchedulesOf(i cache.ObjectName) {
	objs, _ := c.byIndex.ByIndex(schedulesByInstance, i.Namespace+"/"+i.Name)
	for _, o := range objs {
		if s, ok := o.(*v1alpha1.SympoziumSchedule); ok {
			c.queue.Add(cache.MetaObjectToName(s))
		}
	}
}

// Run blocks until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.wakes.Run(ctx, func(key cache.ObjectName) { c.queue.Add(key) })
	}()
	c.worker.Run(ctx, workers, c.synced...)
	c.wakes.ShutDown()
	<-done
}

// ReportSyncs has f told the outcome of every sync (metrics); call it
// before Run.
func (c *Controller) ReportSyncs(f func(queue string, err error, d time.Duration)) {
	c.worker.OnResult = f
}

// HasSynced reports whether the controller's informers have synced.
func (c *Controller) HasSynced() bool { return worker.AllSynced(c.synced...) }

// Pending is the number of schedules waiting for a tick.
func (c *Controller) Pending() int { return c.wakes.Len() }

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) error {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "sympoziumSchedule", key)
	ctx = klog.NewContext(ctx, logger)
	s, err := c.schedules.SympoziumSchedules(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		c.wakes.Cancel(key)
		return nil
	}
	if err != nil {
		return err
	}
	// Migration: sympozium's controller put a finalizer on every schedule
	// and is no longer there to remove it; deleting one would hang.
	if sent, err := legacy.RemoveFinalizer(ctx, s.Finalizers, legacy.FinalizerSchedule, func(ctx context.Context, p []byte) error {
		_, err := c.client.SympoziumV1alpha1().SympoziumSchedules(s.Namespace).Patch(ctx, s.Name, types.JSONPatchType, p,
			metav1.PatchOptions{FieldManager: v1alpha1.FieldManager})
		return err
	}); sent {
		return err
	}
	if s.DeletionTimestamp != nil {
		c.wakes.Cancel(key)
		return nil
	}
	now := c.clock.Now()
	cached, err := c.runs.OfSchedule(s.Namespace, s.Name)
	if err != nil {
		return err
	}
	runs := make([]schedule.Run, 0, len(cached))
	for _, r := range cached {
		runs = append(runs, schedule.RunOf(r))
	}
	inst, ierr := c.instances.SympoziumInstances(s.Namespace).Get(s.Spec.InstanceRef)
	if ierr != nil && !apierrors.IsNotFound(ierr) {
		return ierr
	}
	d := schedule.Decide(schedule.Input{
		Schedule: s, InstanceFound: ierr == nil, Runs: runs, Now: now,
		NameTaken: func(name string) bool { return c.runs.Has(s.Namespace, name) },
	})
	var errs []error
	for _, name := range d.Cancel {
		if err := c.cancel(ctx, s, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // nothing created before the old runs are cancelled
	}
	if d.Create != nil {
		if err := c.create(ctx, s, inst, *d.Create); err != nil {
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				// AlreadyExists included: the run the cache does not hold
				// yet is either this tick's (counted once it arrives) or
				// an older one whose name the next decision passes over.
				return err
			}
			d = schedule.CreateFailed(s, d, err.Error(), now)
		}
	}
	for _, e := range d.Events {
		typ := corev1.EventTypeNormal
		if e.Warning {
			typ = corev1.EventTypeWarning
		}
		c.recorder.Event(s, typ, e.Reason, e.Message)
	}
	if !apiequality.Semantic.DeepEqual(s.Status, d.Status) {
		cp := s.DeepCopy()
		cp.Status = d.Status
		if _, err := c.client.SympoziumV1alpha1().SympoziumSchedules(s.Namespace).UpdateStatus(ctx, cp,
			metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager}); err != nil {
			return err
		}
	}
	c.wakes.Cancel(key)
	if !d.WakeAt.IsZero() {
		c.wakes.Schedule(key, d.WakeAt)
	}
	return nil
}

// create creates the tick's run, with the instance's memory when the
// schedule includes it (read from the API server: one GET a tick).
func (c *Controller) create(ctx context.Context, s *v1alpha1.SympoziumSchedule, inst *v1alpha1.SympoziumInstance, fire schedule.Fire) error {
	memory := ""
	if schedule.IncludeMemory(s) {
		cm, err := c.kube.CoreV1().ConfigMaps(s.Namespace).Get(ctx, schedule.MemoryConfigMap(s.Spec.InstanceRef), metav1.GetOptions{})
		switch {
		case err == nil:
			memory = cm.Data[schedule.MemoryKey]
		case !apierrors.IsNotFound(err):
			return err
		}
	}
	run := schedule.BuildRun(s, inst, fire, memory)
	if _, err := c.client.SympoziumV1alpha1().AgentRuns(s.Namespace).Create(ctx, run, metav1.CreateOptions{FieldManager: v1alpha1.FieldManager}); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Created scheduled run", "agentRun", klog.KRef(s.Namespace, fire.Name), "tick", fire.Tick)
	return nil
}

// cancel sets spec.cancel on a run of the schedule (concurrencyPolicy
// Replace), with the schedule named in sympozium.ai/cancelled-by: the run
// ends Failed, reason Cancelled, its message naming the schedule.
func (c *Controller) cancel(ctx context.Context, s *v1alpha1.SympoziumSchedule, name string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{
			schedule.AnnotationCancelledBy: fmt.Sprintf("SympoziumSchedule %s (concurrencyPolicy Replace)", s.Name),
		}},
		"spec": map[string]any{"cancel": true},
	})
	if err != nil {
		return err
	}
	_, err = c.client.SympoziumV1alpha1().AgentRuns(s.Namespace).Patch(ctx, name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: v1alpha1.FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
