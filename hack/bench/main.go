// Command bench measures the AgentRun controller on its own local control
// plane (hack/localcp, audit log on) and prints one Markdown table:
//
//  1. burst: N AgentRuns created at once until every run Succeeded, against
//     a lifecycle baseline (lifecycle.go: a client-go client of the
//     controller's shape and budget making only the lifecycle's writes on
//     the same N runs), a minimal client (minimal.go: the fewest requests a
//     run needs, with no client-side rate limit) and N bare Jobs, on the
//     same cluster; wall time and API-server CPU per run of each;
//  2. API writes per run, from the controller's /metrics and the audit log;
//  3. controller memory, CPU per run, restarts and pruning with many
//     finished runs (and their children) cached, in growing steps;
//  4. API requests per second while runs sit in Running and nothing changes;
//  5. admission order and latency from the triggering event to the status
//     write under the burst;
//  6. on one real node (hack/realnode, its own control plane, run first):
//     run created → agent started for cold runs and for warm runs (an
//     agent-sandbox warm pool), against bare Jobs of the same image
//     (realnode.go);
//  7. schedules (-phases schedules, not in the default): the controller's
//     requests/s and RSS with many idle SympoziumSchedules, then many firing
//     on the same minute: every run admitted, latency from the tick to the
//     run, requests per tick (schedules.go).
//
// Usage (from the repository root):
//
//	go run ./hack/bench -runs 100 -memory-runs 200,600 -prune-runs 100
//	go run ./hack/bench -runs 1000 -memory-runs 10000,50000 -update docs/bench.md
//	go run ./hack/bench -phases realnode -realnode-runs 20   # as root, on Linux
//	go run ./hack/bench -phases burst -baselines minimal -runs 300 -apiserver-profile
//
// Progress goes to stderr, the table to stdout (and, with -update, between
// the bench markers of the given file).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/manager"
)

type options struct {
	runs, steadyRuns, pruneRuns int
	memorySteps                 []int
	memoryWindow                int
	memoryQPS                   float64
	memoryCleanup, burstCleanup string
	steadyWindow                time.Duration
	qps                         float64
	burst, parallel, nodes      int
	workers                     int
	dir, phases, update         string
	controllerFlags, controller string
	keepCluster                 bool
	memoryProfile               int
	realNodeRuns                int
	schedules, idleSchedules    int
	baselines                   string
	apiserverProfile            bool
	rounds                      int
}

func main() {
	var o options
	var memoryRuns string
	flag.IntVar(&o.runs, "runs", 1000, "AgentRuns of the burst (and runs of the lifecycle baseline, Jobs of the bare baseline)")
	flag.StringVar(&memoryRuns, "memory-runs", "10000", "finished runs in the cluster for the memory measurement: a comma-separated list of growing totals, run in steps in one namespace and instance (\"10000,50000\": 10,000 runs, then 40,000 more); memory and a restart are measured after each step")
	flag.IntVar(&o.memoryWindow, "memory-window", 1000, "at most this many unfinished runs while the memory phase feeds its runs (finished work is what it measures); 0 creates them all at once")
	flag.Float64Var(&o.memoryQPS, "memory-controller-qps", 200, "the controller's --kube-api-qps in the memory phase (burst twice that), so that the cluster, not the controller's client, bounds how fast runs finish there; 0: -qps")
	flag.IntVar(&o.pruneRuns, "prune-runs", 1000, "after the memory steps, lower runHistoryLimit to the runs there are and add this many more (at most as many as there are), so that each pushes the oldest out; 0 skips it")
	flag.StringVar(&o.memoryCleanup, "memory-cleanup", "keep", "cleanup policies of the memory measurement: keep (runs, Jobs and pods stay), delete (runs only), or both (\"keep,delete\", each in its own namespace)")
	flag.StringVar(&o.burstCleanup, "burst-cleanup", "delete", "cleanup policy of the burst's runs: delete (the default of AgentRun) or keep (the Jobs stay, like the baseline's)")
	flag.IntVar(&o.steadyRuns, "steady-runs", 0, "runs held in Running for the steady-state measurement (0: -runs)")
	flag.DurationVar(&o.steadyWindow, "steady-window", 30*time.Second, "how long the steady state is measured")
	flag.Float64Var(&o.qps, "qps", 100, "client QPS of the creators, the baselines and the controller (--kube-api-qps)")
	flag.IntVar(&o.burst, "burst", 200, "client burst of the creators, the baselines and the controller (--kube-api-burst)")
	flag.IntVar(&o.parallel, "parallel", 16, "parallel creators")
	flag.IntVar(&o.nodes, "nodes", 0, "kwok nodes (0: enough for every pod at 900 pods a node)")
	flag.StringVar(&o.dir, "dir", "", "work directory (cluster, logs, audit log); empty: a new temporary directory, kept")
	flag.StringVar(&o.phases, "phases", "realnode,burst,steady,memory", "phases to run, of realnode, burst, steady, memory and schedules (always in this order: realnode on its own control plane and real node, stopped before the others start; the memory phase leaves the cluster largest; schedules is not in the default, run it alone: -phases schedules)")
	flag.StringVar(&o.baselines, "baselines", "lifecycle,minimal,bare", "the burst's baselines, of lifecycle (a client of the controller's shape, QPS and workers), minimal (the fewest requests a run needs, 8 workers, no client-side rate limit) and bare (bare Jobs); the burst alone against the minimal client: -phases burst -baselines minimal -runs 300")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the burst against the minimal client (with the minimal baseline): the first is the burst and baselines every other row is measured on; each further round runs a burst and the minimal client again in namespaces of their own, in alternating order; the ratio rows give each round and the median, which the goals are read on")
	flag.BoolVar(&o.apiserverProfile, "apiserver-profile", false, "save CPU profiles of the API server during the burst and each baseline into -dir (apiserver-<workload>-NN.pb.gz, 5 s each; go tool pprof -top apiserver-burst-*.pb.gz)")
	flag.IntVar(&o.realNodeRuns, "realnode-runs", 20, "runs of each kind (bare Job, cold run, warm run) of the realnode phase")
	flag.StringVar(&o.update, "update", "", "also write the table into this Markdown file, between its bench markers")
	flag.StringVar(&o.controllerFlags, "controller-flags", "", "extra controller flags, space-separated (e.g. \"--workers=32\"); a --workers here also sets the lifecycle baseline's workers")
	flag.StringVar(&o.controller, "controller-bin", "", "a prebuilt controller binary; empty: build ./cmd/sympozium-controller")
	flag.BoolVar(&o.keepCluster, "keep-cluster", false, "leave the control plane running at the end")
	flag.IntVar(&o.memoryProfile, "memory-profile", 0, "when positive: the controller runs with --profiling and this heap profile sampling rate in bytes (GODEBUG memprofilerate; the runtime's default is 524288), and the memory phase saves its heap profile after each step and each restart into -dir (heap-<runs>-after-runs.pb.gz, heap-<runs>-after-restart.pb.gz; go tool pprof -sample_index=inuse_space)")
	flag.IntVar(&o.schedules, "schedules", 1000, "schedules phase: schedules firing on the same minute")
	flag.IntVar(&o.idleSchedules, "idle-schedules", 10000, "schedules phase: idle schedules (next tick months away) for requests/s and RSS")
	flag.Parse()
	if o.burstCleanup != "delete" && o.burstCleanup != "keep" {
		fmt.Fprintln(os.Stderr, "-burst-cleanup must be delete or keep")
		os.Exit(2)
	}
	for bl := range strings.SplitSeq(o.baselines, ",") {
		if bl != "" && bl != "lifecycle" && bl != "minimal" && bl != "bare" {
			fmt.Fprintf(os.Stderr, "-baselines: unknown baseline %q (lifecycle, minimal, bare)\n", bl)
			os.Exit(2)
		}
	}
	if o.schedules < 1 || o.idleSchedules < 1 {
		fmt.Fprintln(os.Stderr, "-schedules and -idle-schedules must be at least 1")
		os.Exit(2)
	}
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "-rounds must be at least 1")
		os.Exit(2)
	}
	if o.realNodeRuns < 1 {
		fmt.Fprintln(os.Stderr, "-realnode-runs must be at least 1")
		os.Exit(2)
	}
	var err error
	if o.memorySteps, err = parseSteps(memoryRuns); err != nil {
		fmt.Fprintln(os.Stderr, "-memory-runs:", err)
		os.Exit(2)
	}
	if o.workers, err = controllerWorkers(o.controllerFlags); err != nil {
		fmt.Fprintln(os.Stderr, "-controller-flags:", err)
		os.Exit(2)
	}
	if last := o.memorySteps[len(o.memorySteps)-1]; o.pruneRuns > last {
		logf("-prune-runs %d capped at the %d runs of the last memory step", o.pruneRuns, last)
		o.pruneRuns = last
	}
	if o.steadyRuns == 0 {
		o.steadyRuns = o.runs
	}
	if o.nodes == 0 {
		o.nodes = max(2, (o.memoryPods()+(3+2*o.extraRounds())*o.runs+o.schedulePods()+899)/900)
	}
	logf("estimated duration on 2 cores: %s (%s)", o.estimate().Round(time.Minute), o.estimateNote())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b := &bench{o: o, started: time.Now()}
	err = b.run(ctx)
	if b.e != nil && b.e.cluster != nil && !o.keepCluster {
		if err := b.e.cluster.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}
	if err != nil {
		logf("FAILED: %v", err)
		os.Exit(1)
	}
}

// parseSteps parses -memory-runs: growing positive totals.
func parseSteps(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number of runs", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("totals must grow: %d after %d", n, out[len(out)-1])
		}
		out = append(out, n)
	}
	return out, nil
}

// controllerWorkers is the controller's --workers: the one in flags, else
// its default (pkg/manager DefaultConfig).
func controllerWorkers(flags string) (int, error) {
	w := manager.DefaultConfig().Workers
	fields := strings.Fields(flags)
	for i, f := range fields {
		name, val, hasVal := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if name != "workers" || !strings.HasPrefix(f, "-") {
			continue
		}
		if !hasVal && i+1 < len(fields) {
			val = fields[i+1]
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("bad --workers %q", val)
		}
		w = n
	}
	return w, nil
}

// schedulePods is the most pods the schedules phase makes (one run per
// firing schedule).
// extraRounds is how many rounds of the burst against the minimal client
// the burst phase runs after its first (none without the minimal baseline).
func (o options) extraRounds() int {
	if !o.baseline("minimal") {
		return 0
	}
	return o.rounds - 1
}

// baseline reports whether -baselines names the burst's baseline name.
func (o options) baseline(name string) bool {
	return slices.Contains(strings.Split(o.baselines, ","), name)
}

func (o options) schedulePods() int {
	if !slices.Contains(strings.Split(o.phases, ","), "schedules") {
		return 0
	}
	return o.schedules
}

// memoryPods is the most pods the memory phase leaves in the cluster.
func (o options) memoryPods() int {
	if !slices.Contains(strings.Split(o.phases, ","), "memory") || len(o.memorySteps) == 0 {
		return 0
	}
	return o.memorySteps[len(o.memorySteps)-1] + o.pruneRuns
}

// row is one line of the table.
type row struct{ id, what, value, goal, note string }

type bench struct {
	rev     string // git describe of the tree the controller is built from
	o       options
	e       *env
	rows    []row
	started time.Time
}

func (b *bench) add(id, what, value, goal, note string) {
	b.rows = append(b.rows, row{id, what, value, goal, note})
}

func (b *bench) phase(name string) bool { return slices.Contains(strings.Split(b.o.phases, ","), name) }

func (b *bench) run(ctx context.Context) error {
	var err error
	// The revision the controller is built from, named now: the tree may
	// move during an hour of benchmark.
	if root, err := repoRoot(); err == nil {
		git := exec.Command("git", "describe", "--always", "--dirty")
		git.Dir = root
		if o, err := git.Output(); err == nil {
			b.rev = strings.TrimSpace(string(o))
		}
	}
	if b.phase("realnode") {
		if err := b.realNode(ctx); err != nil {
			return fmt.Errorf("real node: %w", err)
		}
	}
	if !b.phase("burst") && !b.phase("steady") && !b.phase("schedules") && !b.phase("memory") {
		return b.print()
	}
	if b.e, err = setup(ctx, b.o); err != nil {
		return err
	}
	if b.phase("burst") {
		if err := b.burst(ctx); err != nil {
			return fmt.Errorf("burst: %w", err)
		}
	}
	if b.phase("steady") {
		if err := b.steady(ctx); err != nil {
			return fmt.Errorf("steady state: %w", err)
		}
	}
	if b.phase("schedules") {
		if err := b.schedules(ctx); err != nil {
			return fmt.Errorf("schedules: %w", err)
		}
	}
	if b.phase("memory") {
		for c := range strings.SplitSeq(b.o.memoryCleanup, ",") {
			if err := b.memory(ctx, v1alpha1.CleanupPolicy(strings.TrimSpace(c))); err != nil {
				// What was measured before stays in the table (a long
				// phase the machine's memory stopped is still worth its
				// first steps); the run fails after printing it.
				err = fmt.Errorf("memory (%s): %w", c, err)
				b.add("3", "memory phase stopped", "**failed**", "", strings.ReplaceAll(err.Error(), "|", "/"))
				if perr := b.print(); perr != nil {
					return errors.Join(err, perr)
				}
				return err
			}
		}
	}
	return b.print()
}

func (b *bench) print() error {
	var out bytes.Buffer
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	rev := b.rev
	if rev == "" {
		rev = "unknown revision"
	}
	var where []string
	if b.e != nil {
		where = append(where, fmt.Sprintf("hack/localcp, audit log on, %d kwok nodes", b.o.nodes))
	}
	if b.phase("realnode") {
		where = append(where, "one real node of hack/realnode (kubelet v1.37.2, containerd) for section 6")
	}
	fmt.Fprintf(&out, "Measured %s at %s on %d cores (%s), %s, kube v1.37.2 (%s); took %s.\n\n",
		b.started.UTC().Format("2006-01-02 15:04 MST"), rev, runtime.NumCPU(), cpu, runtime.Version(), strings.Join(where, "; "), time.Since(b.started).Round(time.Second))
	fmt.Fprintf(&out, "Command: `go run ./hack/bench %s`\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(&out, "| # | measurement | result | goal | notes |\n|---|---|---|---|---|\n")
	slices.SortStableFunc(b.rows, func(x, y row) int { return strings.Compare(x.id, y.id) })
	for _, r := range b.rows {
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s |\n", r.id, r.what, r.value, r.goal, r.note)
	}
	if _, err := io.Copy(os.Stdout, bytes.NewReader(out.Bytes())); err != nil {
		return err
	}
	if b.o.update != "" {
		return updateFile(b.o.update, out.String())
	}
	return nil
}

const (
	beginMarker = "<!-- bench:begin (generated by hack/bench; everything up to the end marker is replaced) -->"
	endMarker   = "<!-- bench:end -->"
)

// updateFile replaces what lies between the markers of path with table,
// keeping the rest of the file; a file without markers gets them appended.
func updateFile(path, table string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(data)
	block := beginMarker + "\n" + table + endMarker
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(endMarker):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// waitQuiet waits until the controller has sent no API request, synced
// nothing and queued nothing for quiet, so that what is measured next starts
// from rest (after a restart: once the initial sync of every object is over).
func waitQuiet(ctx context.Context, ctl *controller, quiet, timeout time.Duration) error {
	var last float64 = -1
	since := time.Now()
	return poll(ctx, timeout, "controller quiet", func() (bool, error) {
		m, err := ctl.scrape()
		if err != nil {
			return false, err
		}
		n := m.sum("sympozium_api_requests_total", nil) + m.sum("workqueue_adds_total", nil) + m.sum("workqueue_depth", nil)
		if n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= quiet, nil
	})
}

// waitNoChildren waits until the namespace holds no Job and no Pod.
func (b *bench) waitNoChildren(ctx context.Context, ns string, timeout time.Duration) error {
	return poll(ctx, timeout, "Jobs and pods of "+ns+" gone", func() (bool, error) {
		jobs, err := b.e.watchKube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return false, nil
		}
		pods, err := b.e.watchKube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return false, nil
		}
		return len(jobs.Items) == 0 && len(pods.Items) == 0, nil
	})
}

// timeoutFor is a generous bound for n runs on a slow machine.
func timeoutFor(n int) time.Duration { return 5*time.Minute + time.Duration(n)*300*time.Millisecond }

func cpuNote(d cpuSnapshot, n int) string {
	per := func(k string) float64 { return d[k] * 1000 / float64(n) }
	total, ours := 0.0, 0.0
	for k, v := range d {
		if k != "machine" {
			ours += v
			if k != "bench" {
				total += v
			}
		}
	}
	return fmt.Sprintf("CPU %.0f ms/run: apiserver %.0f, etcd %.0f, kcm %.0f, scheduler %.0f, kwok %.0f, controller %.0f (the benchmark's own watches %.0f; other processes on the machine %.0f)",
		total*1000/float64(n), per("kube-apiserver"), per("etcd"), per("kube-controller-manager"), per("kube-scheduler"), per("kwok"), per("controller"), per("bench"),
		max(0, d["machine"]-ours)*1000/float64(n))
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// Wall-clock costs on a quiet 2-core machine, from the benchmark's own
// runs (docs/bench.md, and the runs of 1,500 to 4,000 finished runs that
// calibrated the memory phase): what estimate adds up. Only a forecast,
// printed up front so that nobody starts an hour-long run by mistake; a
// busy machine takes longer.
const (
	setupCost       = time.Minute           // build the controller, start the control plane
	burstPerRun     = 85 * time.Millisecond // burst, cleanup delete
	lifecyclePerRun = 65 * time.Millisecond // lifecycle baseline
	minimalPerRun   = 45 * time.Millisecond // minimal client (issue 26: 1.4–1.8× faster than the burst)
	barePerRun      = 45 * time.Millisecond // bare Job baseline
	steadyPerRun    = 30 * time.Millisecond // runs to Running
	keepPerRun      = 60 * time.Millisecond // memory phase, cleanup keep
	deletePerRun    = 80 * time.Millisecond // memory phase, cleanup delete
	restartPerRun   = time.Millisecond      // a restart, per run listed
	phaseOverhead   = 30 * time.Second      // quiet waits, namespaces, restarts
	pruneExtra      = 20 * time.Millisecond // per pruned run, on top of the run
	auditPerRun     = 2 * time.Millisecond  // reading the audit log, per run in the cluster
	realNodeSetup   = 2 * time.Minute       // control plane, node, agent-sandbox (all cached)
	realNodePerTurn = 15 * time.Second      // a bare Job, a cold and a warm run, one at a time
	// The schedules phase: creating an idle schedule and its first status
	// write (both at -qps 100), deleting it; creating a firing one and
	// its run's lifecycle after the tick (about 12 requests at the
	// controller's QPS); the lead before the tick plus the wait for the
	// minute boundary. Forecast from the creates and writes at -qps and a
	// run of -schedules 50 -idle-schedules 300 on a loaded machine.
	idleSchedulePerSchedule   = 25 * time.Millisecond
	firingSchedulePerSchedule = 200 * time.Millisecond
	firingScheduleLead        = 2 * time.Minute
)

// estimate forecasts the run's duration from the costs above.
func (o options) estimate() time.Duration {
	phase := func(p string) bool { return slices.Contains(strings.Split(o.phases, ","), p) }
	per := func(n int, d time.Duration) time.Duration { return time.Duration(n) * d }
	var t time.Duration
	if phase("realnode") {
		t += realNodeSetup + time.Duration(o.realNodeRuns)*realNodePerTurn
	}
	if phase("burst") || phase("steady") || phase("schedules") || phase("memory") {
		t += setupCost
	}
	if phase("burst") {
		t += per(o.runs, burstPerRun) + phaseOverhead + per(o.runs, auditPerRun)
		for bl, cost := range map[string]time.Duration{"lifecycle": lifecyclePerRun, "minimal": minimalPerRun, "bare": barePerRun} {
			if o.baseline(bl) {
				t += per(o.runs, cost+auditPerRun) + phaseOverhead
			}
		}
		t += time.Duration(o.extraRounds()) * (per(o.runs, burstPerRun+minimalPerRun) + 2*phaseOverhead)
	}
	if phase("steady") {
		t += per(o.steadyRuns, steadyPerRun) + o.steadyWindow + phaseOverhead
	}
	if phase("schedules") {
		t += per(o.idleSchedules, idleSchedulePerSchedule) + o.steadyWindow + per(o.schedules, firingSchedulePerSchedule) +
			firingScheduleLead + 2*phaseOverhead
	}
	if phase("memory") && len(o.memorySteps) > 0 {
		for c := range strings.SplitSeq(o.memoryCleanup, ",") {
			cost := keepPerRun
			if strings.TrimSpace(c) == string(v1alpha1.CleanupDelete) {
				cost = deletePerRun
			}
			for _, total := range o.memorySteps {
				t += 2*phaseOverhead + per(total, restartPerRun)
			}
			t += per(o.memorySteps[len(o.memorySteps)-1]+o.pruneRuns, cost) + per(o.pruneRuns, pruneExtra) + phaseOverhead
		}
	}
	return t
}

func (o options) estimateNote() string {
	phase := func(p string) bool { return slices.Contains(strings.Split(o.phases, ","), p) }
	var parts []string
	if phase("realnode") {
		parts = append(parts, fmt.Sprintf("%d turns on the real node", o.realNodeRuns))
	}
	if phase("burst") {
		parts = append(parts, fmt.Sprintf("%d-run burst and baselines %s", o.runs, o.baselines))
		if x := o.extraRounds(); x > 0 {
			parts = append(parts, fmt.Sprintf("%d more rounds of the burst and the minimal client", x))
		}
	}
	if phase("steady") {
		parts = append(parts, fmt.Sprintf("%d runs held Running", o.steadyRuns))
	}
	if phase("schedules") {
		parts = append(parts, fmt.Sprintf("%d idle schedules, %d firing on one minute", o.idleSchedules, o.schedules))
	}
	if phase("memory") {
		parts = append(parts, fmt.Sprintf("memory steps %v with cleanup %s, %d pruned", o.memorySteps, o.memoryCleanup, o.pruneRuns))
	}
	return strings.Join(parts, ", ")
}
