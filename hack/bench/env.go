package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

// env is the benchmark's own control plane and its clients.
type env struct {
	root     string
	dir      string
	cluster  *localcp.Cluster
	ctlBin   string
	qps      float32
	burst    int
	creators int
	ctlArgs  []string
	// profileRate is -memory-profile: the controller's heap profile
	// sampling rate, 0 for the runtime's default.
	profileRate int

	// watch reads and waits without a client-side rate limit; create is
	// limited like the controller (-qps/-burst). Both are plain client-go
	// clients (protobuf for built-in kinds, JSON for AgentRuns).
	watchKube   kubernetes.Interface
	watchClient clientset.Interface
	createKube  kubernetes.Interface
	createRuns  clientset.Interface
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "hack", "localcp", "build.sh")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the repository (no go.mod with hack/localcp above the working directory)")
		}
		dir = parent
	}
}

// setup builds the controller, starts the control plane with the audit log
// and installs the CRDs.
func setup(ctx context.Context, o options) (*env, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	e := &env{root: root, dir: o.dir, qps: float32(o.qps), burst: o.burst, creators: o.parallel, ctlArgs: strings.Fields(o.controllerFlags), profileRate: o.memoryProfile}
	if o.memoryProfile > 0 {
		e.ctlArgs = append(e.ctlArgs, "--profiling")
	}
	if e.dir == "" {
		if e.dir, err = os.MkdirTemp("", "sympozium-bench-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	logf("work directory %s", e.dir)
	bin, err := localcp.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	if e.ctlBin = o.controller; e.ctlBin == "" {
		e.ctlBin = filepath.Join(e.dir, "sympozium-controller")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", e.ctlBin, "./cmd/sympozium-controller")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the controller: %v\n%s", err, out)
		}
	}
	e.cluster, err = localcp.Start(ctx, localcp.Options{Dir: filepath.Join(e.dir, "cluster"), Nodes: o.nodes, AuditLog: true, BinDir: bin, Detach: o.keepCluster})
	if err != nil {
		return nil, err
	}
	logf("control plane ready in %s (%d nodes)", e.cluster.StartupDuration.Round(time.Millisecond), len(e.cluster.Nodes))

	unlimited := e.cluster.RestConfig()
	unlimited.QPS, unlimited.Burst = -1, 0
	unlimited.UserAgent = "sympozium-bench-watch"
	limited := e.cluster.RestConfig()
	limited.QPS, limited.Burst = e.qps, e.burst
	limited.UserAgent = "sympozium-bench"
	if e.watchKube, err = kubernetes.NewForConfig(unlimited); err != nil {
		return e, err
	}
	if e.watchClient, err = clientset.NewForConfig(unlimited); err != nil {
		return e, err
	}
	if e.createKube, err = kubernetes.NewForConfig(limited); err != nil {
		return e, err
	}
	if e.createRuns, err = clientset.NewForConfig(limited); err != nil {
		return e, err
	}
	if err := e.installCRDs(ctx, unlimited); err != nil {
		return e, err
	}
	return e, nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates every CRD of manifests/crds and waits until each is
// Established.
func (e *env) installCRDs(ctx context.Context, cfg *rest.Config) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(e.root, "manifests", "crds", "*.yaml"))
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating CRD %s: %w", u.GetName(), err)
			}
			names = append(names, u.GetName())
		}
	}
	return poll(ctx, time.Minute, "CRDs Established", func() (bool, error) {
		for _, n := range names {
			u, err := dyn.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			ok := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					ok = true
				}
			}
			if !ok {
				return false, nil
			}
		}
		return true, nil
	})
}

// namespace creates a namespace and waits for its default ServiceAccount
// (pods are refused without it).
func (e *env) namespace(ctx context.Context, name string) error {
	_, err := e.watchKube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return poll(ctx, time.Minute, "ServiceAccount "+name+"/default", func() (bool, error) {
		_, err := e.watchKube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// agentImage is the agent image of every run (kwok runs nothing).
const agentImage = "registry.example/sympozium/agent-runner:bench"

// controller is a running controller binary.
type controller struct {
	cmd         *exec.Cmd
	log         string
	done        chan struct{}
	metricsAddr string
	probeAddr   string
	// ready is how long the process took from its start to answer /readyz
	// (caches synced), seen by a 100ms poll.
	ready time.Duration
}

// startController runs the controller binary scoped to namespace, with the
// benchmark's client QPS and burst, and waits until it is ready.
func (e *env) startController(ctx context.Context, namespace string, extra ...string) (*controller, error) {
	ports, err := localcp.FreePorts(2)
	if err != nil {
		return nil, err
	}
	c := &controller{
		done:        make(chan struct{}),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		probeAddr:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
	}
	args := append([]string{
		"--kubeconfig", e.cluster.Kubeconfig,
		"--namespace", namespace,
		"--agent-image", agentImage,
		"--kube-api-qps", strconv.FormatFloat(float64(e.qps), 'f', -1, 32),
		"--kube-api-burst", strconv.Itoa(e.burst),
		"--metrics-bind-address", c.metricsAddr,
		"--health-probe-bind-address", c.probeAddr,
	}, append(e.ctlArgs, extra...)...)
	logFile, err := os.OpenFile(filepath.Join(e.dir, "controller-"+namespace+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	c.log = logFile.Name()
	c.cmd = exec.Command(e.ctlBin, args...)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	// The runtime's GC trace gives the live heap after each collection: the
	// figure heap_alloc only approximates (it includes garbage).
	godebug := "GODEBUG=gctrace=1"
	if e.profileRate > 0 {
		godebug += ",memprofilerate=" + strconv.Itoa(e.profileRate)
	}
	c.cmd.Env = append(os.Environ(), godebug)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	err = poll(ctx, 10*time.Minute, "controller ready", func() (bool, error) {
		select {
		case <-c.done:
			return false, errors.New("the controller exited; see " + logFile.Name())
		default:
		}
		resp, err := http.Get("http://" + c.probeAddr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	c.ready = time.Since(started)
	return c, nil
}

func (c *controller) pid() int { return c.cmd.Process.Pid }

// stop ends the controller with SIGTERM and waits.
func (c *controller) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// get reads path of the controller's metrics server; the caller closes the
// body.
func (c *controller) get(path string) (io.ReadCloser, error) {
	resp, err := http.Get("http://" + c.metricsAddr + path)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return resp.Body, nil
}

// scrape reads the controller's /metrics.
func (c *controller) scrape() (metricSet, error) {
	body, err := c.get("/metrics")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return parseMetrics(body)
}

// heapProfile saves the controller's heap profile (after a collection) in
// path; it needs the controller's --profiling.
func (c *controller) heapProfile(path string) error {
	body, err := c.get("/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// memory reads the controller's RSS and peak RSS from /proc, its Go heap
// from /metrics and its live heap from the GC trace in its log.
type memory struct {
	rss, hwm, heapAlloc, heapInuse, live float64 // bytes
}

// procMemory reads a process's RSS and peak RSS (bytes) from /proc.
func procMemory(pid int) (rss, hwm float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb * 1024
		case "VmHWM:":
			hwm = kb * 1024
		}
	}
	return rss, hwm, sc.Err()
}

func (c *controller) memory() (memory, error) {
	var m memory
	var err error
	if m.rss, m.hwm, err = procMemory(c.pid()); err != nil {
		return m, err
	}
	ms, err := c.scrape()
	if err != nil {
		return m, err
	}
	m.heapAlloc = ms.sum("go_memstats_heap_alloc_bytes", nil)
	m.heapInuse = ms.sum("go_memstats_heap_inuse_bytes", nil)
	m.live = lastLiveHeap(c.log)
	return m, nil
}

// lastLiveHeap returns the live heap after the last garbage collection the
// log's GC trace reports (the third figure of "gc N @...: ..., A->B->C MB,
// ..."), or 0 when there is none.
func lastLiveHeap(path string) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	live := 0.0
	for line := range strings.Lines(string(data)) {
		if !strings.HasPrefix(line, "gc ") {
			continue
		}
		for f := range strings.SplitSeq(line, ",") {
			f = strings.TrimSpace(f)
			heaps, ok := strings.CutSuffix(f, " MB")
			if !ok || strings.Count(heaps, "->") != 2 {
				continue
			}
			parts := strings.Split(heaps, "->")
			if v, err := strconv.ParseFloat(parts[2], 64); err == nil {
				live = v * (1 << 20)
			}
		}
	}
	return live
}

// clusterHealth says how the control plane bears what the benchmark left
// in it: etcd's database file against its quota (hack/localcp sets 8 GiB),
// the objects the API server stores, the RSS of each component, the
// machine's available memory, and any component that is gone.
// The first figure is etcd's database size.
func (e *env) clusterHealth(ctx context.Context) (db, note string) {
	const quota = 8 << 30
	var parts []string
	db = "n/a"
	if fi, err := os.Stat(filepath.Join(e.cluster.Dir, "etcd", "member", "snap", "db")); err == nil {
		db = fmt.Sprintf("etcd %s", mib(float64(fi.Size())))
		parts = append(parts, fmt.Sprintf("etcd database %.1f%% of its 8 GiB quota", float64(fi.Size())*100/quota))
	}
	if raw, err := e.watchKube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err == nil {
		if m, err := parseMetrics(bytes.NewReader(raw)); err == nil {
			// The API server refreshes these counts about once a minute.
			objs := func(group, res string) float64 {
				sel := map[string]string{}
				if res != "" {
					sel["group"], sel["resource"] = group, res
				}
				return m.sum("apiserver_resource_objects", sel)
			}
			parts = append(parts, fmt.Sprintf("%.0f objects stored (%.0f events, %.0f pods, %.0f Jobs, %.0f AgentRuns; the API server's last count)",
				objs("", ""), objs("", "events"), objs("", "pods"), objs("batch", "jobs"), objs(v1alpha1.SchemeGroupVersion.Group, "agentruns")))
			parts = append(parts, fmt.Sprintf("kube-apiserver heap in use %s", mib(m.sum("go_memstats_heap_inuse_bytes", nil))))
		}
	}
	pids := e.cluster.PIDs()
	var rss []string
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if v, _, err := procMemory(pids[name]); err == nil {
			rss = append(rss, fmt.Sprintf("%s %s", name, mib(v)))
		}
	}
	if v, _, err := procMemory(os.Getpid()); err == nil {
		rss = append(rss, fmt.Sprintf("benchmark %s", mib(v)))
	}
	parts = append(parts, "RSS: "+strings.Join(rss, ", "))
	parts = append(parts, fmt.Sprintf("machine memory available %.1f GiB", memAvailable()/(1<<30)))
	for _, name := range slices.Sorted(maps.Keys(pids)) {
		if syscall.Kill(pids[name], 0) != nil {
			parts = append(parts, "**"+name+" is not running**")
		}
	}
	return db, strings.Join(parts, "; ")
}

// memAvailable is the machine's MemAvailable (bytes), from /proc/meminfo.
func memAvailable() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	return 0
}

// guardMemory cancels ctx when the machine's available memory falls below
// floor: a control plane holding tens of thousands of objects grows by
// gigabytes, and the benchmark stops with a clear cause rather than let the
// kernel's OOM killer choose a process of the machine.
func guardMemory(ctx context.Context, floor float64) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			if a := memAvailable(); a > 0 && a < floor {
				cancel(fmt.Errorf("the machine has only %.1f GiB of memory available (floor %.1f GiB): stopped before the OOM killer acts", a/(1<<30), floor/(1<<30)))
				return
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}

// cpuSeconds is the user+system CPU time of a process.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: split after its ')'.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// cpuSnapshot is the CPU time of every component and the controller.
type cpuSnapshot map[string]float64

func (e *env) cpu(ctl *controller) cpuSnapshot {
	s := cpuSnapshot{}
	for name, pid := range e.cluster.PIDs() {
		s[name] = cpuSeconds(pid)
	}
	if ctl != nil {
		s["controller"] = cpuSeconds(ctl.pid())
	}
	s["bench"] = cpuSeconds(os.Getpid())
	s["machine"] = machineBusySeconds()
	return s
}

// machineBusySeconds is the CPU time every process of the machine used
// (from /proc/stat): with the components' own time it shows how much other
// work shared the cores during a measurement.
func machineBusySeconds() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	busy := 0.0
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100
}

func (s cpuSnapshot) minus(o cpuSnapshot) cpuSnapshot {
	d := cpuSnapshot{}
	for k, v := range s {
		d[k] = v - o[k]
	}
	return d
}

// poll calls cond every 100ms until it is done, fails, or timeout passes.
func poll(parent context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	return pollEvery(parent, timeout, 100*time.Millisecond, what, cond)
}

// pollEvery is poll, trying cond every interval.
func pollEvery(parent context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("%s: %w", what, context.Cause(parent))
			}
			return fmt.Errorf("%s: not reached within %s", what, timeout)
		case <-time.After(interval):
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
