package localcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"
)

// EnvBinDir names a directory holding prebuilt binaries; when set, EnsureBinaries
// uses it as is and builds nothing.
const EnvBinDir = "SYMPOZIUM_LOCALCP_BIN"

// binaries are the executables a cluster needs, as named in the bin directory.
var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// buildScript is the path of build.sh relative to the repository root.
const buildScript = "hack/localcp/build.sh"

// FirstBuildEstimate is how long the first build of the control plane takes
// on 2 cores with an empty Go build cache, as measured (hack/demo.sh and the
// README say the same).
const FirstBuildEstimate = "about 20 minutes"

// progressEvery is how often a build in progress says it is still going.
var progressEvery = 30 * time.Second

// EnsureBinaries returns a directory holding etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok. It runs hack/localcp/build.sh,
// which builds them from the pinned modules the first time (FirstBuildEstimate
// on 2 cores) and returns its cache directory at once afterwards. Build logs go
// to log (nil discards them), and so does progress while a build runs: what it
// builds, that it waits for another build's lock, and the time so far, every
// progressEvery. $SYMPOZIUM_LOCALCP_BIN overrides the whole process.
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
	// Progress for the control plane's build, only when there is something
	// to build: build.sh's own key, computed here, names its bin directory
	// and lock. Other scripts log their own progress.
	if script == buildScript {
		if bin, err := expectedBinDir(ctx, root); err == nil && checkBinaries(bin) != nil {
			p := &buildProgress{log: log, lock: filepath.Join(filepath.Dir(bin), ".lock"), bin: bin, start: time.Now()}
			cmd.Stderr = p
			stop := p.run()
			defer stop()
		}
	}
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

// expectedBinDir is the bin directory build.sh will use: the cache root and
// the hash of its key inputs, computed as key_inputs in build.sh does (a test
// keeps the two in agreement).
func expectedBinDir(ctx context.Context, root string) (string, error) {
	here := filepath.Join(root, "hack", "localcp")
	h := sha256.New()
	for _, f := range []string{"build.sh",
		"build/etcd/go.mod", "build/etcd/go.sum", "build/etcd/main.go",
		"build/kube/go.mod", "build/kube/go.sum", "build/kube/tools.go",
		"build/kwok/go.mod", "build/kwok/go.sum", "build/kwok/tools.go"} {
		b, err := os.ReadFile(filepath.Join(here, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "== %s\n", f)
		h.Write(b)
	}
	fmt.Fprintf(h, "== toolchain\n")
	goEnv := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOOS", "GOARCH")
	goEnv.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=readonly -buildvcs=false")
	out, err := goEnv.Output()
	if err != nil {
		return "", err
	}
	h.Write(out)
	hash := hex.EncodeToString(h.Sum(nil))[:16]
	cacheRoot := os.Getenv("SYMPOZIUM_LOCALCP_CACHE")
	if cacheRoot == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			base = filepath.Join(home, ".cache")
		}
		cacheRoot = filepath.Join(base, "sympozium-controller", "localcp")
	}
	return filepath.Join(cacheRoot, hash, "bin"), nil
}

// buildProgress passes build.sh's log through and says, when the build
// starts and then every progressEvery, what it is doing: waiting for another
// build's lock, or building which binary, and for how long so far.
type buildProgress struct {
	log   io.Writer
	lock  string
	bin   string
	start time.Time

	mu       sync.Mutex
	partial  []byte
	building string // the binary build.sh said it is building
}

// buildingLine is how build.sh announces a binary it builds.
var buildingLine = regexp.MustCompile(`^localcp/build: ([-a-z]+): building `)

func (p *buildProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		if m := buildingLine.FindSubmatch(p.partial[:i]); m != nil {
			p.building = string(m[1])
		}
		p.partial = p.partial[i+1:]
	}
	return p.log.Write(b)
}

// run prints the first line and starts the periodic ones; the returned
// function stops them.
func (p *buildProgress) run() func() {
	if lockHeld(p.lock) {
		fmt.Fprintf(p.log, "localcp: another build of the same control plane is running (it holds %s); waiting for it to finish, then using its binaries\n", p.lock)
	} else {
		fmt.Fprintf(p.log, "localcp: building etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from pinned Go modules into %s (the first time %s on 2 cores; cached afterwards)\n", p.bin, FirstBuildEstimate)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(p.log, p.status())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// status is one line saying what the build is doing now.
func (p *buildProgress) status() string {
	p.mu.Lock()
	building := p.building
	p.mu.Unlock()
	elapsed := time.Since(p.start).Round(time.Second)
	switch {
	case building != "":
		return fmt.Sprintf("localcp: still building %s, %s so far (the whole first build takes %s on 2 cores)", building, elapsed, FirstBuildEstimate)
	case lockHeld(p.lock):
		return fmt.Sprintf("localcp: still waiting for another build's lock (%s), %s so far", p.lock, elapsed)
	default:
		return fmt.Sprintf("localcp: still preparing the build, %s so far", elapsed)
	}
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
