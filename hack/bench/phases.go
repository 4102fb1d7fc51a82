package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
)

// burst: N runs created at once, then the bare client-go baseline of N Jobs
// in a clean namespace of the same cluster; writes per run; latencies.
func (b *bench) burst(ctx context.Context) error {
	e, n := b.e, b.o.runs
	const ns = "bench-burst"
	cleanup := v1alpha1.CleanupPolicy(b.o.burstCleanup)
	logf("burst: %d AgentRuns (SIM_DURATION=0s, cleanup %s)", n, cleanup)
	ctl, tr, err := b.stage(ctx, ns)
	if err != nil {
		return err
	}
	defer ctl.stop()
	defer tr.stop()
	if err := waitQuiet(ctx, ctl, 2*time.Second, time.Minute); err != nil {
		return err
	}
	idle, err := ctl.memory()
	if err != nil {
		return err
	}
	b.add("3", "memory, no runs (idle controller): RSS", mib(idle.rss), "", fmt.Sprintf("Go heap %s, heap in use %s, live after the last GC %s: the floor under the figures below",
		mib(idle.heapAlloc), mib(idle.heapInuse), mib(idle.live)))
	m0, err := ctl.scrape()
	if err != nil {
		return err
	}
	cpu0 := e.cpu(ctl)
	spec := runSpec{simDuration: "0s", cleanup: cleanup}
	t0 := time.Now()
	err = e.submit(ctx, ns, n, spec)
	if err != nil {
		return err
	}
	created := time.Since(t0)
	if err := tr.waitFor(ctx, timeoutFor(n), "every run terminal", func(terminal, _, _, _ int) bool { return terminal >= n }); err != nil {
		return err
	}
	cpuDone := e.cpu(ctl)
	allJobs := tr.last(t0, func(it *item) time.Time { return it.jobSeen })
	allDone := tr.last(t0, func(it *item) time.Time { return it.done })
	succeeded := 0
	tr.mu.Lock()
	for _, it := range tr.items {
		if it.phase == v1alpha1.PhaseSucceeded {
			succeeded++
		}
	}
	tr.mu.Unlock()
	logf("burst: created in %s, every Job in %s, every run terminal in %s (%d Succeeded)", created, allJobs, allDone, succeeded)

	// Cleanup (Job deletes, garbage collection of the pods) is part of the
	// writes per run: wait until it is over and the controller is quiet.
	if cleanup == v1alpha1.CleanupDelete {
		if err := b.waitNoChildren(ctx, ns, timeoutFor(n)); err != nil {
			return err
		}
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	m1, err := ctl.scrape()
	if err != nil {
		return err
	}
	tr.stop()
	ctl.stop()

	// The baseline: the same number of Jobs from a bare client-go program.
	const bns = "bench-baseline"
	logf("baseline: %d Jobs from client-go", n)
	if err := e.namespace(ctx, bns); err != nil {
		return err
	}
	btr, err := e.track(ctx, bns, false)
	if err != nil {
		return err
	}
	defer btr.stop()
	bcpu0 := e.cpu(nil)
	b0 := time.Now()
	err = createAll(ctx, n, e.workers, func(ctx context.Context, i int) error {
		_, err := e.createKube.BatchV1().Jobs(bns).Create(ctx, baselineJob(bns, i), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	bCreated := time.Since(b0)
	if err := btr.waitFor(ctx, timeoutFor(n), "every baseline Job Complete", func(_, _, _, complete int) bool { return complete >= n }); err != nil {
		return err
	}
	bcpu := e.cpu(nil).minus(bcpu0)
	bDone := btr.last(b0, func(it *item) time.Time { return it.done })
	logf("baseline: created in %s, every Job Complete in %s", bCreated, bDone)

	ratio := allDone.Seconds() / bDone.Seconds()
	verdict := "met"
	if ratio > 1.15 {
		verdict = "**missed**"
	}
	q := fmt.Sprintf("client QPS %g, burst %d, %d parallel creators; controller --kube-api-qps %g --kube-api-burst %d", b.o.qps, b.o.burst, e.workers, b.o.qps, b.o.burst)
	b.add("1", fmt.Sprintf("burst: %d AgentRuns created", n), seconds(created), "", q)
	b.add("1", "burst: every Job exists", seconds(allJobs), "", "from the first create; seen by a watch")
	b.add("1", "burst: every run Succeeded", seconds(allDone), "", fmt.Sprintf("%d/%d Succeeded; SIM_DURATION=0s, cleanup %s; %s", succeeded, n, cleanup, cpuNote(cpuDone.minus(cpu0), n)))
	b.add("1", fmt.Sprintf("baseline: %d Jobs created by client-go", n), seconds(bCreated), "", "same QPS/burst and creators, clean namespace, same cluster, after the burst")
	b.add("1", "baseline: every Job Complete", seconds(bDone), "", cpuNote(bcpu, n))
	b.add("1", "ratio burst / baseline", fmt.Sprintf("%.2f×", ratio), "≤ 1.15×", verdict)

	b.writes(n, ns, m0, m1)
	b.allClients(n, ns, bns)
	b.latency(tr, m0, m1)
	return nil
}

// writes reports the API writes per run from /metrics and the audit log.
func (b *bench) writes(n int, ns string, m0, m1 metricSet) {
	fromMetrics := diffCounts(m1.apiCounts(), m0.apiCounts())
	fromAudit, err := auditCounts(b.e.cluster.AuditLogPath(), func(ev *localcp.AuditEvent) bool {
		return ev.UserAgent == "sympozium-controller" && ev.ObjectRef.Namespace == ns
	})
	if err != nil {
		logf("reading the audit log: %v", err)
	}
	keys := slices.Sorted(maps.Keys(fromMetrics))
	for k := range fromAudit {
		if _, ok := fromMetrics[k]; !ok && isWrite(k) {
			keys = append(keys, k)
		}
	}
	per := func(v float64) string { return fmt.Sprintf("%.2f", v/float64(n)) }
	var total, auditTotal, events, auditEvents float64
	for _, k := range keys {
		if !isWrite(k) {
			continue
		}
		if isEvents(k) {
			events += fromMetrics[k]
			auditEvents += fromAudit[k]
			continue
		}
		total += fromMetrics[k]
		auditTotal += fromAudit[k]
		b.add("2", "writes per run: "+k, per(fromMetrics[k]), "", fmt.Sprintf("audit log: %s", per(fromAudit[k])))
	}
	verdict := "met"
	if total/float64(n) > 5 {
		verdict = "**missed**"
	}
	b.add("2", "writes per run, total (events apart)", per(total), "≤ 5", fmt.Sprintf("%s; audit log: %s (user agent sympozium-controller, namespace %s, every response code)", verdict, per(auditTotal), ns))
	var evKeys []string
	for _, k := range keys {
		if isWrite(k) && isEvents(k) {
			evKeys = append(evKeys, fmt.Sprintf("%s %s", k, per(fromMetrics[k])))
		}
	}
	b.add("2", "event writes per run", per(events), "", fmt.Sprintf("%s; audit log: %s; the controller emits 1 per succeeded run (Succeeded; 3 with --progress-events: "+
		"JobCreated, Started, Succeeded); what is missing was dropped by client-go's event broadcaster, whose single writer falls behind its 1000-event queue during a burst", strings.Join(evKeys, ", "), per(auditEvents)))
	conflicts := m1.sum("sympozium_api_requests_total", map[string]string{"code": "409"}) - m0.sum("sympozium_api_requests_total", map[string]string{"code": "409"})
	var reads []string
	readTotal := 0.0
	for _, k := range slices.Sorted(maps.Keys(fromMetrics)) {
		if !isWrite(k) {
			reads = append(reads, fmt.Sprintf("%s %.0f", k, fromMetrics[k]))
			readTotal += fromMetrics[k]
		}
	}
	if len(reads) == 0 {
		reads = []string{"none"}
	}
	b.add("2", "reads per run (gets, lists, watches)", per(readTotal), "", fmt.Sprintf("in all: %s; conflicts (409) in all: %.0f", strings.Join(reads, ", "), conflicts))
}

// allClients compares the API requests of every client (audit log) per run
// of the burst and per Job of the baseline: the work the API server did.
func (b *bench) allClients(n int, ns, bns string) {
	count := func(ns string) (writes, reads float64, top string) {
		c, err := auditCounts(b.e.cluster.AuditLogPath(), func(ev *localcp.AuditEvent) bool { return ev.ObjectRef.Namespace == ns })
		if err != nil {
			logf("reading the audit log: %v", err)
		}
		for k, v := range c {
			if isWrite(k) {
				writes += v
			} else {
				reads += v
			}
		}
		keys := slices.SortedFunc(maps.Keys(c), func(x, y string) int { return cmp.Compare(c[y], c[x]) })
		var parts []string
		for _, k := range keys {
			if isWrite(k) {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, c[k]/float64(n)))
			}
		}
		return writes / float64(n), reads / float64(n), strings.Join(parts, ", ")
	}
	w, r, top := count(ns)
	bw, br, btop := count(bns)
	b.add("2", "API requests per run, every client (audit log)", fmt.Sprintf("%.1f writes, %.1f reads", w, r), "", "burst namespace: "+top)
	b.add("2", "API requests per baseline Job, every client (audit log)", fmt.Sprintf("%.1f writes, %.1f reads", bw, br), "", "baseline namespace: "+btop)
}

// latency reports event-to-status latencies seen from outside and the
// controller's own queue and sync histograms.
func (b *bench) latency(tr *tracker, m0, m1 metricSet) {
	adm := tr.latencies(func(it *item) time.Time { return it.added }, func(it *item) time.Time { return it.admitted })
	job := tr.latencies(func(it *item) time.Time { return it.added }, func(it *item) time.Time { return it.jobSeen })
	run := tr.latencies(func(it *item) time.Time { return it.podRunning }, func(it *item) time.Time { return it.running })
	done := tr.latencies(func(it *item) time.Time { return it.podDone }, func(it *item) time.Time { return it.done })
	const how = "p50 / p90 / p99, seen by a watch in the benchmark"
	b.add("5", "latency: run created → Job exists", job.pcts(), "", how)
	b.add("5", "latency: run created → status admitted (Pending, jobName)", adm.pcts(), "", how)
	b.add("5", "latency: agent running → status Running", run.pcts(), "", fmt.Sprintf("%s; %d runs went through a written Running", how, len(run)))
	b.add("5", "latency: agent terminated → status Succeeded", done.pcts(), "", how)
	qd := m1.histogram("workqueue_queue_duration_seconds", map[string]string{"name": "agentrun"}).minus(m0.histogram("workqueue_queue_duration_seconds", map[string]string{"name": "agentrun"}))
	sd := m1.histogram("sympozium_sync_duration_seconds", map[string]string{"controller": "agentrun"}).minus(m0.histogram("sympozium_sync_duration_seconds", map[string]string{"controller": "agentrun"}))
	b.add("5", "controller: time in queue (workqueue_queue_duration_seconds)", histPcts(qd), "", fmt.Sprintf("%.0f syncs; decade buckets: only the bucket is exact", qd.total()))
	b.add("5", "controller: sync duration (sympozium_sync_duration_seconds)", histPcts(sd), "", "interpolated in ×2 buckets")
}

func histPcts(h histogram) string {
	if h.total() == 0 {
		return "n/a"
	}
	var parts []string
	for _, q := range []float64{0.5, 0.9, 0.99} {
		parts = append(parts, ms(time.Duration(h.quantile(q)*float64(time.Second))))
	}
	return strings.Join(parts, " / ")
}

// steady: runs held in Running; the controller's API requests per second
// while nothing changes.
func (b *bench) steady(ctx context.Context) error {
	e, n := b.e, b.o.steadyRuns
	const ns = "bench-steady"
	logf("steady state: %d runs held in Running (SIM_DURATION=1h)", n)
	ctl, tr, err := b.stage(ctx, ns)
	if err != nil {
		return err
	}
	defer ctl.stop()
	defer tr.stop()
	spec := runSpec{simDuration: "1h", timeout: 2 * time.Hour}
	err = e.submit(ctx, ns, n, spec)
	if err != nil {
		return err
	}
	if err := tr.waitFor(ctx, timeoutFor(n), "every run Running", func(_, running, _, _ int) bool { return running >= n }); err != nil {
		return err
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	m0, err := ctl.scrape()
	if err != nil {
		return err
	}
	c0 := cpuSeconds(ctl.pid())
	logf("steady state: measuring for %s", b.o.steadyWindow)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.o.steadyWindow):
	}
	m1, err := ctl.scrape()
	if err != nil {
		return err
	}
	cpu := cpuSeconds(ctl.pid()) - c0
	d := diffCounts(m1.apiCounts(), m0.apiCounts())
	total := 0.0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		total += d[k]
		parts = append(parts, fmt.Sprintf("%s %.0f", k, d[k]))
	}
	syncs := m1.sum("sympozium_sync_total", nil) - m0.sum("sympozium_sync_total", nil)
	w := b.o.steadyWindow.Seconds()
	note := fmt.Sprintf("over %s: %.0f requests%s; %.0f syncs; controller CPU %.1f ms/s", b.o.steadyWindow, total, list(parts), syncs, cpu*1000/w)
	b.add("4", fmt.Sprintf("steady state: API requests/s with %d runs Running", n), fmt.Sprintf("%.2f", total/w), "≈ 0", note)
	return nil
}

func list(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// memory: the controller with m finished runs (and, with cleanup keep, their
// Jobs and pods) in its namespace.
func (b *bench) memory(ctx context.Context, cleanup v1alpha1.CleanupPolicy) error {
	e, n := b.e, b.o.memoryRuns
	if cleanup != v1alpha1.CleanupKeep && cleanup != v1alpha1.CleanupDelete {
		return fmt.Errorf("unknown cleanup %q", cleanup)
	}
	ns := "bench-memory-" + string(cleanup)
	logf("memory: %d finished runs, cleanup %s", n, cleanup)
	ctl, tr, err := b.stage(ctx, ns)
	if err != nil {
		return err
	}
	defer ctl.stop()
	defer tr.stop()
	spec := runSpec{simDuration: "0s", cleanup: cleanup}
	t0 := time.Now()
	err = e.submit(ctx, ns, n, spec)
	if err != nil {
		return err
	}
	if err := tr.waitFor(ctx, timeoutFor(n), "every run terminal", func(terminal, _, _, _ int) bool { return terminal >= n }); err != nil {
		return err
	}
	took := time.Since(t0)
	tr.stop()
	if cleanup == v1alpha1.CleanupDelete {
		if err := b.waitNoChildren(ctx, ns, timeoutFor(n)); err != nil {
			return err
		}
	}
	if err := waitQuiet(ctx, ctl, 10*time.Second, 10*time.Minute); err != nil {
		return err
	}
	mem, err := ctl.memory()
	if err != nil {
		return err
	}
	children := "runs, their Jobs and pods kept"
	if cleanup == v1alpha1.CleanupDelete {
		children = "runs kept, Jobs and pods deleted"
	}
	verdict := func(m memory) string {
		if m.rss > 100<<20 {
			return "**missed**"
		}
		return "met"
	}
	b.add("3", fmt.Sprintf("memory, %d finished runs, cleanup %s: RSS", n, cleanup), mib(mem.rss), "≤ 100 MiB",
		fmt.Sprintf("%s; %s; Go heap (go_memstats_heap_alloc_bytes) %s, heap in use %s, live after the last GC (gctrace) %s; peak RSS (VmHWM) %s during the %s it took to run them",
			verdict(mem), children, mib(mem.heapAlloc), mib(mem.heapInuse), mib(mem.live), mib(mem.hwm), took.Round(time.Second)))
	logf("memory (%s): RSS %s, heap %s, peak %s", cleanup, mib(mem.rss), mib(mem.heapAlloc), mib(mem.hwm))

	// A restart lists everything at once: the footprint of a new leader.
	ctl.stop()
	ctl, err = e.startController(ctx, ns)
	if err != nil {
		return err
	}
	defer ctl.stop()
	if err := waitQuiet(ctx, ctl, 10*time.Second, 10*time.Minute); err != nil {
		return err
	}
	mem, err = ctl.memory()
	if err != nil {
		return err
	}
	b.add("3", fmt.Sprintf("memory, %d finished runs, cleanup %s, after a restart: RSS", n, cleanup), mib(mem.rss), "≤ 100 MiB",
		fmt.Sprintf("%s; Go heap %s, heap in use %s, live after the last GC %s; peak RSS %s (initial list and sync)", verdict(mem), mib(mem.heapAlloc), mib(mem.heapInuse), mib(mem.live), mib(mem.hwm)))
	logf("memory (%s) after restart: RSS %s, heap %s, peak %s", cleanup, mib(mem.rss), mib(mem.heapAlloc), mib(mem.hwm))
	return nil
}

// stage prepares namespace ns for a workload of runs: the namespace, the
// runs' instance, a controller watching ns and a tracker of its runs. The
// caller stops both.
func (b *bench) stage(ctx context.Context, ns string) (*controller, *tracker, error) {
	e := b.e
	if err := e.namespace(ctx, ns); err != nil {
		return nil, nil, err
	}
	if err := e.createInstance(ctx, ns); err != nil {
		return nil, nil, err
	}
	ctl, err := e.startController(ctx, ns)
	if err != nil {
		return nil, nil, err
	}
	tr, err := e.track(ctx, ns, true)
	if err != nil {
		ctl.stop()
		return nil, nil, err
	}
	return ctl, tr, nil
}

// submit creates n runs of spec in ns from the parallel creators.
func (e *env) submit(ctx context.Context, ns string, n int, spec runSpec) error {
	return createAll(ctx, n, e.workers, func(ctx context.Context, i int) error {
		_, err := e.createRuns.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, spec.run(ns, i), metav1.CreateOptions{})
		return err
	})
}
