package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
	listers "github.com/sympozium-ai/sympozium-controller/pkg/generated/listers/sympozium/v1alpha1"
)

// lifecycleUserAgent names the lifecycle baseline's requests in the audit log.
const lifecycleUserAgent = "sympozium-bench-lifecycle"

// podsByRun indexes pods by the run label the workload builder sets.
const podsByRun = "run"

// lifecycleClient is the burst's lifecycle baseline: the least a client-go
// program must do to carry a task-mode run through the seed's lifecycle. It
// has the controller's shape (informers on AgentRuns and pods, a workqueue,
// the same number of workers, the same client QPS and burst) and makes only
// the writes the lifecycle needs: create the run's Job (built by the same
// workload.Job as the controller's), write Pending with jobName, Running
// when the agent container runs, Succeeded (or Failed) when it terminated,
// then delete the Job (cleanup delete). No events, no conditions, no
// instance status, no capacity, timeouts or retries: what the controller
// does beyond this is its overhead.
type lifecycleClient struct {
	kube   kubernetes.Interface
	runs   clientset.Interface
	lister listers.AgentRunLister
	pods   cache.Indexer
	inst   *v1alpha1.SympoziumInstance
	cfg    workload.Config
	queue  workqueue.TypedRateLimitingInterface[string]

	mu sync.Mutex
	// written is the run as this client last wrote it: the informer may
	// not have delivered that write yet, and acting on the older cached
	// copy would write again and conflict.
	written map[string]*v1alpha1.AgentRun
	created map[string]bool // Jobs this client created
	deleted map[string]bool // Jobs this client deleted
}

// newLifecycleClient builds the baseline's clients (its own user agent, the
// controller's QPS and burst, one rate limiter per clientset as in the
// controller) and informers for namespace ns. inst is the runs' instance
// (it feeds the Job builder, as in the controller).
func (e *env) newLifecycleClient(ns string, inst *v1alpha1.SympoziumInstance) (*lifecycleClient, sinformers.SharedInformerFactory, informers.SharedInformerFactory, error) {
	cfg := e.cluster.RestConfig()
	cfg.QPS, cfg.Burst = e.qps, e.burst
	cfg.UserAgent = lifecycleUserAgent
	// Built-in kinds in protobuf, as the controller (pkg/manager) and
	// kube-controller-manager talk them: the ratio measures the lifecycle's
	// overhead, not a choice of encoding.
	pb := rest.CopyConfig(cfg)
	pb.ContentType = runtime.ContentTypeProtobuf
	pb.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	kube, err := kubernetes.NewForConfig(pb)
	if err != nil {
		return nil, nil, nil, err
	}
	runs, err := clientset.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	c := &lifecycleClient{
		kube: kube, runs: runs, inst: inst,
		// The controller's workload configuration (pkg/manager) with the
		// benchmark's --agent-image.
		cfg: workload.Config{
			AgentImage: agentImage, RunIdentity: true,
			DefaultTimeout: 10 * time.Minute, DeadlineSlack: 15 * time.Second,
		},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "lifecycle"}),
		written: map[string]*v1alpha1.AgentRun{},
		created: map[string]bool{},
		deleted: map[string]bool{},
	}
	sf := sinformers.NewSharedInformerFactoryWithOptions(runs, 0, sinformers.WithNamespace(ns))
	kf := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns))
	runInf := sf.Sympozium().V1alpha1().AgentRuns()
	c.lister = runInf.Lister()
	enqueueRun := func(obj any) {
		if r, ok := obj.(*v1alpha1.AgentRun); ok {
			c.queue.Add(r.Name)
		}
	}
	if _, err := runInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueRun,
		UpdateFunc: func(_, obj any) { enqueueRun(obj) },
	}); err != nil {
		return nil, nil, nil, err
	}
	podInf := kf.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(cache.Indexers{podsByRun: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Labels[v1alpha1.LabelAgentRun] != "" {
			return []string{p.Labels[v1alpha1.LabelAgentRun]}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, nil, nil, err
	}
	c.pods = podInf.GetIndexer()
	// The benchmark's run names are valid label values: the label is the name.
	enqueuePod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Labels[v1alpha1.LabelAgentRun] != "" {
			c.queue.Add(p.Labels[v1alpha1.LabelAgentRun])
		}
	}
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueuePod,
		UpdateFunc: func(_, obj any) { enqueuePod(obj) },
	}); err != nil {
		return nil, nil, nil, err
	}
	return c, sf, kf, nil
}

// startLifecycle starts the baseline in ns with workers workers; cancel ctx
// to stop it (the returned function waits for the workers).
func (e *env) startLifecycle(ctx context.Context, ns string, inst *v1alpha1.SympoziumInstance, workers int) (func(), error) {
	c, sf, kf, err := e.newLifecycleClient(ns, inst)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	sf.Start(ctx.Done())
	kf.Start(ctx.Done())
	for typ, ok := range sf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("lifecycle baseline: %v cache did not sync", typ)
		}
	}
	for typ, ok := range kf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("lifecycle baseline: %v cache did not sync", typ)
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { wait.UntilWithContext(ctx, c.worker, time.Second) })
	}
	return func() {
		cancel()
		c.queue.ShutDown()
		wg.Wait()
		sf.Shutdown()
		kf.Shutdown()
	}, nil
}

func (c *lifecycleClient) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		err := c.sync(ctx, key)
		switch {
		case err == nil:
			c.queue.Forget(key)
		case ctx.Err() != nil:
		default:
			if !apierrors.IsConflict(err) {
				utilruntime.HandleErrorWithContext(ctx, err, "Lifecycle baseline: sync failed, requeuing", "run", key)
			}
			c.queue.AddRateLimited(key)
		}
		c.queue.Done(key)
	}
}

// newer reports whether a's resourceVersion is after b's (etcd revisions).
func newer(a, b *v1alpha1.AgentRun) bool {
	x, err1 := strconv.ParseUint(a.ResourceVersion, 10, 64)
	y, err2 := strconv.ParseUint(b.ResourceVersion, 10, 64)
	return err1 == nil && err2 == nil && x > y
}

func (c *lifecycleClient) sync(ctx context.Context, name string) error {
	ns := c.inst.Namespace
	run, err := c.lister.AgentRuns(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	if w := c.written[name]; w != nil && newer(w, run) {
		run = w
	}
	created, deleted := c.created[name], c.deleted[name]
	c.mu.Unlock()

	st := run.Status
	switch st.Phase {
	case "":
		if !created {
			job, err := workload.Job(c.cfg, workload.Inputs{Run: run, Instance: c.inst, Now: time.Now()})
			if err != nil {
				return err
			}
			if _, err := c.kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{FieldManager: lifecycleUserAgent}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			c.mu.Lock()
			c.created[name] = true
			c.mu.Unlock()
		}
		st.Phase, st.JobName = v1alpha1.PhasePending, naming.JobName(run.Name)
		return c.writeStatus(ctx, run, st)
	case v1alpha1.PhasePending, v1alpha1.PhaseRunning:
		running, terminated, podName := c.agent(name)
		now := metav1.Now()
		switch {
		case terminated != nil:
			st.Phase = v1alpha1.PhaseSucceeded
			if terminated.ExitCode != 0 {
				st.Phase = v1alpha1.PhaseFailed
			}
			if st.StartedAt == nil {
				st.StartedAt = &now
			}
			st.PodName, st.CompletedAt, st.ExitCode = podName, &now, new(terminated.ExitCode)
		case running && st.Phase == v1alpha1.PhasePending:
			st.Phase, st.PodName, st.StartedAt = v1alpha1.PhaseRunning, podName, &now
		default:
			return nil
		}
		if err := c.writeStatus(ctx, run, st); err != nil {
			return err
		}
		if !st.Phase.IsTerminal() {
			return nil
		}
		fallthrough
	case v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed:
		if deleted || run.Spec.Cleanup == v1alpha1.CleanupKeep {
			return nil
		}
		err := c.kube.BatchV1().Jobs(ns).Delete(ctx, naming.JobName(run.Name), metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		c.mu.Lock()
		c.deleted[name] = true
		c.mu.Unlock()
	}
	return nil
}

// agent returns the state of the run's agent container: running, or its
// termination, and the pod's name.
func (c *lifecycleClient) agent(run string) (running bool, terminated *corev1.ContainerStateTerminated, pod string) {
	objs, _ := c.pods.ByIndex(podsByRun, run)
	for _, obj := range objs {
		p := obj.(*corev1.Pod)
		for _, s := range p.Status.ContainerStatuses {
			if s.Name != v1alpha1.AgentContainerName {
				continue
			}
			if s.State.Terminated != nil {
				return false, s.State.Terminated, p.Name
			}
			if s.State.Running != nil {
				running, pod = true, p.Name
			}
		}
	}
	return running, nil, pod
}

func (c *lifecycleClient) writeStatus(ctx context.Context, run *v1alpha1.AgentRun, st v1alpha1.AgentRunStatus) error {
	cp := run.DeepCopy()
	cp.Status = st
	out, err := c.runs.SympoziumV1alpha1().AgentRuns(run.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: lifecycleUserAgent})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.written[run.Name] = out
	c.mu.Unlock()
	return nil
}
