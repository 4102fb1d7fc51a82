// Package worker holds the queue → worker → sync loop that every
// controller of this module runs: a typed, named, rate-limited workqueue of
// object keys, drained by workers that call the controller's sync.
package worker

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// MaxRetries is how often a failing key is retried before it is dropped; the
// next watch event or resync brings it back (as in the deployment and
// endpoints controllers).
const MaxRetries = 15

// SyncFunc reconciles one object.
type SyncFunc func(ctx context.Context, key cache.ObjectName) error

// Worker owns one controller's queue.
type Worker struct {
	// Name is the queue's name in metrics and logs.
	Name  string
	Queue workqueue.TypedRateLimitingInterface[cache.ObjectName]
	// Sync is the seam tests replace.
	Sync SyncFunc
	// OnResult, when set, is told the outcome of every sync (metrics).
	OnResult func(name string, err error, d time.Duration)

	clock clock.WithTicker
}

// DefaultRateLimiter is the per-item exponential backoff: 1s doubling to 5m.
func DefaultRateLimiter() workqueue.TypedRateLimiter[cache.ObjectName] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[cache.ObjectName](time.Second, 5*time.Minute)
}

// New makes a Worker with a named FIFO queue; rl nil means
// DefaultRateLimiter, clk nil the real clock. The queue's delays (AddAfter,
// backoff) run on clk.
func New(name string, rl workqueue.TypedRateLimiter[cache.ObjectName], clk clock.WithTicker, sync SyncFunc) *Worker {
	return NewWithQueue(name, rl, clk, nil, sync)
}

// NewWithQueue is New with q as the order in which ready keys are served
// (nil: FIFO). The workqueue around it keeps its metrics, its
// deduplication, its delays and its rate limiting.
func NewWithQueue(name string, rl workqueue.TypedRateLimiter[cache.ObjectName], clk clock.WithTicker,
	q workqueue.Queue[cache.ObjectName], sync SyncFunc) *Worker {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Worker{Name: name, Queue: newQueue(name, rl, clk, q, nil), Sync: sync, clock: clk}
}

// newQueue builds the rate-limited queue of name over q; provider nil
// means the global metrics provider (workqueue.SetProvider).
// TypedRateLimitingQueueConfig has no field for the underlying queue, so
// the layers are built here one by one: the queue (depth, adds, latency,
// work duration), the delaying queue (retries), the rate limiter.
func newQueue(name string, rl workqueue.TypedRateLimiter[cache.ObjectName], clk clock.WithTicker,
	q workqueue.Queue[cache.ObjectName], provider workqueue.MetricsProvider) workqueue.TypedRateLimitingInterface[cache.ObjectName] {
	if rl == nil {
		rl = DefaultRateLimiter()
	}
	base := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[cache.ObjectName]{
		Name: name, MetricsProvider: provider, Clock: clk, Queue: q,
	})
	delaying := workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[cache.ObjectName]{
		Name: name, MetricsProvider: provider, Clock: clk, Queue: base,
	})
	return workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[cache.ObjectName]{
		Name: name, MetricsProvider: provider, Clock: clk, DelayingQueue: delaying,
	})
}

// AllSynced reports whether every one of synced has synced: a controller's
// HasSynced over its event handler registrations.
func AllSynced(synced ...cache.InformerSynced) bool {
	for _, s := range synced {
		if !s() {
			return false
		}
	}
	return true
}

// Run waits for the caches, starts workers and blocks until ctx is done;
// then it shuts the queue down and waits for the workers to finish.
func (w *Worker) Run(ctx context.Context, workers int, synced ...cache.InformerSynced) {
	defer utilruntime.HandleCrashWithContext(ctx)
	logger := klog.FromContext(ctx)
	logger.Info("Starting controller", "controller", w.Name, "workers", workers)
	var wg sync.WaitGroup
	defer func() {
		logger.Info("Shutting down controller", "controller", w.Name)
		w.Queue.ShutDownWithDrain()
		wg.Wait()
	}()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, synced...) {
		return
	}
	for range workers {
		wg.Go(func() { wait.UntilWithContext(ctx, w.work, time.Second) })
	}
	<-ctx.Done()
}

func (w *Worker) work(ctx context.Context) {
	for w.ProcessNextWorkItem(ctx) {
	}
}

// ProcessNextWorkItem syncs one key; false once the queue is shut down.
func (w *Worker) ProcessNextWorkItem(ctx context.Context) bool {
	key, quit := w.Queue.Get()
	if quit {
		return false
	}
	defer w.Queue.Done(key)
	start := w.clock.Now()
	err := w.Sync(ctx, key)
	if w.OnResult != nil {
		w.OnResult(w.Name, err, w.clock.Since(start))
	}
	w.handleErr(ctx, err, key)
	return true
}

func (w *Worker) handleErr(ctx context.Context, err error, key cache.ObjectName) {
	switch {
	case err == nil:
		w.Queue.Forget(key)
	case apierrors.IsConflict(err):
		// Routine with optimistic concurrency: not reported as an error.
		klog.FromContext(ctx).V(2).Info("Conflict writing, requeuing", "controller", w.Name, "key", key)
		w.Queue.AddRateLimited(key)
	case w.Queue.NumRequeues(key) < MaxRetries:
		utilruntime.HandleErrorWithContext(ctx, err, "Sync failed, requeuing", "controller", w.Name, "key", key)
		w.Queue.AddRateLimited(key)
	default:
		utilruntime.HandleErrorWithContext(ctx, err, "Dropping key out of the queue", "controller", w.Name, "key", key)
		w.Queue.Forget(key)
	}
}
