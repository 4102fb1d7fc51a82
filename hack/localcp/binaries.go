package localcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// EnvBinDir names a directory holding prebuilt binaries; when set, EnsureBinaries
// uses it as is and builds nothing.
const EnvBinDir = "SYMPOZIUM_LOCALCP_BIN"

// binaries are the executables a cluster needs, as named in the bin directory.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// buildScript is the path of build.sh relative to the repository root.
const buildScript = "hack/localcp/build.sh"

// EnsureBinaries returns a directory holding etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok. It runs hack/localcp/build.sh,
// which builds them from the pinned modules the first time (about 8 minutes on 2
// cores) and returns its cache directory at once afterwards. Build logs go to log
// (nil discards them). $SYMPOZIUM_LOCALCP_BIN overrides the whole process.
func EnsureBinaries(ctx context.Context, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if err := checkBinaries(dir); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvBinDir, err)
		}
		return dir, nil
	}
	dir, err := RunBuildScript(ctx, buildScript, log)
	if err != nil {
		return "", err
	}
	if err := checkBinaries(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// RunBuildScript runs a cached build script of this repository (script is its
// path from the repository root, e.g. hack/localcp/build.sh) with bash, its
// logs to log, and returns the last line it printed: the bin directory.
// Cancelling ctx ends the whole build (the script, go build and the compilers
// it runs), not only the script.
func RunBuildScript(ctx context.Context, script string, log io.Writer) (string, error) {
	root, err := RepoRoot(script)
	if err != nil {
		return "", err
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, script))
	cmd.Stdout = &stdout
	cmd.Stderr = log
	cmd.SysProcAttr = sysProcAttr(true)
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	if dir == "" {
		return "", fmt.Errorf("%s printed no bin directory", script)
	}
	return dir, nil
}

func checkBinaries(dir string) error {
	var missing []string
	for _, b := range binaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks %s", dir, strings.Join(missing, ", "))
	}
	return nil
}

// RepoRoot finds the repository root, the directory holding file (a path
// from the root): from this source file when it is available (not with
// -trimpath), else upwards from the working directory, else from git.
func RepoRoot(file string) (string, error) {
	if _, src, _, ok := runtime.Caller(0); ok && filepath.IsAbs(src) {
		root := filepath.Join(filepath.Dir(src), "..", "..")
		if isRepoRoot(root, file) {
			return filepath.Clean(root), nil
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if isRepoRoot(dir, file) {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
		if root := strings.TrimSpace(string(out)); isRepoRoot(root, file) {
			return root, nil
		}
	}
	return "", errors.New("cannot find the repository root (no " + file + " above the working directory)")
}

func isRepoRoot(dir, file string) bool {
	_, err := os.Stat(filepath.Join(dir, file))
	return err == nil
}
