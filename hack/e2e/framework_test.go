package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sympozium-ai/sympozium-controller/hack/agentsandbox"
	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

// env is the shared end-to-end environment: one real control plane per test
// binary, the CRDs installed, the controller binary built.
type env struct {
	cluster        *localcp.Cluster
	cfg            *rest.Config
	kube           kubernetes.Interface
	client         clientset.Interface
	root           string
	controllerPath string
	kubectlCache   string
	// saKubeconfig authenticates as the manifests' ServiceAccount
	// sympozium-system/sympozium-controller, bound to manifests/rbac: every
	// controller the tests start runs with it, so the suite proves the
	// ClusterRole is enough.
	saKubeconfig string
	// tmp holds the suite's files (controller binary, logs).
	tmp string
	// sandbox is the real agent-sandbox controller, built in the background
	// from the start and started on first use (see agentSandbox).
	sandbox sandboxHarness
}

// controllerUser is the ServiceAccount the controller runs as.
const controllerUser = "system:serviceaccount:sympozium-system:sympozium-controller"

var (
	e2e     *env
	skipWhy string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("SYMPOZIUM_E2E") != "1" {
		skipWhy = "end-to-end: set SYMPOZIUM_E2E=1 (make test and make verify do)"
		return m.Run()
	}
	for _, a := range os.Args {
		if a == "-test.short=true" || a == "-test.short" {
			skipWhy = "-short"
			return m.Run()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e, err := setup(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		if e != nil {
			e.sandbox.stop(true)
			if e.cluster != nil {
				dumpLogs(e.cluster)
				_ = e.cluster.Stop()
			}
		}
		return 1
	}
	e2e = e
	code := m.Run()
	e.sandbox.stop(code != 0)
	if code == 0 && rbacCheckWanted() {
		// After every test: what the controller asked of the API server,
		// as its ServiceAccount, is what manifests/rbac grants it.
		if err := checkRBACAgainstAudit(e); err != nil {
			fmt.Fprintf(os.Stderr, "--- FAIL: RBAC check against the audit log\n%v\n", err)
			code = 1
		} else {
			fmt.Fprintln(os.Stderr, "e2e: RBAC check against the audit log passed")
		}
	}
	if code != 0 {
		dumpLogs(e.cluster)
	}
	if err := e.cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the control plane: %v\n", err)
	}
	return code
}

func setup(ctx context.Context) (*env, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	tmp, err := os.MkdirTemp("", "sympozium-e2e-")
	if err != nil {
		return nil, err
	}
	e := &env{root: root, tmp: tmp}
	// The agent-sandbox controller builds (the first time) while the control
	// plane builds and starts.
	e.sandbox.startBuild()
	start := time.Now()
	bin, err := localcp.EnsureBinaries(ctx, os.Stderr)
	if err != nil {
		return e, err
	}
	fmt.Fprintf(os.Stderr, "e2e: control plane binaries ready in %s\n", time.Since(start).Round(time.Millisecond))
	e.controllerPath = filepath.Join(tmp, "sympozium-controller")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", e.controllerPath, "./cmd/sympozium-controller")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return e, fmt.Errorf("building the controller: %v\n%s", err, out)
	}
	e.kubectlCache = filepath.Join(tmp, "kubectl-cache")
	start = time.Now()
	e.cluster, err = localcp.Start(ctx, localcp.Options{Dir: filepath.Join(tmp, "cluster"), Nodes: 2, AuditLog: true, BinDir: bin, Log: os.Stderr})
	if err != nil {
		return e, err
	}
	fmt.Fprintf(os.Stderr, "e2e: control plane ready in %s (%s)\n", time.Since(start).Round(time.Millisecond), e.cluster.Dir)
	e.cfg = e.cluster.RestConfig()
	e.cfg.QPS, e.cfg.Burst = 200, 400
	if e.kube, err = kubernetes.NewForConfig(e.cfg); err != nil {
		return e, err
	}
	if e.client, err = clientset.NewForConfig(e.cfg); err != nil {
		return e, err
	}
	if out, err := e.kubectlErr("apply", "--server-side", "-f", filepath.Join(root, "manifests", "crds")); err != nil {
		return e, fmt.Errorf("installing CRDs: %v\n%s", err, out)
	}
	if out, err := e.kubectlErr("wait", "--for=condition=Established", "--timeout=60s",
		"crd/agentruns.sympozium.ai", "crd/sympoziuminstances.sympozium.ai", "crd/skillpacks.sympozium.ai"); err != nil {
		return e, fmt.Errorf("waiting for CRDs: %v\n%s", err, out)
	}
	if out, err := e.kubectlErr("apply", "-f", filepath.Join(root, "manifests", "namespace.yaml"), "-f", filepath.Join(root, "manifests", "rbac")); err != nil {
		return e, fmt.Errorf("installing RBAC: %v\n%s", err, out)
	}
	token, err := e.kubectlErr("-n", "sympozium-system", "create", "token", "sympozium-controller", "--duration=4h")
	if err != nil {
		return e, fmt.Errorf("creating a token: %v\n%s", err, token)
	}
	e.saKubeconfig = filepath.Join(tmp, "controller.kubeconfig")
	if err := writeTokenKubeconfig(e.saKubeconfig, e.cluster.APIServerURL, e.cluster.CAFile, strings.TrimSpace(token)); err != nil {
		return e, err
	}
	return e, nil
}

func writeTokenKubeconfig(path, server, caFile, token string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: local, user: u}}]
current-context: c
`, server, caFile, token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func dumpLogs(c *localcp.Cluster) {
	fmt.Fprintf(os.Stderr, "e2e: control plane logs are in %s\n", c.Dir)
}

// requireE2E skips the test when the suite runs without a control plane.
func requireE2E(t *testing.T) *env {
	t.Helper()
	if e2e == nil {
		t.Skipf("end-to-end tests skipped (%s)", skipWhy)
	}
	return e2e
}

// kubectlErr runs kubectl against the cluster as admin.
func (e *env) kubectlErr(args ...string) (string, error) {
	return e.kubectlInput("", args...)
}

func (e *env) kubectlInput(stdin string, args ...string) (string, error) {
	full := append([]string{"--kubeconfig", e.cluster.Kubeconfig, "--cache-dir", e.kubectlCache}, args...)
	cmd := exec.Command("kubectl", full...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// kubectl runs kubectl and fails the test on error.
func (e *env) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.kubectlErr(args...)
	require.NoError(t, err, "kubectl %s:\n%s", strings.Join(args, " "), out)
	return out
}

// apply applies a manifest with kubectl and fails the test on error.
func (e *env) apply(t *testing.T, manifest string) string {
	t.Helper()
	out, err := e.kubectlInput(manifest, "apply", "-f", "-")
	require.NoError(t, err, "kubectl apply:\n%s\n%s", manifest, out)
	return out
}

// namespace creates a fresh namespace for the test and deletes it after.
func (e *env) namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + "-" + fmt.Sprint(time.Now().UnixNano()%100000)
	_, err := e.kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		if !t.Failed() {
			_ = e.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	return name
}

// controller is a running controller process.
type controller struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startController runs the controller binary against the cluster, scoped to
// namespace, with fast test settings; extra flags override them.
func (e *env) startController(t *testing.T, namespace string, extra ...string) *controller {
	t.Helper()
	args := []string{
		"--kubeconfig", e.saKubeconfig,
		"--namespace", namespace,
		"--agent-image", "registry.example/sympozium/agent-runner:test",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--fail-fast-grace", "3s",
		"--read-logs=false",
		"-v", "2",
	}
	args = append(args, extra...)
	c := &controller{cmd: exec.Command(e.controllerPath, args...), log: &syncBuffer{}, done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	require.NoError(t, c.cmd.Start())
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("controller log:\n%s", tail(c.log.String(), 200))
		}
	})
	return c
}

// stop ends the controller with SIGTERM and waits.
func (c *controller) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// kill ends the controller with SIGKILL.
func (c *controller) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// getRun reads a run through the generated typed client.
func (e *env) getRun(t *testing.T, ns, name string) *v1alpha1.AgentRun {
	t.Helper()
	r, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return r
}

// waitRun polls the run until cond holds or timeout passes.
func (e *env) waitRun(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*v1alpha1.AgentRun) bool) *v1alpha1.AgentRun {
	t.Helper()
	var last *v1alpha1.AgentRun
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		r, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = r
		return cond(r), nil
	})
	if err != nil {
		b, _ := json.MarshalIndent(last, "", "  ")
		t.Fatalf("run %s/%s: %s not reached within %s; last seen:\n%s", ns, name, what, timeout, b)
	}
	return last
}

// waitPhase waits for the run to reach phase.
func (e *env) waitPhase(t *testing.T, ns, name string, phase v1alpha1.AgentRunPhase, timeout time.Duration) *v1alpha1.AgentRun {
	t.Helper()
	return e.waitRun(t, ns, name, timeout, "phase "+string(phase), func(r *v1alpha1.AgentRun) bool { return r.Status.Phase == phase })
}

// sandboxHarness is the real agent-sandbox controller (hack/agentsandbox),
// shared by the suite: built in the background from setup on, its CRDs
// installed and the controller started (cluster-wide, as admin) by the first
// test that asks for it, stopped after the last test.
type sandboxHarness struct {
	built       chan struct{} // closed when the build has ended
	binary      string
	buildErr    error
	cancelBuild context.CancelFunc

	once sync.Once
	err  error
	ctrl *agentsandbox.Controller
}

func (h *sandboxHarness) startBuild() {
	ctx, cancel := context.WithCancel(context.Background())
	h.built, h.cancelBuild = make(chan struct{}), cancel
	go func() {
		defer close(h.built)
		start := time.Now()
		h.binary, h.buildErr = agentsandbox.EnsureBinary(ctx, os.Stderr)
		if h.buildErr == nil {
			fmt.Fprintf(os.Stderr, "e2e: agent-sandbox controller ready in %s\n", time.Since(start).Round(time.Millisecond))
		}
	}()
}

// stop ends the controller (and a build still running); failed says whether
// the suite failed, and so whether to point at its log.
func (h *sandboxHarness) stop(failed bool) {
	if h.cancelBuild != nil {
		h.cancelBuild()
	}
	if h.ctrl == nil {
		return
	}
	if err := h.ctrl.Stop(15 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the agent-sandbox controller: %v\n", err)
	}
	if failed {
		fmt.Fprintf(os.Stderr, "e2e: the agent-sandbox controller's log is %s\n", h.ctrl.LogPath())
	}
}

// agentSandbox makes sure the real agent-sandbox controller runs against the
// cluster, with the CRDs of its pinned module installed. The first caller
// waits for its build (about 12 minutes on 2 cores from a clean cache).
func (e *env) agentSandbox(t *testing.T) {
	t.Helper()
	h := &e.sandbox
	h.once.Do(func() { h.err = e.startAgentSandbox() })
	require.NoError(t, h.err, "the agent-sandbox controller")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent-sandbox controller log (%s), last lines:\n%s", h.ctrl.LogPath(), h.ctrl.LogTail(60))
		}
	})
}

func (e *env) startAgentSandbox() error {
	h := &e.sandbox
	select {
	case <-h.built:
	case <-time.After(40 * time.Minute):
		return fmt.Errorf("the agent-sandbox controller build did not end within 40m")
	}
	if h.buildErr != nil {
		return h.buildErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := agentsandbox.ModuleDir(ctx)
	if err != nil {
		return err
	}
	if err := agentsandbox.InstallCRDs(ctx, e.cfg, dir); err != nil {
		return fmt.Errorf("installing the CRDs of %s: %w", dir, err)
	}
	start := time.Now()
	if err := e.waitGCKnowsSandboxes(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "e2e: the garbage collector follows Sandboxes %s after their CRD was installed\n", time.Since(start).Round(time.Millisecond))
	h.ctrl, err = agentsandbox.Start(agentsandbox.Options{Binary: h.binary, Kubeconfig: e.cluster.Kubeconfig,
		LogFile: filepath.Join(e.tmp, "agent-sandbox-controller.log")})
	if err != nil {
		return err
	}
	// Its controllers log "Starting workers" once their caches have synced:
	// Sandbox, SandboxClaim, SandboxTemplate, SandboxWarmPool.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		if exited, err := h.ctrl.Exited(); exited {
			return false, fmt.Errorf("the agent-sandbox controller exited: %v", err)
		}
		data, _ := os.ReadFile(h.ctrl.LogPath())
		return strings.Count(string(data), "Starting workers") >= 4, nil
	})
	if err != nil {
		return fmt.Errorf("%w; log:\n%s", err, h.ctrl.LogTail(40))
	}
	fmt.Fprintf(os.Stderr, "e2e: agent-sandbox controller running (CRDs from %s, log %s)\n", dir, h.ctrl.LogPath())
	return nil
}

// waitGCKnowsSandboxes waits until kube-controller-manager's garbage
// collector watches the freshly installed Sandbox kind (it rediscovers
// resources every 30s): until then, the pod of a deleted Sandbox would stay
// forever. It probes with a ConfigMap owned by a Sandbox it then deletes,
// before the agent-sandbox controller starts (so the Sandbox gets no pod).
func (e *env) waitGCKnowsSandboxes(ctx context.Context) error {
	const ns = "agent-sandbox-gc-probe"
	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	defer func() { _ = e.kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }()
	dyn, err := dynamic.NewForConfig(e.cfg)
	if err != nil {
		return err
	}
	sandboxes := dyn.Resource(schema.GroupVersionResource{Group: "agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxes"}).Namespace(ns)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		name := fmt.Sprintf("probe-%d", i)
		sb := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{"podTemplate": map[string]any{"spec": map[string]any{
				"containers": []any{map[string]any{"name": "c", "image": "registry.example/probe:test"}}}}},
		}}
		created, err := sandboxes.Create(ctx, sb, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating a probe Sandbox: %w", err)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "agents.x-k8s.io/v1beta1", Kind: "Sandbox", Name: name, UID: created.GetUID()}}}}
		if _, err := e.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := sandboxes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("the garbage collector did not follow Sandboxes within 2m")
}
