package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Goals of the memory rows (issue 15).
const (
	rssGoalAfterRuns    = 120 << 20
	rssGoalAfterRestart = 100 << 20
	// memoryFloor is the machine's available memory below which the
	// memory phase stops (guardMemory).
	memoryFloor = 2 << 30
)

// memory: finished runs (and, with cleanup keep, their Jobs and pods)
// accumulate in one namespace and instance, in the steps of -memory-runs.
// After each step: the controller's RSS, its CPU per run and sync durations
// of the step; then a restart: RSS, time to caches synced and the CPU the
// restart cost. Then pruning: runHistoryLimit lowered to the runs there are
// and -prune-runs more runs, each pushing the oldest out.
func (b *bench) memory(ctx context.Context, cleanup v1alpha1.CleanupPolicy) error {
	e := b.e
	if cleanup != v1alpha1.CleanupKeep && cleanup != v1alpha1.CleanupDelete {
		return fmt.Errorf("unknown cleanup %q", cleanup)
	}
	ns := "bench-memory-" + string(cleanup)
	var extra []string
	qpsNote := fmt.Sprintf("controller --kube-api-qps %g --kube-api-burst %d", b.o.qps, b.o.burst)
	if q := b.o.memoryQPS; q > 0 {
		extra = []string{"--kube-api-qps=" + strconv.FormatFloat(q, 'f', -1, 64), "--kube-api-burst=" + strconv.Itoa(int(2*q))}
		qpsNote = fmt.Sprintf("controller --kube-api-qps %g --kube-api-burst %d in this phase, so that the cluster, not the controller's client, bounds it (the burst keeps -qps)", q, int(2*q))
	}
	feed := "all created at once"
	if b.o.memoryWindow > 0 {
		feed = fmt.Sprintf("fed with at most %d unfinished at a time", b.o.memoryWindow)
	}
	logf("memory: steps %v, cleanup %s, %s", b.o.memorySteps, cleanup, feed)
	ctx, stopGuard := guardMemory(ctx, memoryFloor)
	defer stopGuard()
	// The benchmark follows the runs only: its own watch of 50,000 Jobs and
	// pods would take CPU from the cluster it measures.
	ctl, tr, inst, err := b.stage(ctx, ns, trackRuns, extra...)
	if err != nil {
		return err
	}
	defer func() { ctl.stop() }()
	defer tr.stop()
	if err := waitQuiet(ctx, ctl, 2*time.Second, time.Minute); err != nil {
		return err
	}
	spec := runSpec{simDuration: "0s", cleanup: cleanup}
	children := "runs, their Jobs and pods kept"
	if cleanup == v1alpha1.CleanupDelete {
		children = "runs kept, Jobs and pods deleted"
	}
	var gate func(int) bool
	if w := b.o.memoryWindow; w > 0 {
		gate = func(i int) bool {
			terminal, _, _, _ := tr.counts()
			return i-terminal < w
		}
	}
	prev := 0
	for _, total := range b.o.memorySteps {
		n := total - prev
		logf("memory: runs %d to %d (cleanup %s)", prev, total, cleanup)
		st, err := b.step(ctx, ctl, ns, func(ctx context.Context) error {
			if err := e.submitRange(ctx, ns, prev, total, spec, gate); err != nil {
				return err
			}
			if err := tr.waitFor(ctx, timeoutFor(n), "every run terminal", func(terminal, _, _, _ int) bool { return terminal >= total }); err != nil {
				return err
			}
			if cleanup == v1alpha1.CleanupDelete {
				return b.waitNoChildren(ctx, ns, timeoutFor(n))
			}
			return nil
		})
		if err != nil {
			return err
		}
		mem, err := ctl.memory()
		if err != nil {
			return err
		}
		b.add("3", fmt.Sprintf("memory, %d finished runs, cleanup %s: RSS", total, cleanup), mib(mem.rss), "≤ 120 MiB",
			fmt.Sprintf("%s; %s; Go heap (go_memstats_heap_alloc_bytes) %s, heap in use %s, live after the last GC (gctrace) %s; peak RSS (VmHWM) %s",
				verdict(mem.rss <= rssGoalAfterRuns), children, mib(mem.heapAlloc), mib(mem.heapInuse), mib(mem.live), mib(mem.hwm)))
		b.add("3", fmt.Sprintf("runs %d to %d: controller CPU per run", prev+1, total), fmt.Sprintf("%.1f ms", st.ctlCPU*1000/float64(n)),
			"", fmt.Sprintf("%d runs in %s (%.1f runs/s), %s; sync p50 / p99 of this step %s; %s, %s; %s",
				n, st.took.Round(time.Second), float64(n)/st.took.Seconds(), feed, st.syncs, qpsNote, st.peak, cpuNote(st.cpu, n)))
		db, health := e.clusterHealth(ctx)
		b.add("3", fmt.Sprintf("cluster with %d finished runs, cleanup %s", total, cleanup), db, "", health)
		logf("memory (%s, %d runs): RSS %s, heap %s, peak %s; %s, %s", cleanup, total, mib(mem.rss), mib(mem.heapAlloc), mib(mem.hwm), db, health)
		b.saveHeap(ctl, fmt.Sprintf("heap-%d-after-runs.pb.gz", total))

		// A restart lists everything at once: the footprint of a new leader.
		ctl.stop()
		ctl, err = e.startController(ctx, ns, extra...)
		if err != nil {
			return err
		}
		if err := waitQuiet(ctx, ctl, 10*time.Second, 10*time.Minute); err != nil {
			return err
		}
		restartCPU := cpuSeconds(ctl.pid())
		mem, err = ctl.memory()
		if err != nil {
			return err
		}
		m, err := ctl.scrape()
		if err != nil {
			return err
		}
		b.add("3", fmt.Sprintf("memory, %d finished runs, cleanup %s, after a restart: RSS", total, cleanup), mib(mem.rss), "≤ 100 MiB",
			fmt.Sprintf("%s; Go heap %s, heap in use %s, live after the last GC %s; peak RSS %s (initial list and sync)",
				verdict(mem.rss <= rssGoalAfterRestart), mib(mem.heapAlloc), mib(mem.heapInuse), mib(mem.live), mib(mem.hwm)))
		b.add("3", fmt.Sprintf("restart with %d finished runs: caches synced (readyz)", total), seconds(ctl.ready), "",
			fmt.Sprintf("controller CPU of the restart %.2f s (start to quiet: every object listed and synced once, %.0f syncs, %.0f API requests)",
				restartCPU, m.sum("sympozium_sync_total", nil), m.sum("sympozium_api_requests_total", nil)))
		b.saveHeap(ctl, fmt.Sprintf("heap-%d-after-restart.pb.gz", total))
		logf("memory (%s, %d runs) after restart: RSS %s, heap %s, peak %s, ready in %s, CPU %.2f s", cleanup, total, mib(mem.rss), mib(mem.heapAlloc), mib(mem.hwm), ctl.ready, restartCPU)
		prev = total
	}
	if b.o.pruneRuns > 0 {
		if err := b.prune(ctx, ctl, tr, inst, prev, spec); err != nil {
			return fmt.Errorf("pruning: %w", err)
		}
	}
	return nil
}

// saveHeap saves the controller's heap profile into -dir when
// -memory-profile asks for it, after the memory figures are read (the
// profile's forced collection would lower them).
func (b *bench) saveHeap(ctl *controller, name string) {
	if b.o.memoryProfile <= 0 {
		return
	}
	path := filepath.Join(b.e.dir, name)
	if err := ctl.heapProfile(path); err != nil {
		logf("heap profile: %v", err)
		return
	}
	logf("heap profile: %s", path)
}

// prune lowers the instance's runHistoryLimit to the total runs there are,
// then adds -prune-runs more: every run that finishes pushes the oldest
// finished run out. The controller's cost per run should stay what it is
// without pruning (O(changed), not O(history)).
func (b *bench) prune(ctx context.Context, ctl *controller, tr *tracker, inst *v1alpha1.SympoziumInstance, total int, spec runSpec) error {
	e, n, ns := b.e, b.o.pruneRuns, inst.Namespace
	logf("pruning: runHistoryLimit %d, %d more runs", total, n)
	cur, err := e.watchClient.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, inst.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Spec.RunHistoryLimit = new(int32(total))
	if _, err := e.watchClient.SympoziumV1alpha1().SympoziumInstances(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	if d := len(tr.deletions()); d != 0 {
		return fmt.Errorf("%d runs deleted by lowering runHistoryLimit to the number of runs", d)
	}
	gate := func(i int) bool {
		terminal, _, _, _ := tr.counts()
		return b.o.memoryWindow <= 0 || i-terminal < b.o.memoryWindow
	}
	st, err := b.step(ctx, ctl, ns, func(ctx context.Context) error {
		if err := e.submitRange(ctx, ns, total, total+n, spec, gate); err != nil {
			return err
		}
		if err := tr.waitFor(ctx, timeoutFor(n), "every run terminal", func(terminal, _, _, _ int) bool { return terminal >= total+n }); err != nil {
			return err
		}
		if err := poll(ctx, timeoutFor(n), fmt.Sprintf("%d runs pruned", n), func() (bool, error) { return len(tr.deletions()) >= n, nil }); err != nil {
			return err
		}
		// The garbage collector removes the pruned runs' Jobs and pods: the
		// controller sees those deletions too.
		pruned := tr.deletions()
		i := 0
		return poll(ctx, timeoutFor(n), "the pruned runs' Jobs gone", func() (bool, error) {
			for ; i < len(pruned); i++ {
				_, err := e.watchKube.BatchV1().Jobs(ns).Get(ctx, naming.JobName(pruned[i]), metav1.GetOptions{})
				if !apierrors.IsNotFound(err) {
					return false, nil
				}
			}
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	deletes := st.m1.apiCounts()["delete agentruns"] - st.m0.apiCounts()["delete agentruns"]
	pruned := tr.deletions()
	b.add("3", fmt.Sprintf("pruning: %d more runs past runHistoryLimit %d", n, total),
		fmt.Sprintf("%.1f ms CPU, %.2f deletes per run", st.ctlCPU*1000/float64(n), deletes/float64(n)), "",
		fmt.Sprintf("controller CPU and AgentRun deletes (its /metrics) per added run; %d runs pruned (first %s, last %s), their Jobs and pods garbage-collected; %s in all; sync p50 / p99 %s; %s",
			len(pruned), pruned[0], pruned[len(pruned)-1], st.took.Round(time.Second), st.syncs, cpuNote(st.cpu, n)))
	logf("pruning: %.1f ms controller CPU and %.2f deletes per run", st.ctlCPU*1000/float64(n), deletes/float64(n))
	return nil
}

// stepResult is what one step of the memory phase cost.
type stepResult struct {
	took   time.Duration // from the first create to quiet
	ctlCPU float64       // the controller's CPU seconds
	cpu    cpuSnapshot   // every component's
	syncs  string        // agentrun sync duration p50 / p99
	peak   string        // the controller's peak request rates
	m0, m1 metricSet
}

// watchPeakRate samples the controller's API requests every 5 s until the
// returned function is called, which reports the highest rate of each of
// its two rate-limited clients (client-go gives each clientset its own
// limiter): the sympozium one (AgentRuns, instances, SkillPacks) and the
// Kubernetes one (everything else). Near -qps, the client binds.
func watchPeakRate(ctx context.Context, ctl *controller) func() string {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var peakS, peakK float64
	split := func(m metricSet) (s, k float64) {
		for _, x := range m.match("sympozium_api_requests_total", nil) {
			switch x.labels["resource"] {
			case "agentruns", "sympoziuminstances", "skillpacks":
				s += x.value
			default:
				k += x.value
			}
		}
		return s, k
	}
	var lastS, lastK float64 = -1, -1
	var lastAt time.Time
	sample := func() {
		m, err := ctl.scrape()
		if err != nil {
			return
		}
		now := time.Now()
		s, k := split(m)
		if d := now.Sub(lastAt).Seconds(); lastS >= 0 && d >= 1 {
			peakS, peakK = max(peakS, (s-lastS)/d), max(peakK, (k-lastK)/d)
		}
		lastS, lastK, lastAt = s, k, now
	}
	go func() {
		defer close(done)
		for {
			sample()
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
	return func() string {
		cancel()
		<-done
		sample() // the last interval, however short the step
		return fmt.Sprintf("peak request rate over 5 s: %.0f/s sympozium client, %.0f/s Kubernetes client", peakS, peakK)
	}
}

// step runs work and measures it, from a quiet controller to a quiet
// controller.
func (b *bench) step(ctx context.Context, ctl *controller, ns string, work func(context.Context) error) (stepResult, error) {
	var r stepResult
	var err error
	if r.m0, err = ctl.scrape(); err != nil {
		return r, err
	}
	cpu0 := b.e.cpu(ctl)
	t0 := time.Now()
	peak := watchPeakRate(ctx, ctl)
	err = work(ctx)
	r.peak = peak()
	if err != nil {
		return r, err
	}
	if err := waitQuiet(ctx, ctl, 10*time.Second, 10*time.Minute); err != nil {
		return r, err
	}
	// The quiet wait itself is idle: it is not part of the step.
	r.took = time.Since(t0) - 10*time.Second
	r.cpu = b.e.cpu(ctl).minus(cpu0)
	r.ctlCPU = r.cpu["controller"]
	if r.m1, err = ctl.scrape(); err != nil {
		return r, err
	}
	sel := map[string]string{"controller": "agentrun"}
	sd := r.m1.histogram("sympozium_sync_duration_seconds", sel).minus(r.m0.histogram("sympozium_sync_duration_seconds", sel))
	r.syncs = "n/a"
	if sd.total() > 0 {
		r.syncs = fmt.Sprintf("%s / %s (%.0f syncs)", ms(time.Duration(sd.quantile(0.5)*float64(time.Second))), ms(time.Duration(sd.quantile(0.99)*float64(time.Second))), sd.total())
	}
	return r, nil
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}
