package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions"
)

const successReport = `{"status":"success","response":"done","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":450}}`

const instanceName = "bench"

// noPruning is the runHistoryLimit of the benchmark's instances: above any
// number of runs it creates, so that pruning never starts unless a phase
// lowers it.
const noPruning = 1_000_000

// createInstance creates the runs' SympoziumInstance with a history limit
// high enough that pruning never starts.
func (e *env) createInstance(ctx context.Context, ns string) (*v1alpha1.SympoziumInstance, error) {
	return e.watchClient.SympoziumV1alpha1().SympoziumInstances(ns).Create(ctx, &v1alpha1.SympoziumInstance{
		ObjectMeta: metav1.ObjectMeta{Name: instanceName, Namespace: ns},
		Spec:       v1alpha1.SympoziumInstanceSpec{RunHistoryLimit: new(int32(noPruning))},
	}, metav1.CreateOptions{})
}

// runSpec describes the runs of one workload.
type runSpec struct {
	simDuration string
	timeout     time.Duration
	cleanup     v1alpha1.CleanupPolicy
}

func runName(i int) string { return fmt.Sprintf("run-%05d", i) }
func jobName(i int) string { return fmt.Sprintf("job-%05d", i) }

func (s runSpec) run(ns string, i int) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: runName(i), Namespace: ns},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: instanceName,
			AgentID:     "default",
			SessionKey:  fmt.Sprintf("s-%05d", i),
			Task:        "summarise the state of the cluster",
			Model:       v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"},
			Cleanup:     s.cleanup,
			Env:         map[string]string{"SIM_DURATION": s.simDuration, "SIM_MESSAGE": successReport},
		},
	}
	if s.timeout > 0 {
		r.Spec.Timeout = &metav1.Duration{Duration: s.timeout}
	}
	return r
}

// baselineJob is what a bare client-go program creates: a Job whose pod kwok
// completes at once (the same simulated agent, SIM_DURATION=0s).
func baselineJob(ns string, i int) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobName(i), Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:  v1alpha1.AgentContainerName,
						Image: agentImage,
						Env: []corev1.EnvVar{
							{Name: "SIM_DURATION", Value: "0s"},
							{Name: "SIM_MESSAGE", Value: successReport},
						},
					}},
				},
			},
		},
	}
}

// createAll calls create(i) for i in [0,n) from parallel workers and returns
// when every call returned. Errors are fatal for the benchmark.
func createAll(ctx context.Context, n, parallel int, create func(context.Context, int) error) error {
	return createGated(ctx, 0, n, parallel, nil, create)
}

// createGated calls create(i) for i in [from,to) from parallel workers;
// when gate is set, each worker first waits until gate(i) is true. It
// returns when every call returned. Errors are fatal for the benchmark.
func createGated(ctx context.Context, from, to, parallel int, gate func(int) bool, create func(context.Context, int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= to || ctx.Err() != nil {
					return
				}
				for gate != nil && !gate(i) && ctx.Err() == nil {
					time.Sleep(20 * time.Millisecond)
				}
				if err := create(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// item is what the tracker saw of one run (or one baseline Job) and when.
type item struct {
	added      time.Time // the run (or baseline Job) was first seen
	admitted   time.Time // status.jobName set
	running    time.Time // phase Running
	done       time.Time // terminal phase (baseline: Job Complete)
	jobSeen    time.Time
	podRunning time.Time // agent container running
	podDone    time.Time // agent container terminated
	phase      v1alpha1.AgentRunPhase
}

// tracker watches a namespace and records when each run, Job and pod
// reaches each state, as seen from outside the controller.
type tracker struct {
	mu       sync.Mutex
	items    map[string]*item
	terminal int
	running  int
	jobs     int
	complete int
	deleted  []string // runs deleted, in the order the watch saw it
	stop     context.CancelFunc
}

// What a tracker watches.
const (
	trackRuns     = 1 << iota // AgentRuns
	trackChildren             // Jobs and pods
)

func (e *env) track(ctx context.Context, ns string, what int) (*tracker, error) {
	t := &tracker{items: map[string]*item{}}
	ctx, t.stop = context.WithCancel(ctx)
	kf := informers.NewSharedInformerFactoryWithOptions(e.watchKube, 0, informers.WithNamespace(ns))
	var synced []cache.InformerSynced
	add := func(inf cache.SharedIndexInformer, f func(any)) error {
		_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    f,
			UpdateFunc: func(_, o any) { f(o) },
		})
		synced = append(synced, inf.HasSynced)
		return err
	}
	if what&trackChildren != 0 {
		if err := add(kf.Batch().V1().Jobs().Informer(), t.job); err != nil {
			return nil, err
		}
		if err := add(kf.Core().V1().Pods().Informer(), t.pod); err != nil {
			return nil, err
		}
		kf.Start(ctx.Done())
	}
	if what&trackRuns != 0 {
		sf := sinformers.NewSharedInformerFactoryWithOptions(e.watchClient, 0, sinformers.WithNamespace(ns))
		inf := sf.Sympozium().V1alpha1().AgentRuns().Informer()
		if err := add(inf, t.run); err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: t.runDeleted}); err != nil {
			return nil, err
		}
		sf.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil, fmt.Errorf("tracker caches did not sync")
	}
	return t, nil
}

func (t *tracker) get(key string) *item {
	it, ok := t.items[key]
	if !ok {
		it = &item{}
		t.items[key] = it
	}
	return it
}

func set(at *time.Time, now time.Time) bool {
	if at.IsZero() {
		*at = now
		return true
	}
	return false
}

func (t *tracker) run(obj any) {
	r, ok := obj.(*v1alpha1.AgentRun)
	if !ok {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	it := t.get(r.Name)
	set(&it.added, now)
	it.phase = r.Status.Phase
	if r.Status.JobName != "" {
		set(&it.admitted, now)
	}
	if r.Status.Phase == v1alpha1.PhaseRunning && set(&it.running, now) {
		t.running++
	}
	if r.Status.Phase.IsTerminal() && set(&it.done, now) {
		t.terminal++
	}
}

func (t *tracker) runDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	r, ok := obj.(*v1alpha1.AgentRun)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deleted = append(t.deleted, r.Name)
}

// deletions returns the runs deleted so far.
func (t *tracker) deletions() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.deleted)
}

// key maps a child to its run (label) or, for baseline Jobs, its Job.
func childKey(labels map[string]string, fallback string) string {
	if v := labels[v1alpha1.LabelAgentRun]; v != "" {
		return v
	}
	return fallback
}

func (t *tracker) job(obj any) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	baseline := j.Labels[v1alpha1.LabelAgentRun] == ""
	it := t.get(childKey(j.Labels, j.Name))
	if set(&it.jobSeen, now) {
		t.jobs++
	}
	if !baseline {
		return
	}
	set(&it.added, now)
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue && set(&it.done, now) {
			t.complete++
		}
	}
}

func (t *tracker) pod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	key := childKey(p.Labels, p.Labels[batchv1.JobNameLabel])
	if key == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	it := t.get(key)
	for _, s := range p.Status.ContainerStatuses {
		if s.Name != v1alpha1.AgentContainerName {
			continue
		}
		if s.State.Running != nil {
			set(&it.podRunning, now)
		}
		if s.State.Terminated != nil {
			set(&it.podDone, now)
		}
	}
}

func (t *tracker) counts() (terminal, running, jobs, complete int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.terminal, t.running, t.jobs, t.complete
}

// waitFor polls cond on the tracker's counts, printing progress.
func (t *tracker) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(terminal, running, jobs, complete int) bool) error {
	last := time.Now()
	return poll(ctx, timeout, what, func() (bool, error) {
		a, b, c, d := t.counts()
		if time.Since(last) > 15*time.Second {
			logf("  waiting for %s: %d terminal, %d running, %d jobs, %d complete", what, a, b, c, d)
			last = time.Now()
		}
		return cond(a, b, c, d), nil
	})
}

// last returns the latest time f gives over all items, relative to t0.
func (t *tracker) last(t0 time.Time, f func(*item) time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var latest time.Time
	for _, it := range t.items {
		if v := f(it); v.After(latest) {
			latest = v
		}
	}
	if latest.IsZero() {
		return 0
	}
	return latest.Sub(t0)
}

// latencies returns to(it)-from(it) for every item that has both.
func (t *tracker) latencies(from, to func(*item) time.Time) durations {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out durations
	for _, it := range t.items {
		a, b := from(it), to(it)
		if a.IsZero() || b.IsZero() {
			continue
		}
		out = append(out, max(0, b.Sub(a)))
	}
	return out
}

// inversions counts the runs whose Job the watch saw more than slack
// before the Job of some run created earlier (both as the watch saw them),
// and returns the largest such lag, whatever slack.
func (t *tracker) inversions(slack time.Duration) (count int, worst time.Duration) {
	t.mu.Lock()
	var its []*item
	for _, it := range t.items {
		if !it.added.IsZero() && !it.jobSeen.IsZero() {
			its = append(its, it)
		}
	}
	t.mu.Unlock()
	slices.SortFunc(its, func(a, b *item) int { return a.added.Compare(b.added) })
	var latest time.Time // the latest Job of the runs created before
	for i, it := range its {
		if i > 0 {
			if lag := latest.Sub(it.jobSeen); lag > 0 {
				worst = max(worst, lag)
				if lag > slack {
					count++
				}
			}
		}
		if it.jobSeen.After(latest) {
			latest = it.jobSeen
		}
	}
	return count, worst
}
