//go:build linux

// Package realnode holds the end-to-end tests that need a real node: the
// controller running as the pods of its Deployment (manifests/, applied
// with kubectl apply -k and the image `make image` builds), and agents
// running as real containers of the test agent (hack/testagent) on a
// kubelet with containerd (hack/realnode). Everything else stays on kwok
// (hack/e2e).
//
// They run with SYMPOZIUM_E2E=1 (make test and make verify set it), as root
// on Linux. A machine that cannot run a real node fails them with the
// reason; SYMPOZIUM_REALNODE=0 skips them (and -short, as for hack/e2e).
package realnode

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
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
	"github.com/sympozium-ai/sympozium-controller/hack/realnode"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

// env is the suite's cluster: a local control plane with the real node and
// the controller installed from manifests/.
type env struct {
	cluster      *localcp.Cluster
	node         *realnode.Node
	kube         kubernetes.Interface
	client       clientset.Interface
	root, tmp    string
	kubectlCache string
}

var (
	e2e     *env
	skipWhy string
)

// controllerNamespace and controllerName are the manifests' Deployment.
const (
	controllerNamespace = "sympozium-system"
	controllerName      = "sympozium-controller"
	controllerSelector  = "app.kubernetes.io/name=sympozium-controller"
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	switch {
	case os.Getenv("SYMPOZIUM_E2E") != "1":
		skipWhy = "end-to-end: set SYMPOZIUM_E2E=1 (make test and make verify do)"
	case os.Getenv("SYMPOZIUM_REALNODE") == "0":
		skipWhy = "SYMPOZIUM_REALNODE=0"
	}
	for _, a := range os.Args {
		if a == "-test.short=true" || a == "-test.short" {
			skipWhy = "-short"
		}
	}
	if skipWhy != "" {
		return m.Run()
	}
	if err := realnode.Preflight(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e realnode: %v\n(SYMPOZIUM_REALNODE=0 skips the real-node tests)\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	e, err := setup(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e realnode: setup failed: %v\n", err)
		e.stop()
		return 1
	}
	e2e = e
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e realnode: control plane logs in %s, node logs in %s\n", e.cluster.Dir, e.node.Dir)
		fmt.Fprintf(os.Stderr, "e2e realnode: the controller's pods:\n%s\n", e.controllerLogs(80))
	}
	e.stop()
	if code == 0 {
		_ = os.RemoveAll(e.tmp)
	}
	return code
}

func (e *env) stop() {
	if e == nil {
		return
	}
	stopAgentSandbox()
	if e.node != nil {
		if err := e.node.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e realnode: stopping the node: %v\n", err)
		}
	}
	if e.cluster != nil {
		if err := e.cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e realnode: stopping the control plane: %v\n", err)
		}
	}
}

func setup(ctx context.Context) (*env, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	tmp, err := os.MkdirTemp("", "sympozium-realnode-e2e-")
	if err != nil {
		return nil, err
	}
	e := &env{root: root, tmp: tmp, kubectlCache: filepath.Join(tmp, "kubectl-cache")}

	// The controller's image, as make image writes it, built while the
	// kubelet, the control plane and the test images are built or found.
	imageTar := filepath.Join(tmp, "sympozium-controller.oci.tar")
	imageErr := make(chan error, 1)
	go func() { imageErr <- buildControllerImage(ctx, root, tmp, imageTar) }()

	start := time.Now()
	e.cluster, e.node, err = realnode.Up(ctx, realnode.UpOptions{Dir: filepath.Join(tmp, "cluster"), Log: os.Stderr})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "e2e realnode: control plane and real node ready in %s\n", time.Since(start).Round(time.Millisecond))
	if err := <-imageErr; err != nil {
		return e, err
	}
	if err := e.node.ImportImage(ctx, imageTar); err != nil {
		return e, err
	}
	cfg := e.cluster.RestConfig()
	if e.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return e, err
	}
	if e.client, err = clientset.NewForConfig(cfg); err != nil {
		return e, err
	}

	// Installed as the README says: kubectl apply -k manifests/, here
	// through an overlay that only names the agent image (the test agent)
	// and logs decisions.
	start = time.Now()
	overlay := filepath.Join(tmp, "overlay")
	if err := writeOverlay(root, overlay); err != nil {
		return e, err
	}
	if out, err := e.kubectlErr("apply", "-k", overlay); err != nil {
		return e, fmt.Errorf("kubectl apply -k: %v\n%s", err, out)
	}
	if out, err := e.kubectlErr("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return e, fmt.Errorf("waiting for the CRDs: %v\n%s", err, out)
	}
	if out, err := e.kubectlErr("-n", controllerNamespace, "rollout", "status", "deployment/"+controllerName, "--timeout=180s"); err != nil {
		return e, fmt.Errorf("the controller's Deployment did not become available: %v\n%s\n%s", err, out, e.controllerLogs(40))
	}
	fmt.Fprintf(os.Stderr, "e2e realnode: the controller's Deployment is available (2 pods on %s) in %s\n", realnode.NodeName, time.Since(start).Round(time.Millisecond))
	return e, nil
}

// buildControllerImage builds the controller as make build does and writes
// its image as make image does.
func buildControllerImage(ctx context.Context, root, tmp, tar string) error {
	bin := filepath.Join(tmp, "sympozium-controller")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -X main.version=e2e-realnode", "-o", bin, "./cmd/sympozium-controller")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the controller: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	return ociimage.WriteFile(tar, ociimage.Controller(data, ociimage.ControllerImage))
}

// writeOverlay writes a kustomization of manifests/ that runs the test agent.
func writeOverlay(root, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, filepath.Join(root, "manifests"))
	if err != nil {
		return err
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
patches:
- target: {kind: Deployment, name: %s}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --agent-image=%s
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --fail-fast-grace=5s
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: -v=2
`, rel, controllerName, ociimage.TestAgentImage)
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644)
}

func requireNode(t *testing.T) *env {
	t.Helper()
	if e2e == nil {
		t.Skipf("real-node tests skipped (%s)", skipWhy)
	}
	return e2e
}

func (e *env) kubectlErr(args ...string) (string, error) { return e.kubectlInput("", args...) }

func (e *env) kubectlInput(stdin string, args ...string) (string, error) {
	full := append([]string{"--kubeconfig", e.cluster.Kubeconfig, "--cache-dir", e.kubectlCache}, args...)
	cmd := exec.Command("kubectl", full...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (e *env) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.kubectlErr(args...)
	require.NoError(t, err, "kubectl %s:\n%s", strings.Join(args, " "), out)
	return out
}

func (e *env) apply(t *testing.T, ns, manifest string) {
	t.Helper()
	out, err := e.kubectlInput(manifest, "-n", ns, "apply", "-f", "-")
	require.NoError(t, err, "kubectl apply:\n%s\n%s", manifest, out)
}

// controllerLogs is the end of each controller pod's log, read through
// the API server and the kubelet.
func (e *env) controllerLogs(lines int) string {
	if e.kube == nil {
		return ""
	}
	pods, err := e.kube.CoreV1().Pods(controllerNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: controllerSelector})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		out, _ := e.kubectlErr("-n", controllerNamespace, "logs", p.Name, fmt.Sprintf("--tail=%d", lines))
		fmt.Fprintf(&b, "--- %s\n%s\n", p.Name, out)
	}
	return b.String()
}

// namespace makes a namespace with what a run needs (the API key Secret
// and the instance of manifests/samples) and deletes it after the test.
func (e *env) namespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + fmt.Sprint(time.Now().UnixNano()%100000)
	_, err := e.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		if !t.Failed() {
			_ = e.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	e.kubectl(t, "-n", name, "create", "secret", "generic", "anthropic-key", "--from-literal=ANTHROPIC_API_KEY=sk-ant-placeholder")
	e.kubectl(t, "-n", name, "apply", "-f", filepath.Join(e.root, "manifests", "samples", "instance.yaml"))
	return name
}

// taskRun is an AgentRun of the sample instance with the test agent's env.
func taskRun(name, cleanup string, env map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata:
  name: %s
spec:
  instanceRef: my-agent
  agentId: default
  sessionKey: session-%s
  task: Check the health of the cluster and summarise it.
  model:
    provider: anthropic
    model: claude-sonnet-4-20250514
  timeout: 5m
  cleanup: %s
  env:
`, name, name, cleanup)
	for k, v := range env {
		q, _ := json.Marshal(v)
		fmt.Fprintf(&b, "    %s: %s\n", k, q)
	}
	return b.String()
}

// waitRun polls the run until cond holds or timeout passes.
func (e *env) waitRun(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*v1alpha1.AgentRun) bool) *v1alpha1.AgentRun {
	t.Helper()
	var last *v1alpha1.AgentRun
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		r, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = r
		return cond(r), nil
	})
	if err != nil {
		b, _ := json.MarshalIndent(last, "", "  ")
		pods, _ := e.kubectlErr("-n", ns, "get", "pods", "-o", "wide")
		t.Fatalf("run %s/%s: %s not reached within %s; last seen:\n%s\npods:\n%s", ns, name, what, timeout, b, pods)
	}
	return last
}

func (e *env) waitFinished(t *testing.T, ns, name string, timeout time.Duration) *v1alpha1.AgentRun {
	t.Helper()
	return e.waitRun(t, ns, name, timeout, "a finished phase", func(r *v1alpha1.AgentRun) bool {
		return r.Status.Phase == v1alpha1.PhaseSucceeded || r.Status.Phase == v1alpha1.PhaseFailed
	})
}
