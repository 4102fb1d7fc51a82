//go:build linux

package realnode

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Everything the real node changes on the host is named here, and recorded
// in the state file before it is changed, so that Stop, and the next Start
// after a SIGKILL, can undo it.
const (
	// StateDir holds the state file of the node running on this machine.
	StateDir  = "/run/sympozium-realnode"
	stateFile = StateDir + "/state.json"
	// LockFile is held (flock) by whoever runs the machine's one real node:
	// the harness while it starts and stops it, the kubelet while it runs.
	LockFile = "/run/sympozium-realnode.lock"
	// RuleComment marks the iptables rules the harness adds.
	RuleComment = "sympozium-realnode"
)

// sysctls the kubelet sets (setupKernelTunables) and the bridge plugin sets
// (ip_forward for a gateway bridge); their values before the node are put
// back.
var sysctls = []string{
	"kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
}

// systemDirs are written by containerd, the kubelet or the CNI plugins
// whatever their configuration says; those that did not exist before the
// node are removed with it.
var systemDirs = []string{
	"/run/containerd",         // containerd 1.6: shim sockets, runc state, fifos
	"/var/run/netns",          // the CRI's network namespaces (cni-<uuid>)
	"/run/netns",              // the same when /var/run is not a link to /run
	"/var/lib/kubelet",        // device-plugins socket directory
	"/var/log/containers",     // the kubelet's links to the container logs
	"/var/log/pods",           // podLogsDir's default (the config moves it)
	"/var/lib/cni",            // libcni's result cache
	"/usr/libexec/kubernetes", // volumePluginDir's default (the config moves it)
	"/etc/cni",                // never written with our config; listed to be sure
	"/opt/containerd",         // containerd's opt plugin (disabled in the config)
	"/var/lib/containerd",     // containerd's default root (the config moves it)
}

// iptables tables and commands the kubelet writes its chains to.
var iptablesTables = []string{"filter", "nat", "mangle"}
var iptablesCommands = []string{"iptables", "ip6tables"}

// state is what the node changed, written to stateFile before each change.
type state struct {
	// Dir is the node's work directory: its processes name it on their
	// command lines.
	Dir     string    `json:"dir"`
	Started time.Time `json:"started"`
	// Sysctls holds the values before the node.
	Sysctls map[string]string `json:"sysctls"`
	// NewDirs are the systemDirs that did not exist before the node.
	NewDirs []string `json:"newDirs"`
	// Chains lists, per "command table", the chains that existed before.
	Chains map[string][]string `json:"chains"`
	// Cgroups lists the top-level cgroups of each hierarchy before the node.
	Cgroups []string `json:"cgroups"`
	// Bridge is the bridge the node created.
	Bridge string `json:"bridge"`
	// PIDs of the node's own processes (containerd, kubelet).
	PIDs map[string]int `json:"pids"`
}

func readState() (*state, error) {
	data, err := os.ReadFile(stateFile)
	if err != nil {
		return nil, err
	}
	st := &state{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile, err)
	}
	return st, nil
}

func (st *state) save() error {
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := stateFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, stateFile)
}

// snapshot records the host as it is before the node.
func snapshot(dir string) (*state, error) {
	st := &state{Dir: dir, Started: time.Now().UTC(), Sysctls: map[string]string{}, Chains: map[string][]string{}, PIDs: map[string]int{}, Bridge: Bridge}
	for _, s := range sysctls {
		v, err := os.ReadFile(sysctlPath(s))
		if err != nil {
			continue // not on this kernel: nothing to restore
		}
		st.Sysctls[s] = strings.TrimSpace(string(v))
	}
	for _, d := range systemDirs {
		if _, err := os.Lstat(d); errors.Is(err, os.ErrNotExist) {
			st.NewDirs = append(st.NewDirs, d)
		}
	}
	for _, cmd := range iptablesCommands {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		for _, table := range iptablesTables {
			chains, err := listChains(cmd, table)
			if err != nil {
				continue
			}
			st.Chains[cmd+" "+table] = chains
		}
	}
	cgroups, err := topCgroups()
	if err != nil {
		return nil, err
	}
	st.Cgroups = cgroups
	return st, nil
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func writeSysctl(name, value string) error {
	return os.WriteFile(sysctlPath(name), []byte(value+"\n"), 0o644)
}

// teardown undoes everything st records, in order: processes, mounts,
// network namespaces, iptables, the bridge, sysctls, cgroups, directories.
// It goes on after an error and returns them all.
func teardown(st *state, log io.Writer) error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintf(log, "realnode: teardown: %v\n", err)
		}
	}
	// The kubelet first (it would restart containers), then every container
	// process (they live in the cgroups the node created), then containerd
	// and its shims.
	if pid := st.PIDs["kubelet"]; pid > 0 {
		note(stopPID(pid, "kubelet", st.Dir, 10*time.Second))
	}
	newCgroups := newCgroups(st)
	note(killCgroups(newCgroups))
	note(stopAll(nodeProcesses(st.Dir), st.Dir, 5*time.Second))
	note(killCgroups(newCgroups)) // anything a dying shim started
	note(unmountAll(st))
	note(removeNetns())
	note(removeIPTables(st))
	if st.Bridge != "" {
		if _, err := os.Stat("/sys/class/net/" + st.Bridge); err == nil {
			note(run("ip", "link", "del", st.Bridge))
		}
	}
	for name, v := range st.Sysctls {
		cur, err := os.ReadFile(sysctlPath(name))
		if err == nil && strings.TrimSpace(string(cur)) != v {
			note(writeSysctl(name, v))
		}
	}
	note(removeCgroups(newCgroups))
	for _, d := range st.NewDirs {
		if _, err := os.Lstat(d); err == nil {
			note(os.RemoveAll(d))
		}
	}
	// The work directory's runtime state (container root filesystems, the
	// kubelet's pods) goes; its logs and configuration stay for reading.
	for _, sub := range []string{"containerd", "kubelet", "cni"} {
		note(os.RemoveAll(filepath.Join(st.Dir, sub)))
	}
	return errors.Join(errs...)
}

type proc struct {
	pid  int
	name string
}

// nodeProcesses are the processes of the node in dir: containerd, its shims,
// runc and the kubelet, found by executable name and by dir on their command
// line (a shim names containerd's socket, which lives in dir).
func nodeProcesses(dir string) []proc {
	names := map[string]bool{"containerd": true, "containerd-shim-runc-v2": true, "containerd-shim": true, "runc": true, "kubelet": true}
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		name := filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if !names[name] {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), dir) {
			out = append(out, proc{pid, name})
		}
	}
	return out
}

// stopPID ends pid with SIGTERM, then SIGKILL after grace, if it is still a
// process of the node in dir (a recycled PID is left alone).
func stopPID(pid int, name, dir string, grace time.Duration) error {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), dir) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) still running after SIGKILL", name, pid)
}

// stopAll sends SIGTERM to every process at once, then SIGKILL to those
// still there after grace.
func stopAll(procs []proc, dir string, grace time.Duration) error {
	for _, p := range procs {
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	var errs []error
	deadline := time.Now().Add(grace)
	for _, p := range procs {
		if waitGone(p.pid, time.Until(deadline)) {
			continue
		}
		if err := stopPID(p.pid, p.name, dir, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			// A zombie: ours to reap if we started it; either way it runs no more.
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroupRoots are the mounted cgroup hierarchies: each v1 controller
// directory and the unified (v2) one.
func cgroupRoots() []string {
	var roots []string
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+1 >= len(fields) {
			continue
		}
		if fs := fields[i+1]; fs == "cgroup" || fs == "cgroup2" {
			roots = append(roots, unescapeMount(fields[4]))
		}
	}
	slices.Sort(roots)
	return slices.Compact(roots)
}

// topCgroups lists the cgroups directly below each hierarchy's root.
func topCgroups() ([]string, error) {
	var out []string
	for _, root := range cgroupRoots() {
		entries, err := os.ReadDir(root)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, filepath.Join(root, e.Name()))
			}
		}
	}
	return out, nil
}

// newCgroups are the top-level cgroups that appeared since st was taken:
// those containerd and the kubelet made for the pods.
func newCgroups(st *state) []string {
	now, _ := topCgroups()
	var out []string
	for _, c := range now {
		if !slices.Contains(st.Cgroups, c) {
			out = append(out, c)
		}
	}
	return out
}

// killCgroups SIGKILLs every process in the cgroups and their descendants.
func killCgroups(cgroups []string) error {
	for _, cg := range cgroups {
		_ = filepath.WalkDir(cg, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for f := range strings.FieldsSeq(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
	return nil
}

// removeCgroups removes the cgroups, deepest first, waiting a little for
// killed processes to leave them.
func removeCgroups(cgroups []string) error {
	var errs []error
	for _, cg := range cgroups {
		var dirs []string
		_ = filepath.WalkDir(cg, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for range 50 {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ours reports whether a mount point is the node's: below its work
// directory (the kubelet's pod volumes and root bind mount, containerd's
// snapshots and container root filesystems), a network namespace of the
// CRI, or on or below a system directory that did not exist before the node.
func (st *state) ours(mountPoint string) bool {
	prefixes := []string{st.Dir + "/", "/run/netns/cni-", "/var/run/netns/cni-"}
	for _, d := range st.NewDirs {
		if mountPoint == d {
			return true
		}
		prefixes = append(prefixes, d+"/")
	}
	for _, p := range prefixes {
		if strings.HasPrefix(mountPoint, p) || mountPoint+"/" == p {
			return true
		}
	}
	return false
}

// unmountAll detaches every mount of the node, deepest first.
func unmountAll(st *state) error {
	var errs []error
	for range 3 { // a mount revealed by detaching another
		var points []string
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 5 {
				continue
			}
			if mp := unescapeMount(fields[4]); st.ours(mp) {
				points = append(points, mp)
			}
		}
		f.Close()
		if len(points) == 0 {
			return nil
		}
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		errs = nil
		for _, mp := range points {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeNetns removes the network namespaces the CRI made (cni-<uuid>),
// already unmounted.
func removeNetns() error {
	var errs []error
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "cni-") {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// listChains lists the chains of a table ("-N NAME" lines, plus built-ins).
func listChains(cmd, table string) ([]string, error) {
	out, err := exec.Command(cmd, "-w", "5", "-t", table, "-S").Output()
	if err != nil {
		return nil, err
	}
	var chains []string
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "-N" || f[0] == "-P") {
			chains = append(chains, f[1])
		}
	}
	return chains, nil
}

// removeIPTables deletes the rules the harness added (by their comment) and
// the chains the kubelet added (those not in the snapshot), with the rules
// that jump to them.
func removeIPTables(st *state) error {
	var errs []error
	for _, cmd := range iptablesCommands {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		for _, table := range iptablesTables {
			before, ok := st.Chains[cmd+" "+table]
			if !ok {
				continue
			}
			out, err := exec.Command(cmd, "-w", "5", "-t", table, "-S").Output()
			if err != nil {
				continue
			}
			var added []string
			for line := range strings.SplitSeq(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && f[0] == "-N" && !slices.Contains(before, f[1]) {
					added = append(added, f[1])
				}
			}
			for line := range strings.SplitSeq(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) < 2 || f[0] != "-A" {
					continue
				}
				ours := strings.Contains(line, RuleComment)
				if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) && slices.Contains(added, f[i+1]) {
					ours = true
				}
				if !ours || slices.Contains(added, f[1]) {
					continue // rules inside an added chain go with it
				}
				args := append([]string{"-w", "5", "-t", table, "-D"}, unquoteRule(f[1:])...)
				if err := run(cmd, args...); err != nil {
					errs = append(errs, err)
				}
			}
			for _, c := range added {
				_ = run(cmd, "-w", "5", "-t", table, "-F", c)
			}
			for _, c := range added {
				if err := run(cmd, "-w", "5", "-t", table, "-X", c); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// unquoteRule removes the quotes iptables -S puts around a comment.
func unquoteRule(f []string) []string {
	out := make([]string, 0, len(f))
	for i := 0; i < len(f); i++ {
		a := f[i]
		if strings.HasPrefix(a, `"`) {
			parts := []string{a}
			for (len(a) < 2 || !strings.HasSuffix(a, `"`)) && i+1 < len(f) {
				i++
				a = f[i]
				parts = append(parts, a)
			}
			a = strings.Trim(strings.Join(parts, " "), `"`)
		}
		out = append(out, a)
	}
	return out
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
