// Package instance is the SympoziumInstance controller: it counts each
// instance's runs into its status and deletes its finished runs beyond
// spec.runHistoryLimit (and the per-outcome successful/failed limits),
// oldest first, and those whose ttlSecondsAfterFinished ran out, woken by
// the queue's AddAfter on the injected clock; never a live run. With
// ManageChildren it also runs the instance's objects as sympozium's
// instance controller did (web-endpoint run, memory, channel gateways),
// decided by the pure instancephase.Next.
package instance

import (
	"context"
	"errors"
	"fmt"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/index"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/worker"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	listers "github.com/sympozium-ai/sympozium-controller/pkg/generated/listers/sympozium/v1alpha1"
)

// Coalesce is how long run changes are gathered before an instance is
// synced: a burst of run transitions makes one status write, not one each.
const Coalesce = time.Second

// Controller reconciles SympoziumInstance status and run history.
type Controller struct {
	client    clientset.Interface
	instances listers.SympoziumInstanceLister
	runs      *runstore.Store
	// runsIndexer is the run informer's store (records of finished runs).
	runsIndexer cache.Indexer
	synced      []cache.InformerSynced
	worker      *worker.Worker
	queue       workqueue.TypedRateLimitingInterface[cache.ObjectName]
	coalesce    time.Duration
	clock       clock.WithTicker
	// tally counts each instance's runs from the run events.
	tally *tally
	// runEvents are the run handlers (the tests deliver events through
	// them as the informer does).
	runEvents cache.ResourceEventHandlerFuncs
	// children runs the instances' objects (ManageChildren); nil: none.
	children *children
}

// NewController wires the event handlers. rl may be nil; clk nil is the
// real clock (TTL expiry is timed on it, through the queue's AddAfter).
func NewController(ctx context.Context, client clientset.Interface, instances sinformers.TypedSympoziumInstanceInformer,
	runs sinformers.TypedAgentRunInformer, pods cache.SharedIndexInformer, rl workqueue.TypedRateLimiter[cache.ObjectName],
	clk clock.WithTicker) (*Controller, error) {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "instance")
	c := &Controller{
		client:    client,
		instances: instances.Lister(),
		coalesce:  Coalesce,
		clock:     clk,
		tally:     newTally(),
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	c.worker = worker.New("sympoziuminstance", rl, c.clock, c.sync)
	c.queue = c.worker.Queue
	var err error
	if c.runs, err = runstore.New(runs.Informer()); err != nil {
		return nil, err
	}
	c.runsIndexer = runs.Informer().GetIndexer()
	if err := index.Add(pods); err != nil {
		return nil, err
	}
	opts := cache.HandlerOptions{Logger: &logger}
	ireg, err := instances.TypedInformer().AddTypedEventHandler(sinformers.SympoziumInstanceHandlerFuncs{
		AddFunc: func(i *v1alpha1.SympoziumInstance) { c.queue.Add(cache.MetaObjectToName(i)) },
		UpdateFunc: func(old, cur *v1alpha1.SympoziumInstance) {
			// A status-only change is mostly this controller's own write:
			// syncing at once would count again and write again, several
			// times a second during a burst of runs. Coalesce it like run
			// changes; spec changes (and resyncs) go in at once.
			if old.Generation == cur.Generation && old.ResourceVersion != cur.ResourceVersion {
				c.queue.AddAfter(cache.MetaObjectToName(cur), c.coalesce)
				return
			}
			c.queue.Add(cache.MetaObjectToName(cur))
		},
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("adding SympoziumInstance event handler: %w", err)
	}
	// The run store holds finished runs as records: the handlers read
	// either shape through runstore.Entry.
	// Every event moves the instance's tally; the instance is synced when
	// a run's phase, TTL or deletion changed what it reports or prunes.
	c.runEvents = runstore.Handlers{
		Add: func(e runstore.Entry) {
			c.tally.add(e, +1)
			c.runChanged(e)
		},
		Update: func(oldEntry, curEntry runstore.Entry) {
			c.tally.update(oldEntry, curEntry)
			old, ok := oldEntry.History()
			cur, ok2 := curEntry.History()
			if ok && ok2 && (old.Phase != cur.Phase || old.HasTTL != cur.HasTTL || old.TTL != cur.TTL || old.Deleting != cur.Deleting) {
				c.runChanged(curEntry)
			}
		},
		Delete: func(e runstore.Entry) {
			c.tally.add(e, -1)
			c.runChanged(e)
		},
	}.Funcs()
	rreg, err := runs.Informer().AddEventHandlerWithOptions(c.runEvents, opts)
	if err != nil {
		return nil, fmt.Errorf("adding AgentRun event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{ireg.HasSynced, rreg.HasSynced}
	return c, nil
}

// runChanged wakes the instance of the run e (the ttlSecondsAfterFinished
// compared above is the one field of a finished run that may change and
// moves its expiry).
func (c *Controller) runChanged(e runstore.Entry) {
	if ns, inst, ok := e.Instance(); ok {
		c.queue.AddAfter(cache.ObjectName{Namespace: ns, Name: inst}, c.coalesce)
	}
}

// Run blocks until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) { c.worker.Run(ctx, workers, c.synced...) }

// ReportSyncs has f told the outcome of every sync (metrics); call it
// before Run.
func (c *Controller) ReportSyncs(f func(queue string, err error, d time.Duration)) {
	c.worker.OnResult = f
}

// HasSynced reports whether the controller's informers have synced.
func (c *Controller) HasSynced() bool {
	return worker.AllSynced(c.synced...)
}

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) error {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "sympoziumInstance", key)
	inst, err := c.instances.SympoziumInstances(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// Migration: sympozium's own controller put a finalizer on every
	// instance it reconciled and is no longer there to remove it.
	if sent, err := legacy.RemoveFinalizer(klog.NewContext(ctx, logger), inst.Finalizers, legacy.FinalizerInstance, func(ctx context.Context, p []byte) error {
		_, err := c.client.SympoziumV1alpha1().SympoziumInstances(inst.Namespace).Patch(ctx, inst.Name, types.JSONPatchType, p,
			metav1.PatchOptions{FieldManager: v1alpha1.FieldManager})
		return err
	}); sent {
		return err
	}
	// The counts come from the tally; the runs are read only when the
	// history policy has something to do (a limit exceeded, a TTL to time).
	tl := c.tally.of(runstore.InstanceKey(key.Namespace, key.Name))
	var errs []error
	if tl.historyDue(inst) {
		pruned, err := c.expire(ctx, logger, key, inst)
		if err != nil {
			errs = append(errs, err)
		}
		// The deleted runs are gone from what the status reports, before
		// their delete events arrive.
		for _, r := range pruned {
			tl.count(r, -1)
		}
	}
	counts := tl.Counts
	st := v1alpha1.SympoziumInstanceStatus{
		ObservedGeneration: inst.Generation,
		ActiveRuns:         counts.Active, WaitingRuns: counts.Waiting,
		SucceededRuns: counts.Succeeded, FailedRuns: counts.Failed,
	}
	sympoziumStatus(inst, tl.Serving > 0, counts.Active, &st)
	if c.children != nil {
		// The instance's objects: observed from the caches, decided once,
		// applied.
		in, err := c.observeChildren(inst)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		d := instancephase.Next(in)
		if err := c.applyChildren(ctx, logger, inst, d); err != nil {
			errs = append(errs, err)
		}
		st.Channels = d.Channels
		if d.ChannelsReady != nil {
			meta.SetStatusCondition(&st.Conditions, *d.ChannelsReady)
		} else {
			meta.RemoveStatusCondition(&st.Conditions, instancephase.ConditionChannelsReady)
		}
	}
	if !apiequality.Semantic.DeepEqual(inst.Status, st) {
		cp := inst.DeepCopy()
		cp.Status = st
		if _, err := c.client.SympoziumV1alpha1().SympoziumInstances(inst.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// expire applies the instance's history policy (runcache.Expire) to its runs
// and returns the runs it deleted.
func (c *Controller) expire(ctx context.Context, logger klog.Logger, key cache.ObjectName, inst *v1alpha1.SympoziumInstance) ([]runcache.HistoryRun, error) {
	runs, err := c.runs.Histories(key.Namespace, key.Name)
	if err != nil {
		return nil, err
	}
	expiry := runcache.Expire(runs, inst, c.clock.Now())
	if expiry.RequeueAfter > 0 {
		// The next TTL to run out: a timer, not a poll.
		c.queue.AddAfter(key, expiry.RequeueAfter)
	}
	var errs []error
	var pruned []runcache.HistoryRun
	for _, r := range expiry.Delete {
		if err := c.deleteRun(ctx, inst.Namespace, r); err != nil {
			errs = append(errs, err)
			continue
		}
		pruned = append(pruned, r)
		logger.V(2).Info("Pruned finished run", "agentRun", klog.KRef(inst.Namespace, r.Name))
	}
	return pruned, errors.Join(errs...)
}

// ChannelMessage is the message of every channel's status when the
// controller runs no channel gateway (ManageChildren not called).
const ChannelMessage = "channel gateways are not run by sympozium-controller"

// sympoziumStatus fills in the fields sympozium's web UI and TUI read, with
// sympozium's values: phase Serving while a run of the instance serves, else
// Running; activeAgentPods the runs in Running or Serving; one entry per
// channel of the spec. Fields only sympozium's other components write
// (webEndpoint, totalAgentRuns, conditions) are kept as found; with
// ManageChildren the conditions get ChannelsReady.
func sympoziumStatus(inst *v1alpha1.SympoziumInstance, serving bool, active int32, st *v1alpha1.SympoziumInstanceStatus) {
	st.Phase = "Running"
	if serving {
		st.Phase = "Serving"
	}
	st.ActiveAgentPods = active
	for _, ch := range inst.Spec.Channels {
		st.Channels = append(st.Channels, v1alpha1.ChannelStatus{Type: ch.Type, Status: "Disconnected", Message: ChannelMessage})
	}
	st.WebEndpoint = inst.Status.WebEndpoint.DeepCopy()
	st.TotalAgentRuns = inst.Status.TotalAgentRuns
	for i := range inst.Status.Conditions {
		st.Conditions = append(st.Conditions, *inst.Status.Conditions[i].DeepCopy())
	}
}

func (c *Controller) deleteRun(ctx context.Context, namespace string, r runcache.HistoryRun) error {
	uid := r.UID()
	policy := metav1.DeletePropagationBackground
	err := c.client.SympoziumV1alpha1().AgentRuns(namespace).Delete(ctx, r.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy,
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
