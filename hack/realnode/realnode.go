//go:build linux

package realnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
)

// The node's fixed names and addresses.
const (
	NodeName = "realnode-0"
	// Bridge is the pods' bridge; GatewayIP, the host's address on it, is
	// the node's InternalIP, where the API server reaches the kubelet and
	// pods reach servers of the host.
	Bridge    = "rncni0"
	PodCIDR   = "10.244.77.0/24"
	GatewayIP = "10.244.77.1"
	// ServiceIP is the ClusterIP of Service default/kubernetes: pods reach
	// the API server there (a DNAT to its loopback port; no kube-proxy runs).
	ServiceIP = "10.96.0.1"
	// NodeLabel marks the real node.
	NodeLabel = "sympozium.ai/real-node"

	buildScript = "hack/realnode/build.sh"
	// EnvKubelet names a prebuilt kubelet; when set, EnsureKubelet builds nothing.
	EnvKubelet = "SYMPOZIUM_REALNODE_KUBELET"
)

// Preflight says why this machine cannot run a real node, or nil.
func Preflight() error {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "it needs root (it runs containerd and a kubelet, mounts file systems, adds a bridge and iptables rules)")
	}
	if !hasMemoryCgroup() {
		why = append(why, "no memory cgroup controller is mounted (neither /sys/fs/cgroup/memory nor a cgroup2 with memory); containers need cgroups")
	}
	if f, err := os.OpenFile(sysctlPath("net.ipv4.ip_forward"), os.O_WRONLY, 0); err != nil {
		why = append(why, "/proc/sys is not writable: "+err.Error())
	} else {
		f.Close()
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err == nil && !strings.Contains(string(fs), "overlay") {
		why = append(why, "the kernel has no overlay file system (containerd's snapshotter)")
	}
	if len(why) > 0 {
		return fmt.Errorf("this machine cannot run a real node: %s", strings.Join(why, "; "))
	}
	return nil
}

func hasMemoryCgroup() bool {
	for _, root := range cgroupRoots() {
		if filepath.Base(root) == "memory" || strings.Contains(filepath.Base(root), "memory") {
			return true
		}
		if c, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil && strings.Contains(string(c), "memory") {
			return true
		}
	}
	return false
}

// EnsurePackages installs containerd, runc, the CNI plugins and iptables
// with apt-get when they are missing, saying so (hack/realnode/packages.sh).
func EnsurePackages(ctx context.Context, log io.Writer) error {
	root, err := localcp.RepoRoot("hack/realnode/packages.sh")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack/realnode/packages.sh"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the real node's packages (containerd, runc, containernetworking-plugins, iptables) are missing and could not be installed (see above): %w", err)
	}
	return nil
}

// EnsureKubelet returns the kubelet binary: built from the pinned module by
// hack/realnode/build.sh the first time (about 10 minutes on 2 cores),
// cached afterwards; $SYMPOZIUM_REALNODE_KUBELET overrides it.
func EnsureKubelet(ctx context.Context, log io.Writer) (string, error) {
	if bin := os.Getenv(EnvKubelet); bin != "" {
		return bin, nil
	}
	dir, err := localcp.RunBuildScript(ctx, buildScript, log)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubelet"), nil
}

// TestImages are the image tars every real node imports.
type TestImages struct {
	// Pause is the pod sandbox image (ociimage.PauseImage).
	Pause string
	// Agent is the test agent (ociimage.TestAgentImage).
	Agent string
}

// BuildTestImages builds hack/testagent statically and writes its two
// images, the pause image and the test agent, as OCI tars in dir.
func BuildTestImages(ctx context.Context, dir string) (TestImages, error) {
	root, err := localcp.RepoRoot("hack/testagent/main.go")
	if err != nil {
		return TestImages{}, err
	}
	bin := filepath.Join(dir, "testagent")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./hack/testagent")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		return TestImages{}, fmt.Errorf("building hack/testagent: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return TestImages{}, err
	}
	imgs := TestImages{Pause: filepath.Join(dir, "pause.oci.tar"), Agent: filepath.Join(dir, "testagent.oci.tar")}
	if err := ociimage.WriteFile(imgs.Pause, ociimage.Pause(data, ociimage.PauseImage)); err != nil {
		return TestImages{}, err
	}
	if err := ociimage.WriteFile(imgs.Agent, ociimage.TestAgent(data, ociimage.TestAgentImage)); err != nil {
		return TestImages{}, err
	}
	return imgs, nil
}

// APIServerFlags writes, in dir/pki, a CA the kubelet trusts for client
// certificates and a client certificate of it for the API server, and
// returns the kube-apiserver flags the node needs: that certificate (for
// logs, exec, port-forward) and the node's InternalIP as its address.
func APIServerFlags(dir string) ([]string, error) {
	p, err := newKubeletPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return nil, err
	}
	return []string{
		"--kubelet-client-certificate=" + p.clientCert,
		"--kubelet-client-key=" + p.clientKey,
		"--kubelet-preferred-address-types=InternalIP",
	}, nil
}

// Options configure Start.
type Options struct {
	// Dir is the node's work directory: configuration, logs, the kubelet's
	// and containerd's state. APIServerFlags(Dir) must have been passed to
	// the cluster.
	Dir string
	// Kubelet is the kubelet binary.
	Kubelet string
	// Images are OCI image tars imported before the kubelet starts; the
	// first is the pause image (ociimage.PauseImage).
	Images []string
	// Log receives progress; nil discards it.
	Log io.Writer
	// Detach leaves the node running when this process exits (localcp's
	// meaning): `realnode up`.
	Detach bool
	// LockWait is how long to wait for another real node of the machine
	// to stop; 0 means 15 minutes.
	LockWait time.Duration
}

// Node is a running real node.
type Node struct {
	// Dir is the work directory; Socket containerd's socket.
	Dir, Socket string
	// StartupDuration is how long Start took, from the lock on.
	StartupDuration time.Duration

	log     io.Writer
	lock    *os.File
	st      *state
	procs   []*exec.Cmd
	mu      sync.Mutex
	stopped bool
}

// Start starts containerd and the kubelet of the node for cluster, imports
// the images and waits until the node is Ready. On error everything it
// changed is undone.
func Start(ctx context.Context, opts Options, cluster *localcp.Cluster) (_ *Node, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.LockWait == 0 {
		opts.LockWait = 15 * time.Minute
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	lock, err := acquire(ctx, opts.Log, opts.LockWait, false)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	n := &Node{Dir: dir, Socket: filepath.Join(dir, "containerd", "containerd.sock"), log: opts.Log, lock: lock}
	defer func() {
		if err != nil {
			n.logf("start failed: %v; logs in %s", err, dir)
			_ = n.Stop()
		}
	}()
	if n.st, err = snapshot(dir); err != nil {
		return n, err
	}
	if err := n.st.save(); err != nil {
		return n, err
	}
	apiserver, err := url.Parse(cluster.APIServerURL)
	if err != nil {
		return n, err
	}
	if err := n.network(apiserver.Port()); err != nil {
		return n, err
	}
	if err := n.writeConfig(cluster); err != nil {
		return n, err
	}
	containerd, err := n.startProcess("containerd", "containerd", []string{"--config", filepath.Join(dir, "containerd.toml")}, opts.Detach, nil)
	if err != nil {
		return n, err
	}
	if err := n.waitContainerd(ctx, containerd); err != nil {
		return n, err
	}
	for _, img := range opts.Images {
		if err := n.ImportImage(ctx, img); err != nil {
			return n, err
		}
	}
	kubelet, err := n.startProcess("kubelet", opts.Kubelet, []string{
		"--config=" + filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig=" + filepath.Join(dir, "kubelet.kubeconfig"),
		"--root-dir=" + filepath.Join(dir, "kubelet"),
		"--cert-dir=" + filepath.Join(dir, "kubelet-certs"),
		"--hostname-override=" + NodeName,
		"--node-ip=" + GatewayIP,
		"--node-labels=" + NodeLabel + "=true",
		"--v=2",
	}, opts.Detach, lock)
	if err != nil {
		return n, err
	}
	if err := n.waitReady(ctx, cluster, kubelet); err != nil {
		return n, err
	}
	n.StartupDuration = time.Since(began)
	n.logf("node %s Ready in %s (containerd socket %s)", NodeName, n.StartupDuration.Round(time.Millisecond), n.Socket)
	return n, nil
}

// network adds the bridge (the kubelet needs the node IP to exist), lets
// pods reach the API server's loopback port at ServiceIP:443, and nothing
// else.
func (n *Node) network(apiserverPort string) error {
	if _, err := os.Stat("/sys/class/net/" + Bridge); err == nil {
		return fmt.Errorf("a link named %s exists already: another real node, or a leftover (delete it with: ip link del %s)", Bridge, Bridge)
	}
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", GatewayIP + "/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	// A DNAT to 127.0.0.1 needs route_localnet on the incoming interface
	// (it goes with the bridge).
	if err := writeSysctl("net.ipv4.conf."+Bridge+".route_localnet", "1"); err != nil {
		return err
	}
	return run("iptables", "-w", "5", "-t", "nat", "-A", "PREROUTING", "-i", Bridge, "-d", ServiceIP+"/32", "-p", "tcp", "--dport", "443",
		"-m", "comment", "--comment", RuleComment, "-j", "DNAT", "--to-destination", "127.0.0.1:"+apiserverPort)
}

func (n *Node) writeConfig(cluster *localcp.Cluster) error {
	dir := n.Dir
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "kubelet-certs", "pod-logs", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	ports, err := localcp.FreePorts(2)
	if err != nil {
		return err
	}
	kubeconfig, err := os.ReadFile(cluster.Kubeconfig)
	if err != nil {
		return err
	}
	files := map[string]string{
		"containerd.toml":                containerdConfig(dir),
		"cni/net.d/10-realnode.conflist": cniConfig(dir),
		"kubelet.yaml":                   kubeletConfig(dir, ports[0], ports[1]),
		"kubelet.kubeconfig":             string(kubeconfig),
		filepath.Join("pki", "README"):   "kubelet-client-ca.crt: the CA the kubelet trusts; apiserver-kubelet-client.*: the API server's client certificate\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// containerdConfig keeps containerd's state in dir where it can (root,
// state, sockets, runc's state) and turns off the plugins that would write
// elsewhere (opt: /opt/containerd).
func containerdConfig(dir string) string {
	c := filepath.Join(dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %[3]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  # Without CAP_SYS_RESOURCE a container's oom_score_adj cannot go below ours.
  restrict_oom_score_adj = true
  enable_selinux = false
  # The pods' network namespaces below state, not in /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[5]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, filepath.Join(c, "root"), filepath.Join(c, "state"), filepath.Join(c, "containerd.sock"), ociimage.PauseImage,
		filepath.Join(c, "runc"), filepath.Join(dir, "cni", "net.d"))
}

// cniConfig: a bridge with the host as the pods' default gateway (pods
// reach the host at GatewayIP, and ServiceIP through it), no masquerade (no traffic leaves the machine), addresses from
// host-local with its state in dir.
func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "realnode",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": true,
    "isDefaultGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q, "gateway": %q}]],
      "dataDir": %q
    }
  }]
}
`, Bridge, PodCIDR, GatewayIP, filepath.Join(dir, "cni", "ipam"))
}

// kubeletConfig: the settings of the measured run (shared notes,
// real-node.md): cgroupfs on cgroup v1 without QoS cgroups, no swap check,
// no iptables chains of its own, everything it writes kept in dir where the
// configuration allows; the API server authenticates with the client
// certificate of APIServerFlags.
func kubeletConfig(dir string, port, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
containerRuntimeEndpoint: unix://%[4]s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
makeIPTablesUtilChains: false
oomScoreAdj: 0
podLogsDir: %[5]s
volumePluginDir: %[6]s
resolvConf: /etc/resolv.conf
serializeImagePulls: false
kubeAPIQPS: 50
kubeAPIBurst: 100
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1%%"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %[7]s
authorization:
  mode: AlwaysAllow
`, GatewayIP, port, healthzPort, filepath.Join(dir, "containerd", "containerd.sock"),
		filepath.Join(dir, "pod-logs"), filepath.Join(dir, "volume-plugins"), filepath.Join(dir, "pki", "kubelet-client-ca.crt"))
}

// startProcess starts a node process, its output appended to dir/<name>.log,
// in its own process group, killed with this process unless detach; extra
// is passed on as file descriptor 3 (the lock).
func (n *Node) startProcess(name, binary string, args []string, detach bool, extra *os.File) (*exec.Cmd, error) {
	logFile, err := os.OpenFile(filepath.Join(n.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(binary, args...)
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = nodeEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if extra != nil {
		cmd.ExtraFiles = []*os.File{extra}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, cmd)
	n.st.PIDs[name] = cmd.Process.Pid
	n.mu.Unlock()
	go func() { _ = cmd.Wait() }()
	return cmd, n.st.save()
}

// nodeEnv is our environment without what would send the node's traffic
// to a proxy or another cluster.
func nodeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "KUBECONFIG", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func exited(cmd *exec.Cmd) bool {
	return syscall.Kill(cmd.Process.Pid, 0) != nil || !pidRunning(cmd.Process.Pid)
}

func pidRunning(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}

func (n *Node) waitContainerd(ctx context.Context, p *exec.Cmd) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if exited(p) {
			return fmt.Errorf("containerd exited; last log lines:\n%s", n.logTail("containerd", 20))
		}
		if err := exec.CommandContext(ctx, "ctr", "--address", n.Socket, "version").Run(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not answering on %s after 30s; last log lines:\n%s", n.Socket, n.logTail("containerd", 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ImportImage imports an OCI (or docker-archive) image tar into the
// node's containerd, where the kubelet finds it (namespace k8s.io): what a
// user does with `ctr --address <socket> -n k8s.io images import <tar>`.
func (n *Node) ImportImage(ctx context.Context, tar string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", n.Socket, "-n", "k8s.io", "images", "import", tar).CombinedOutput()
	if err != nil {
		return fmt.Errorf("importing %s: %v\n%s", tar, err, out)
	}
	return nil
}

// Ctr runs ctr against the node's containerd (namespace k8s.io) and
// returns its output.
func (n *Node) Ctr(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.Socket, "-n", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

func (n *Node) waitReady(ctx context.Context, cluster *localcp.Cluster, kubelet *exec.Cmd) error {
	client, err := kubernetes.NewForConfig(cluster.RestConfig())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	why := "not registered"
	for {
		if exited(kubelet) {
			return fmt.Errorf("the kubelet exited; last log lines:\n%s", n.logTail("kubelet", 30))
		}
		node, err := client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			why = "not Ready"
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					why = ""
				}
			}
			for _, t := range node.Spec.Taints {
				if t.Key == "node.kubernetes.io/not-ready" {
					why = "still tainted not-ready"
				}
			}
			if why == "" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s %s after 2m; last kubelet log lines:\n%s", NodeName, why, n.logTail("kubelet", 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) logTail(name string, lines int) string {
	data, _ := os.ReadFile(filepath.Join(n.Dir, name+".log"))
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// LogPath is the log of "containerd" or "kubelet".
func (n *Node) LogPath(name string) string { return filepath.Join(n.Dir, name+".log") }

// Stop stops the node and undoes everything it changed on the host.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil
	}
	n.stopped = true
	began := time.Now()
	var err error
	if n.st != nil {
		err = teardown(n.st, n.log)
		if err == nil {
			err = os.RemoveAll(StateDir)
		}
	}
	release(n.lock)
	n.logf("stopped and cleaned up in %s", time.Since(began).Round(time.Millisecond))
	return err
}

func (n *Node) logf(format string, args ...any) {
	fmt.Fprintf(n.log, "realnode: "+format+"\n", args...)
}

// acquire takes the machine's real-node lock, waiting for another node to
// stop (saying so every 30 s), then cleans up after a node that was killed
// without stopping.
func acquire(ctx context.Context, log io.Writer, wait time.Duration, down bool) (*os.File, error) {
	began := time.Now()
	lastSaid := time.Time{}
	for {
		f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// The previous holder unlinks the file before unlocking: a lock
			// on an unlinked file is no lock.
			var held, named syscall.Stat_t
			if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(LockFile, &named) == nil && held.Ino == named.Ino {
				if err := cleanupStale(log, down); err != nil {
					release(f)
					return nil, err
				}
				return f, nil
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", LockFile, err)
		}
		owner := "unknown work directory"
		if st, err := readState(); err == nil {
			owner = st.Dir
		}
		if time.Since(began) > wait {
			return nil, fmt.Errorf("another real node runs on this machine (%s) and only one can: stop it (go run ./hack/realnode/cmd/realnode down) or wait for it", owner)
		}
		if time.Since(lastSaid) >= 30*time.Second {
			fmt.Fprintf(log, "realnode: another real node runs on this machine (%s); waiting for it to stop, %s so far\n", owner, time.Since(began).Round(time.Second))
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func release(f *os.File) {
	if f == nil {
		return
	}
	_ = os.Remove(LockFile)
	_ = f.Close()
}

// cleanupStale undoes what a node left behind when it was killed (its state
// file outlived it), or, for down, what the node it stops changed. The
// caller holds the lock.
func cleanupStale(log io.Writer, down bool) error {
	st, err := readState()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if down {
		fmt.Fprintf(log, "realnode: stopping the real node started %s in %s and undoing its changes to the host\n", st.Started.Format(time.RFC3339), st.Dir)
	} else {
		fmt.Fprintf(log, "realnode: a real node started %s in %s was not stopped; removing what it left (processes, mounts, cgroups, iptables rules, bridge, sysctls, directories)\n",
			st.Started.Format(time.RFC3339), st.Dir)
	}
	if err := teardown(st, log); err != nil {
		return fmt.Errorf("cleaning up after the real node in %s: %w", st.Dir, err)
	}
	return os.RemoveAll(StateDir)
}

// Down stops the machine's real node, started by another process (`realnode
// up`), and undoes what it changed: the kubelet (which holds the lock) and
// containerd first, then the rest under the lock. Nothing running: nil.
func Down(ctx context.Context, log io.Writer) error {
	st, err := readState()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if pid := st.PIDs["kubelet"]; pid > 0 {
		if err := stopPID(pid, "kubelet", st.Dir, 10*time.Second); err != nil {
			return err
		}
	}
	lock, err := acquire(ctx, log, time.Minute, true) // undoes what the state records
	if err != nil {
		return err
	}
	release(lock)
	return nil
}
