// Package agentsandbox runs the real agent-sandbox controller
// (kubernetes-sigs/agent-sandbox) against a test cluster: it builds the
// controller from the Go module pinned in hack/agentsandbox/build (through
// build.sh, cached), installs the CRDs that module ships (k8s/crds/, with the
// conversion webhook replaced by strategy None, as no webhook runs) and starts
// the controller as a process with the Sandbox and the extensions
// (SandboxClaim, SandboxTemplate, SandboxWarmPool) controllers enabled.
package agentsandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
)

const (
	// Module is the Go module the controller and its CRDs come from; its
	// version is the one hack/agentsandbox/build/go.mod requires.
	Module = "sigs.k8s.io/agent-sandbox"
	// EnvBinary names a prebuilt agent-sandbox-controller binary; when set,
	// EnsureBinary uses it as is and builds nothing.
	EnvBinary = "SYMPOZIUM_AGENTSANDBOX_BIN"
	// BinaryName is the name of the controller binary in the bin directory.
	BinaryName = "agent-sandbox-controller"

	buildScript = "hack/agentsandbox/build.sh"
	buildDir    = "hack/agentsandbox/build"
)

// CRDNames are the CustomResourceDefinitions the module ships.
var CRDNames = []string{
	"sandboxes.agents.x-k8s.io",
	"sandboxclaims.extensions.agents.x-k8s.io",
	"sandboxtemplates.extensions.agents.x-k8s.io",
	"sandboxwarmpools.extensions.agents.x-k8s.io",
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// EnsureBinary returns the path of the agent-sandbox-controller binary. It
// runs hack/agentsandbox/build.sh, which builds it from the pinned module the
// first time (about 12 minutes on 2 cores) and returns its cache directory at
// once afterwards; concurrent callers wait on the script's lock. Build logs go
// to log (nil discards them). $SYMPOZIUM_AGENTSANDBOX_BIN overrides the whole
// process.
func EnsureBinary(ctx context.Context, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	if bin := os.Getenv(EnvBinary); bin != "" {
		if err := checkExecutable(bin); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvBinary, err)
		}
		return bin, nil
	}
	dir, err := localcp.RunBuildScript(ctx, buildScript, log)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, BinaryName)
	if err := checkExecutable(bin); err != nil {
		return "", err
	}
	return bin, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// ModuleDir returns the directory of the pinned sigs.k8s.io/agent-sandbox
// module in the Go module cache, downloading it if needed (go.sum checks it).
func ModuleDir(ctx context.Context) (string, error) {
	root, err := localcp.RepoRoot(buildScript)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module)
	cmd.Dir = filepath.Join(root, buildDir)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Version, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", Module, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %v\n%s%s", Module, err, out, stderr.Bytes())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s printed no directory:\n%s", Module, out)
	}
	return info.Dir, nil
}

// CRDs reads the CustomResourceDefinitions shipped in the module directory
// (k8s/crds/*.yaml), with spec.conversion set to strategy None: their
// v1alpha1 and v1beta1 schemas are converted by a webhook the controller
// serves only with --enable-webhook, and the two versions' common fields
// (the only ones the tests use) round-trip unchanged without it.
func CRDs(moduleDir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(moduleDir, "k8s", "crds", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var crds []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if u.GetKind() != "CustomResourceDefinition" {
				return nil, fmt.Errorf("%s: unexpected kind %q", f, u.GetKind())
			}
			if err := unstructured.SetNestedMap(u.Object, map[string]any{"strategy": "None"}, "spec", "conversion"); err != nil {
				return nil, err
			}
			crds = append(crds, u)
		}
	}
	var names []string
	for _, c := range crds {
		names = append(names, c.GetName())
	}
	sort.Strings(names)
	want := append([]string(nil), CRDNames...)
	sort.Strings(want)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		return nil, fmt.Errorf("%s/k8s/crds holds %v, want %v", moduleDir, names, want)
	}
	return crds, nil
}

// InstallCRDs server-side applies the module's CRDs (see CRDs) to the cluster
// and waits until they are Established.
func InstallCRDs(ctx context.Context, cfg *rest.Config, moduleDir string) error {
	crds, err := CRDs(moduleDir)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	rc := dyn.Resource(crdGVR)
	for _, c := range crds {
		data, err := json.Marshal(c.Object)
		if err != nil {
			return err
		}
		if _, err := rc.Patch(ctx, c.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: "sympozium-e2e", Force: new(true)}); err != nil {
			return fmt.Errorf("applying CRD %s: %w", c.GetName(), err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range CRDNames {
			u, err := rc.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			established := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					established = true
				}
			}
			if !established {
				return false, nil
			}
		}
		return true, nil
	})
}

// UninstallCRDs deletes the module's CRDs (and so every object of their
// kinds) and waits until they are gone.
func UninstallCRDs(ctx context.Context, cfg *rest.Config) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	rc := dyn.Resource(crdGVR)
	for _, name := range CRDNames {
		if err := rc.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, name := range CRDNames {
			if _, err := rc.Get(ctx, name, metav1.GetOptions{}); !isNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
}

// Options configure a controller process.
type Options struct {
	// Binary is the agent-sandbox-controller executable (see EnsureBinary).
	Binary string
	// Kubeconfig is the kubeconfig it runs with (cluster-wide rights).
	Kubeconfig string
	// LogFile receives its stdout and stderr (appended).
	LogFile string
	// Args are extra flags, after the defaults (which they may override).
	Args []string
}

// Controller is a running agent-sandbox controller process.
type Controller struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// DefaultArgs are the flags a test cluster needs: no webhook (and so no
// certificates), no leader election, the extensions controllers on, no
// listening ports, logs in plain text.
func DefaultArgs(kubeconfig string) []string {
	return []string{
		"--kubeconfig", kubeconfig,
		"--enable-webhook=false",
		"--leader-elect=false",
		"--extensions",
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", "0",
		"--zap-devel",
	}
}

// Start starts the controller. It returns once the process runs; the
// controller's informers sync in the next second or so.
func Start(opts Options) (*Controller, error) {
	if opts.Binary == "" || opts.Kubeconfig == "" || opts.LogFile == "" {
		return nil, errors.New("agentsandbox.Start: Binary, Kubeconfig and LogFile are required")
	}
	logFile, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	args := append(DefaultArgs(opts.Kubeconfig), opts.Args...)
	cmd := exec.Command(opts.Binary, args...)
	cmd.Dir = filepath.Dir(opts.LogFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", opts.Binary, err)
	}
	c := &Controller{cmd: cmd, logPath: opts.LogFile, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// LogPath is the file holding the controller's output.
func (c *Controller) LogPath() string { return c.logPath }

// Exited reports whether the process has ended, and how.
func (c *Controller) Exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.waitErr
	default:
		return false, nil
	}
}

// LogTail returns the last lines of the controller's log.
func (c *Controller) LogTail(lines int) string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	parts := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Stop ends the controller with SIGTERM, then SIGKILL after grace.
func (c *Controller) Stop(grace time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %s; killed", BinaryName, grace)
	}
}

func isNotFound(err error) bool {
	var status interface{ Status() metav1.Status }
	return err != nil && errors.As(err, &status) && status.Status().Reason == metav1.StatusReasonNotFound
}
