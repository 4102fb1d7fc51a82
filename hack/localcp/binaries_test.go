package localcp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExpectedBinDirMatchesBuildScript: the bin directory computed in Go (for
// progress messages and the lock probe) is the one build.sh uses. A fake cache
// holding executables where Go expects them makes build.sh answer at once,
// with its own directory, without building anything.
func TestExpectedBinDirMatchesBuildScript(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("SYMPOZIUM_LOCALCP_CACHE", cache)
	root, err := RepoRoot(buildScript)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := expectedBinDir(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(bin, cache+string(filepath.Separator)) {
		t.Fatalf("bin dir %s is not under the cache root %s", bin, cache)
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.CommandContext(t.Context(), "bash", filepath.Join(root, buildScript)).Output()
	if err != nil {
		t.Fatalf("build.sh: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != bin {
		t.Fatalf("build.sh uses %s, Go computed %s: keep expectedBinDir in step with key_inputs in build.sh", got, bin)
	}
}

// TestBuildProgress: the progress lines say what is being built and that a
// build waits for another one's lock.
func TestBuildProgress(t *testing.T) {
	lock := filepath.Join(t.TempDir(), ".lock")
	f, err := os.Create(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if lockHeld(lock) {
		t.Fatal("a free lock reported held")
	}
	// Another holder: a separate open file description, as another process has.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if !lockHeld(lock) {
		t.Fatal("a held lock reported free")
	}

	var log bytes.Buffer
	p := &buildProgress{log: &log, lock: lock, bin: "/cache/x/bin", start: time.Now()}
	stop := p.run()
	stop()
	if want := "another build of the same control plane is running (it holds " + lock + "); waiting for it"; !strings.Contains(log.String(), want) {
		t.Errorf("first line %q lacks %q", log.String(), want)
	}
	if got := p.status(); !strings.HasPrefix(got, "localcp: still waiting for another build's lock ("+lock+"), ") {
		t.Errorf("status while waiting: %q", got)
	}
	// build.sh's log goes through unchanged, and names what is being built.
	_, _ = p.Write([]byte("localcp/build: etcd: built in 41.7s\nlocalcp/build: kube-apiserver: buil"))
	_, _ = p.Write([]byte("ding k8s.io/kubernetes/cmd/kube-apiserver\n"))
	if !strings.Contains(log.String(), "localcp/build: kube-apiserver: building k8s.io/kubernetes/cmd/kube-apiserver\n") {
		t.Errorf("log not passed through: %q", log.String())
	}
	if got := p.status(); !strings.HasPrefix(got, "localcp: still building kube-apiserver, ") {
		t.Errorf("status while building: %q", got)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	log.Reset()
	p = &buildProgress{log: &log, lock: lock, bin: "/cache/x/bin", start: time.Now()}
	p.run()()
	if !strings.HasPrefix(log.String(), "localcp: building etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from pinned Go modules into /cache/x/bin (the first time "+FirstBuildEstimate) {
		t.Errorf("first line without another build: %q", log.String())
	}
}
