package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

// minimalUserAgent names the minimal client's requests in the audit log.
const minimalUserAgent = "sympozium-bench-minimal"

// minimalWorkers is the minimal client's parallelism (issue 26).
const minimalWorkers = 8

// minimalClient is the burst's second baseline: the fewest API requests that
// carry a task-mode run from creation to Succeeded, from a client with no
// budget of its own (no client-side rate limit). It creates each run
// itself, creates its Job (workload.Job, as the controller builds it),
// writes status Pending with jobName, and, once the pod informer shows the
// agent container terminated, writes Succeeded (or Failed) and deletes the
// Job. No run informer (it keeps the run it last wrote), no Running, no
// conditions, no events, no instance status. The lifecycle client
// (lifecycle.go) answers how the controller compares with a client of its
// shape and budget; this one what the controller costs the cluster beyond
// the least a run needs.
type minimalClient struct {
	kube  kubernetes.Interface
	runs  clientset.Interface
	inst  *v1alpha1.SympoziumInstance
	cfg   workload.Config
	spec  runSpec
	queue workqueue.TypedRateLimitingInterface[minimalKey]
	pods  informers.SharedInformerFactory

	mu       sync.Mutex
	written  map[string]*v1alpha1.AgentRun // the run as this client's last status write returned it
	finished map[string]bool               // runs whose end was queued
	made     map[string]bool               // runs this client created
	created  sync.WaitGroup                // one per run until it was created
}

// minimalKey is one piece of work: create run i (and its Job, and write
// Pending), or finish the run named finish.
type minimalKey struct {
	start  int
	finish string
}

// newMinimalClient builds the client for namespace ns: unlimited QPS, built-in
// kinds in protobuf (as the controller), its own user agent.
func (e *env) newMinimalClient(ns string, inst *v1alpha1.SympoziumInstance, spec runSpec) (*minimalClient, error) {
	cfg := e.cluster.RestConfig()
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = minimalUserAgent
	pb := rest.CopyConfig(cfg)
	pb.ContentType = runtime.ContentTypeProtobuf
	pb.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	kube, err := kubernetes.NewForConfig(pb)
	if err != nil {
		return nil, err
	}
	runs, err := clientset.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &minimalClient{
		kube: kube, runs: runs, inst: inst, spec: spec,
		cfg: workload.Config{
			AgentImage: agentImage, RunIdentity: true,
			DefaultTimeout: 10 * time.Minute, DeadlineSlack: 15 * time.Second,
		},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[minimalKey](),
			workqueue.TypedRateLimitingQueueConfig[minimalKey]{Name: "minimal"}),
		written:  map[string]*v1alpha1.AgentRun{},
		finished: map[string]bool{},
		made:     map[string]bool{},
	}
	c.pods = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns))
	podInf := c.pods.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(cache.Indexers{podsByRun: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Labels[v1alpha1.LabelAgentRun] != "" {
			return []string{p.Labels[v1alpha1.LabelAgentRun]}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, err
	}
	onPod := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Labels[v1alpha1.LabelAgentRun] == "" {
			return
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == v1alpha1.AgentContainerName && s.State.Terminated != nil {
				name := p.Labels[v1alpha1.LabelAgentRun]
				c.mu.Lock()
				first := !c.finished[name]
				c.finished[name] = true
				c.mu.Unlock()
				if first {
					c.queue.Add(minimalKey{start: -1, finish: name})
				}
			}
		}
	}
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// runMinimal carries n runs of spec in ns through the minimal client: it
// returns once every run was created (submit's contract for runAll); stop
// ends its workers.
func (e *env) runMinimal(ctx context.Context, ns string, inst *v1alpha1.SympoziumInstance, spec runSpec) (submit func(context.Context, int) error, stop func(), err error) {
	c, err := e.newMinimalClient(ns, inst, spec)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c.pods.Start(ctx.Done())
	for typ, ok := range c.pods.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, nil, fmt.Errorf("minimal client: %v cache did not sync", typ)
		}
	}
	var wg sync.WaitGroup
	for range minimalWorkers {
		wg.Go(func() { c.worker(ctx) })
	}
	stop = func() {
		cancel()
		c.queue.ShutDown()
		wg.Wait()
		c.pods.Shutdown()
	}
	submit = func(ctx context.Context, n int) error {
		c.created.Add(n)
		for i := range n {
			c.queue.Add(minimalKey{start: i})
		}
		done := make(chan struct{})
		go func() { c.created.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return submit, stop, nil
}

func (c *minimalClient) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		var err error
		if key.finish != "" {
			err = c.finish(ctx, key.finish)
		} else {
			err = c.start(ctx, key.start)
		}
		switch {
		case err == nil:
			c.queue.Forget(key)
		case ctx.Err() != nil:
		default:
			utilruntime.HandleErrorWithContext(ctx, err, "Minimal client: failed, retrying", "key", key)
			c.queue.AddRateLimited(key)
		}
		c.queue.Done(key)
	}
}

// start creates run i, its Job and writes Pending. A retry after a failure
// takes up where the last attempt stopped (AlreadyExists is success).
func (c *minimalClient) start(ctx context.Context, i int) error {
	ns := c.inst.Namespace
	want := c.spec.run(ns, i)
	run, err := c.runs.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, want, metav1.CreateOptions{FieldManager: minimalUserAgent})
	if apierrors.IsAlreadyExists(err) {
		run, err = c.runs.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, want.Name, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	first := !c.made[run.Name]
	c.made[run.Name] = true
	c.mu.Unlock()
	if first {
		c.created.Done()
	}
	job, err := workload.Job(c.cfg, workload.Inputs{Run: run, Instance: c.inst, Now: time.Now()})
	if err != nil {
		return err
	}
	if _, err := c.kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{FieldManager: minimalUserAgent}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cp := run.DeepCopy()
	cp.Status.Phase, cp.Status.JobName = v1alpha1.PhasePending, naming.JobName(run.Name)
	out, err := c.runs.SympoziumV1alpha1().AgentRuns(ns).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: minimalUserAgent})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.written[run.Name] = out
	c.mu.Unlock()
	return nil
}

// finish writes the run's outcome from its agent container and deletes the
// Job.
func (c *minimalClient) finish(ctx context.Context, name string) error {
	ns := c.inst.Namespace
	c.mu.Lock()
	run := c.written[name]
	c.mu.Unlock()
	if run == nil {
		// The pod ended before this client's own Pending write returned.
		c.queue.AddAfter(minimalKey{start: -1, finish: name}, 10*time.Millisecond)
		return nil
	}
	if !run.Status.Phase.IsTerminal() {
		if err := c.writeOutcome(ctx, run); err != nil {
			return err
		}
	}
	if c.spec.cleanup == v1alpha1.CleanupKeep {
		return nil
	}
	err := c.kube.BatchV1().Jobs(ns).Delete(ctx, naming.JobName(name), metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// writeOutcome writes Succeeded (or Failed) from the agent container's
// termination.
func (c *minimalClient) writeOutcome(ctx context.Context, run *v1alpha1.AgentRun) error {
	var term *corev1.ContainerStateTerminated
	var pod string
	objs, err := c.pods.Core().V1().Pods().Informer().GetIndexer().ByIndex(podsByRun, run.Name)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		p := obj.(*corev1.Pod)
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == v1alpha1.AgentContainerName && s.State.Terminated != nil {
				term, pod = s.State.Terminated, p.Name
			}
		}
	}
	if term == nil {
		return fmt.Errorf("run %s: the agent's termination is no longer in the cache", run.Name)
	}
	cp := run.DeepCopy()
	cp.Status.Phase = v1alpha1.PhaseSucceeded
	if term.ExitCode != 0 {
		cp.Status.Phase = v1alpha1.PhaseFailed
	}
	started, now := term.StartedAt, metav1.Now()
	cp.Status.PodName, cp.Status.StartedAt, cp.Status.CompletedAt, cp.Status.ExitCode = pod, &started, &now, new(term.ExitCode)
	out, err := c.runs.SympoziumV1alpha1().AgentRuns(run.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: minimalUserAgent})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.written[run.Name] = out
	c.mu.Unlock()
	return nil
}
