package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sympozium-ai/sympozium-controller/hack/agentsandbox"
	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
	"github.com/sympozium-ai/sympozium-controller/hack/realnode"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

const (
	realNodeNS = "bench-realnode"
	// warmPool is the pool of manifests/samples/warm-pool.
	warmPool = "sympozium-agents"
	// startMarker is the line the test agent (hack/testagent) prints when it
	// starts its task: at once in a cold pod, once the task came in a warm
	// one. containerd timestamps every log line as it reads it.
	startMarker = "agent: starting run"
	// waitMarker is the line a warm-pool agent prints while it waits for a task.
	waitMarker = "warm: waiting for a task"
)

var warmPoolGVR = schema.GroupVersionResource{Group: "extensions.agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxwarmpools"}

// realNode: on one real node (hack/realnode: a kubelet and containerd,
// with its own local control plane), the time from a run's creation until
// its agent starts the task, for cold runs (the controller's Job and pod),
// warm runs (a pod of the real agent-sandbox controller's warm pool,
// started before the run, that gets the task through its downward-API
// file) and bare Jobs of the same image created by client-go, measured in
// turns, one at a time, in the same session. The agent's start is the
// test agent's own marker line, as containerd timestamped it; the creation
// is the moment the benchmark sent the create.
func (b *bench) realNode(ctx context.Context) error {
	n := b.o.realNodeRuns
	if err := realnode.Preflight(); err != nil {
		logf("real node: not measured: %v", err)
		b.add("6", "real node: created → agent started", "not measured", "", strings.ReplaceAll(err.Error(), "|", "/"))
		return nil
	}
	dir := b.o.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "sympozium-bench-"); err != nil {
			return err
		}
	}
	dir = filepath.Join(dir, "realnode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf("real node: work directory %s", dir)
	root, err := repoRoot()
	if err != nil {
		return err
	}
	e := &env{root: root, dir: dir, qps: float32(b.o.qps), burst: b.o.burst, creators: 1, ctlArgs: strings.Fields(b.o.controllerFlags)}
	built := make(chan error, 1)
	go func() { built <- e.buildController(ctx, b.o.controller) }()

	cluster, node, err := realnode.Up(ctx, realnode.UpOptions{Dir: filepath.Join(dir, "cluster"), Log: os.Stderr})
	if err != nil {
		return errors.Join(err, <-built)
	}
	e.cluster = cluster
	defer func() {
		if err := node.Stop(); err != nil {
			logf("real node: stopping the node: %v", err)
		}
		if err := cluster.Stop(); err != nil {
			logf("real node: stopping the control plane: %v", err)
		}
	}()
	if err := <-built; err != nil {
		return err
	}
	cfg := cluster.RestConfig()
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = "sympozium-bench"
	if e.watchKube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if e.watchClient, err = clientset.NewForConfig(cfg); err != nil {
		return err
	}
	e.createKube, e.createRuns = e.watchKube, e.watchClient
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := e.installCRDs(ctx, cfg); err != nil {
		return err
	}

	// The real agent-sandbox controller, before ours: the controller
	// finds the agent-sandbox API at its start.
	sandbox, err := startAgentSandbox(ctx, cluster.RestConfig(), cluster.Kubeconfig, dir)
	if err != nil {
		return err
	}
	defer func() { _ = sandbox.Stop(15 * time.Second) }()
	if err := e.namespace(ctx, realNodeNS); err != nil {
		return err
	}
	if _, err := e.createInstance(ctx, realNodeNS); err != nil {
		return err
	}
	ctl, err := e.startController(ctx, realNodeNS, "--agent-image="+ociimage.TestAgentImage)
	if err != nil {
		return err
	}
	defer ctl.stop()
	if err := e.applyWarmPool(ctx); err != nil {
		return err
	}

	m := &realNodeMeasure{e: e, dyn: dyn, ns: realNodeNS}
	var bare, cold, warm durations
	warmHits := 0
	kinds := []string{"bare", "cold", "warm"}
	began := time.Now()
	for i := range n {
		// Each kind takes each place in the turn equally often.
		for k := range kinds {
			var d time.Duration
			var err error
			switch kind := kinds[(i+k)%len(kinds)]; kind {
			case "bare":
				d, err = m.bareJob(ctx, i)
				bare = append(bare, d)
			case "cold":
				d, err = m.run(ctx, i, false)
				cold = append(cold, d)
			case "warm":
				var hit bool
				d, hit, err = m.warmRun(ctx, i)
				warm = append(warm, d)
				if hit {
					warmHits++
				}
			}
			if err != nil {
				return err
			}
		}
		logf("real node: %d/%d turns; so far p50 bare %s, cold %s, warm %s", i+1, n, ms(bare.quantile(0.5)), ms(cold.quantile(0.5)), ms(warm.quantile(0.5)))
	}
	took := time.Since(began)

	pct := func(d durations) string {
		return fmt.Sprintf("p50 %s / p99 %s", ms(d.quantile(0.5)), ms(d.quantile(0.99)))
	}
	ratio := func(x, y durations) string {
		return fmt.Sprintf("p50 %.2f× / p99 %.2f×", x.quantile(0.5).Seconds()/y.quantile(0.5).Seconds(), x.quantile(0.99).Seconds()/y.quantile(0.99).Seconds())
	}
	how := fmt.Sprintf("%d of each, one at a time, in %d turns of the three kinds (%s in all); from the create request to the agent's \"%s\" line, as containerd timestamped it; p99 of %d is about the slowest", n, n, took.Round(time.Second), startMarker, n)
	b.add("6", "real node: bare Job, created → agent started", pct(bare), "", "the baseline: a Job of the test agent's image (one container, no volumes) created by client-go; "+how)
	b.add("6", "real node: cold AgentRun, created → agent started", pct(cold), "", "the controller (its binary on the host, scoped to the namespace) creates the run's Job; the kubelet pulls nothing (the image is on the node)")
	b.add("6", "real node: warm AgentRun (agent-sandbox warm pool), created → agent started its task", pct(warm),
		"", fmt.Sprintf("a pool of 1 of the real agent-sandbox controller; %d of %d runs got a pod whose agent was waiting before the run was created; the task reaches it through the downward-API file (the kubelet's refresh, then the agent's 200 ms poll)", warmHits, n))
	b.add("6", "ratio cold / bare Job", ratio(cold, bare), "", "informative")
	b.add("6", "ratio warm / bare Job", ratio(warm, bare), "", "informative")
	b.add("6", "ratio warm / cold", ratio(warm, cold), "", "informative")
	return nil
}

// buildController builds the controller as setup does, unless bin names one.
func (e *env) buildController(ctx context.Context, bin string) error {
	if e.ctlBin = bin; bin != "" {
		return nil
	}
	e.ctlBin = filepath.Join(e.dir, "sympozium-controller")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", e.ctlBin, "./cmd/sympozium-controller")
	build.Dir = e.root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the controller: %v\n%s", err, out)
	}
	return nil
}

// startAgentSandbox installs the agent-sandbox CRDs and starts its
// controller (built once and cached by hack/agentsandbox), once its four
// controllers run.
func startAgentSandbox(ctx context.Context, cfg *rest.Config, kubeconfig, dir string) (*agentsandbox.Controller, error) {
	bin, err := agentsandbox.EnsureBinary(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	mod, err := agentsandbox.ModuleDir(ctx)
	if err != nil {
		return nil, err
	}
	if err := agentsandbox.InstallCRDs(ctx, cfg, mod); err != nil {
		return nil, err
	}
	c, err := agentsandbox.Start(agentsandbox.Options{Binary: bin, Kubeconfig: kubeconfig, LogFile: filepath.Join(dir, "agent-sandbox-controller.log")})
	if err != nil {
		return nil, err
	}
	// Its four controllers log "Starting workers" once their caches synced.
	err = poll(ctx, time.Minute, "the agent-sandbox controller's workers", func() (bool, error) {
		if done, err := c.Exited(); done {
			return false, fmt.Errorf("the agent-sandbox controller exited: %v\n%s", err, c.LogTail(20))
		}
		data, _ := os.ReadFile(c.LogPath())
		return strings.Count(string(data), "Starting workers") >= 4, nil
	})
	if err != nil {
		_ = c.Stop(15 * time.Second)
		return nil, err
	}
	return c, nil
}

// applyWarmPool applies manifests/samples/warm-pool/pool.yaml running the
// test agent, with one pod.
func (e *env) applyWarmPool(ctx context.Context) error {
	sample, err := os.ReadFile(filepath.Join(e.root, "manifests", "samples", "warm-pool", "pool.yaml"))
	if err != nil {
		return err
	}
	pool := strings.ReplaceAll(string(sample), "ghcr.io/sympozium-ai/sympozium/agent-runner:latest", ociimage.TestAgentImage)
	pool = strings.ReplaceAll(pool, "replicas: 2", "replicas: 1")
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", e.cluster.Kubeconfig, "-n", realNodeNS, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(pool)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("applying the warm pool: %v\n%s", err, out)
	}
	return nil
}

// realNodeMeasure measures one object at a time in ns.
type realNodeMeasure struct {
	e   *env
	dyn dynamic.Interface
	ns  string
}

// bareJob creates a Job of the test agent's image and returns the time
// from the create to the agent's start marker.
func (m *realNodeMeasure) bareJob(ctx context.Context, i int) (time.Duration, error) {
	name := fmt.Sprintf("bare-%03d", i)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: v1alpha1.AgentContainerName, Image: ociimage.TestAgentImage,
					Env: []corev1.EnvVar{
						{Name: "TASK", Value: "summarise the state of the cluster"}, {Name: "AGENT_RUN_ID", Value: name},
						{Name: "SIM_DURATION", Value: "0s"}, {Name: "SIM_MESSAGE", Value: successReport},
					},
				}},
			}},
		},
	}
	jobs := m.e.watchKube.BatchV1().Jobs(m.ns)
	t0 := time.Now()
	if _, err := jobs.Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	var pod string
	err := poll(ctx, 2*time.Minute, "bare Job "+name+" Complete", func() (bool, error) {
		j, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range j.Status.Conditions {
			if c.Status == corev1.ConditionTrue && c.Type == batchv1.JobFailed {
				return false, fmt.Errorf("bare Job %s failed: %s", name, c.Message)
			}
			if c.Status == corev1.ConditionTrue && c.Type == batchv1.JobComplete {
				pods, err := m.e.watchKube.CoreV1().Pods(m.ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name})
				if err != nil || len(pods.Items) != 1 {
					return false, nil
				}
				pod = pods.Items[0].Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return 0, err
	}
	t1, err := m.marker(ctx, pod, startMarker)
	if err != nil {
		return 0, err
	}
	bg := metav1.DeletePropagationBackground
	if err := jobs.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		return 0, err
	}
	return t1.Sub(t0), m.podGone(ctx, pod)
}

// run creates an AgentRun (on the warm pool when warm) that Succeeds at
// once and returns the time from the create to the agent's start marker
// and, for a warm run, whether its agent was waiting for a task before the
// run was created.
func (m *realNodeMeasure) runOnce(ctx context.Context, i int, warm bool) (time.Duration, bool, error) {
	kind := "cold"
	if warm {
		kind = "warm"
	}
	r := runSpec{simDuration: "0s", cleanup: v1alpha1.CleanupKeep}.run(m.ns, i)
	r.Name = fmt.Sprintf("%s-%03d", kind, i)
	r.Spec.SessionKey = r.Name
	if warm {
		r.Spec.AgentSandbox = &v1alpha1.AgentSandboxSpec{Enabled: true, WarmPoolRef: warmPool}
	}
	runs := m.e.watchClient.SympoziumV1alpha1().AgentRuns(m.ns)
	t0 := time.Now()
	if _, err := runs.Create(ctx, r, metav1.CreateOptions{}); err != nil {
		return 0, false, err
	}
	var pod string
	err := poll(ctx, 2*time.Minute, "run "+r.Name+" Succeeded", func() (bool, error) {
		got, err := runs.Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		switch got.Status.Phase {
		case v1alpha1.PhaseFailed:
			return false, fmt.Errorf("run %s failed: %s", r.Name, got.Status.Error)
		case v1alpha1.PhaseSucceeded:
			pod = got.Status.PodName
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return 0, false, err
	}
	t1, err := m.marker(ctx, pod, startMarker)
	if err != nil {
		return 0, false, err
	}
	hit := false
	if warm {
		waiting, err := m.marker(ctx, pod, waitMarker)
		hit = err == nil && waiting.Before(t0)
	}
	if err := runs.Delete(ctx, r.Name, metav1.DeleteOptions{}); err != nil {
		return 0, false, err
	}
	return t1.Sub(t0), hit, m.podGone(ctx, pod)
}

func (m *realNodeMeasure) run(ctx context.Context, i int, warm bool) (time.Duration, error) {
	d, _, err := m.runOnce(ctx, i, warm)
	return d, err
}

// warmRun waits until the pool has a ready pod, then measures a run on the
// pool; hit says the run's agent was waiting before the run was created.
func (m *realNodeMeasure) warmRun(ctx context.Context, i int) (time.Duration, bool, error) {
	pools := m.dyn.Resource(warmPoolGVR).Namespace(m.ns)
	err := poll(ctx, 3*time.Minute, "a ready pod in the warm pool", func() (bool, error) {
		u, err := pools.Get(ctx, warmPool, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if ready, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas"); ready < 1 {
			return false, nil
		}
		// The pool's status may lag: a Ready pod, not being deleted (the
		// bare and cold pods are gone by now, so it is the pool's).
		pods, err := m.e.watchKube.CoreV1().Pods(m.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return 0, false, err
	}
	return m.runOnce(ctx, i, true)
}

// marker returns containerd's timestamp of the first line of the agent
// container's log that contains text.
func (m *realNodeMeasure) marker(ctx context.Context, pod, text string) (time.Time, error) {
	raw, err := m.e.watchKube.CoreV1().Pods(m.ns).GetLogs(pod, &corev1.PodLogOptions{Container: v1alpha1.AgentContainerName, Timestamps: true}).DoRaw(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("the log of pod %s: %w", pod, err)
	}
	return findMarker(raw, text)
}

// findMarker parses lines of kubectl logs --timestamps and returns the
// timestamp of the first that contains text.
func findMarker(log []byte, text string) (time.Time, error) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		ts, line, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.Contains(line, text) {
			continue
		}
		return time.Parse(time.RFC3339Nano, ts)
	}
	return time.Time{}, fmt.Errorf("no line %q in the log", text)
}

// podGone waits until the pod is deleted, so that the next measurement
// starts on a quiet node.
func (m *realNodeMeasure) podGone(ctx context.Context, pod string) error {
	return poll(ctx, 2*time.Minute, "pod "+pod+" gone", func() (bool, error) {
		_, err := m.e.watchKube.CoreV1().Pods(m.ns).Get(ctx, pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
