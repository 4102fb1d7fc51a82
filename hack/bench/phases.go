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

// burst: N runs created at once and carried through by the controller;
// then, in clean namespaces of the same cluster, the same N runs carried
// through by the lifecycle baseline (lifecycle.go) and N bare Jobs from
// client-go; writes per run; admission order; latencies.
func (b *bench) burst(ctx context.Context) error {
	e, n := b.e, b.o.runs
	const ns = "bench-burst"
	cleanup := v1alpha1.CleanupPolicy(b.o.burstCleanup)
	spec := runSpec{simDuration: "0s", cleanup: cleanup}
	logf("burst: %d AgentRuns (SIM_DURATION=0s, cleanup %s)", n, cleanup)
	ctl, tr, _, err := b.stage(ctx, ns, trackRuns|trackChildren)
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
	res, err := b.runAll(ctx, ns, n, spec, tr, func() cpuSnapshot { return e.cpu(ctl) })
	if err != nil {
		return err
	}
	logf("burst: created in %s, every Job in %s, every run terminal in %s (%d Succeeded)", res.created, res.allJobs, res.allDone, res.succeeded)

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

	// The lifecycle baseline: the same runs, carried through by the least
	// a client-go program must do.
	const lns = "bench-lifecycle"
	logf("lifecycle baseline: %d AgentRuns through a minimal client-go client (%d workers)", n, b.o.workers)
	if err := e.namespace(ctx, lns); err != nil {
		return err
	}
	inst, err := e.createInstance(ctx, lns)
	if err != nil {
		return err
	}
	ltr, err := e.track(ctx, lns, trackRuns|trackChildren)
	if err != nil {
		return err
	}
	defer ltr.stop()
	stopLifecycle, err := e.startLifecycle(ctx, lns, inst, b.o.workers)
	if err != nil {
		return err
	}
	defer stopLifecycle()
	lres, err := b.runAll(ctx, lns, n, spec, ltr, func() cpuSnapshot { return e.cpu(nil) })
	if err != nil {
		return err
	}
	if cleanup == v1alpha1.CleanupDelete {
		if err := b.waitNoChildren(ctx, lns, timeoutFor(n)); err != nil {
			return err
		}
	}
	stopLifecycle()
	ltr.stop()
	logf("lifecycle baseline: created in %s, every Job in %s, every run terminal in %s (%d Succeeded)", lres.created, lres.allJobs, lres.allDone, lres.succeeded)

	// The bare baseline: the same number of Jobs from a bare client-go program.
	const bns = "bench-baseline"
	logf("bare baseline: %d Jobs from client-go", n)
	if err := e.namespace(ctx, bns); err != nil {
		return err
	}
	btr, err := e.track(ctx, bns, trackChildren)
	if err != nil {
		return err
	}
	defer btr.stop()
	bcpu0 := e.cpu(nil)
	b0 := time.Now()
	err = createAll(ctx, n, e.creators, func(ctx context.Context, i int) error {
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
	logf("bare baseline: created in %s, every Job Complete in %s", bCreated, bDone)

	q := fmt.Sprintf("client QPS %g, burst %d, %d parallel creators; controller --kube-api-qps %g --kube-api-burst %d, %d workers", b.o.qps, b.o.burst, e.creators, b.o.qps, b.o.burst, b.o.workers)
	b.add("1", fmt.Sprintf("burst: %d AgentRuns created", n), seconds(res.created), "", q)
	b.add("1", "burst: every Job exists", seconds(res.allJobs), "", "from the first create; seen by a watch")
	b.add("1", "burst: every run Succeeded", seconds(res.allDone), "", fmt.Sprintf("%d/%d Succeeded; SIM_DURATION=0s, cleanup %s; %s", res.succeeded, n, cleanup, cpuNote(res.cpu, n)))
	b.add("1", fmt.Sprintf("baseline: lifecycle client, %d AgentRuns created", n), seconds(lres.created), "", "the same runs, creators and QPS in a clean namespace the controller does not watch, after the burst")
	b.add("1", "baseline: lifecycle client, every run Succeeded", seconds(lres.allDone), "", fmt.Sprintf("%d/%d Succeeded; a client-go program inside the benchmark (informers on AgentRuns and pods, a workqueue, %d workers, the controller's QPS and burst) "+
		"that only creates the Job the controller builds (workload.Job), writes Pending (jobName), Running, Succeeded and deletes the Job; %s; its own CPU is in the benchmark's share",
		lres.succeeded, n, b.o.workers, cpuNote(lres.cpu, n)))
	b.ratio("ratio burst / lifecycle baseline", res.allDone, lres.allDone, 1.25)
	b.add("1", fmt.Sprintf("baseline: %d bare Jobs created by client-go", n), seconds(bCreated), "", "same QPS/burst and creators, clean namespace, same cluster, after the lifecycle baseline")
	b.add("1", "baseline: every bare Job Complete", seconds(bDone), "", cpuNote(bcpu, n))
	b.ratio("ratio burst / bare Job baseline", res.allDone, bDone, 0)

	b.writes(n, ns, m0, m1)
	b.lifecycleWrites(n, lns)
	b.allClients(n, ns, lns, bns)
	b.admission(n, res, lres)
	b.latency(tr, m0, m1)
	return nil
}

// ratio adds a ratio row; goal 0 means informative, no goal.
func (b *bench) ratio(what string, x, y time.Duration, goal float64) {
	r := x.Seconds() / y.Seconds()
	if goal == 0 {
		b.add("1", what, fmt.Sprintf("%.2f×", r), "", "informative: a bare Job has no run object and no status writes")
		return
	}
	verdict := "met"
	if r > goal {
		verdict = "**missed**"
	}
	b.add("1", what, fmt.Sprintf("%.2f×", r), fmt.Sprintf("≤ %g×", goal), verdict)
}

// burstResult is what runAll measured of one burst of runs.
type burstResult struct {
	created, allJobs, allDone time.Duration // from the first create
	succeeded                 int
	cpu                       cpuSnapshot // from the first create to the last run terminal
	tr                        *tracker
}

// runAll creates n runs of spec in ns at once and waits until every one is
// terminal, as tr sees it.
func (b *bench) runAll(ctx context.Context, ns string, n int, spec runSpec, tr *tracker, cpu func() cpuSnapshot) (burstResult, error) {
	r := burstResult{tr: tr}
	cpu0 := cpu()
	t0 := time.Now()
	if err := b.e.submit(ctx, ns, n, spec); err != nil {
		return r, err
	}
	r.created = time.Since(t0)
	if err := tr.waitFor(ctx, timeoutFor(n), "every run terminal in "+ns, func(terminal, _, _, _ int) bool { return terminal >= n }); err != nil {
		return r, err
	}
	r.cpu = cpu().minus(cpu0)
	r.allJobs = tr.last(t0, func(it *item) time.Time { return it.jobSeen })
	r.allDone = tr.last(t0, func(it *item) time.Time { return it.done })
	tr.mu.Lock()
	for _, it := range tr.items {
		if it.phase == v1alpha1.PhaseSucceeded {
			r.succeeded++
		}
	}
	tr.mu.Unlock()
	return r, nil
}

// lifecycleWrites reports the lifecycle baseline's writes per run (audit log).
func (b *bench) lifecycleWrites(n int, ns string) {
	c, err := auditCounts(b.e.cluster.AuditLogPath(), func(ev *localcp.AuditEvent) bool {
		return ev.UserAgent == lifecycleUserAgent && ev.ObjectRef.Namespace == ns
	})
	if err != nil {
		logf("reading the audit log: %v", err)
	}
	total := 0.0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if isWrite(k) {
			total += c[k]
			parts = append(parts, fmt.Sprintf("%s %.2f", k, c[k]/float64(n)))
		}
	}
	b.add("2", "writes per run, lifecycle baseline", fmt.Sprintf("%.2f", total/float64(n)), "", fmt.Sprintf("audit log, user agent %s, namespace %s, every response code: %s", lifecycleUserAgent, ns, strings.Join(parts, ", ")))
}

// admission reports the order in which the burst's runs got their Jobs and
// how long they waited, against the time the client took to create them.
func (b *bench) admission(n int, res, lres burstResult) {
	const slack = time.Second
	order := func(r burstResult) (string, string) {
		k, worst := r.tr.inversions(slack)
		return fmt.Sprintf("%d of %d", k, n), ms(worst)
	}
	k, worst := order(res)
	lk, lworst := order(lres)
	b.add("5", "admission order: runs whose Job came more than 1 s after a younger run's", k, "",
		fmt.Sprintf("worst: a run got its Job %s after a run created after it; lifecycle baseline: %s, worst %s; creation and Job seen by the benchmark's watches", worst, lk, lworst))
	job := res.tr.latencies(func(it *item) time.Time { return it.added }, func(it *item) time.Time { return it.jobSeen })
	ljob := lres.tr.latencies(func(it *item) time.Time { return it.added }, func(it *item) time.Time { return it.jobSeen })
	p99, bound := job.quantile(0.99), time.Duration(1.2*float64(res.created))
	verdict := "met"
	if p99 > bound {
		verdict = "**missed**"
	}
	b.add("5", "admission: run created → Job exists, p50 / p99", fmt.Sprintf("%s / %s", ms(job.quantile(0.5)), ms(p99)), "p99 ≤ 1.2 × creation time",
		fmt.Sprintf("%s; the client created the %d runs in %s (1.2× = %s); lifecycle baseline %s / %s (creation %s)",
			verdict, n, seconds(res.created), seconds(bound), ms(ljob.quantile(0.5)), ms(ljob.quantile(0.99)), seconds(lres.created)))
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
	b.add("2", "event writes per run", per(events), "", fmt.Sprintf("%s; audit log: %s; the controller emits 3 per succeeded run (JobCreated, Started, Succeeded; 1 with --progress-events=false); what is missing was dropped by client-go's event broadcaster, whose single writer falls behind its 1000-event queue during a burst", strings.Join(evKeys, ", "), per(auditEvents)))
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
// of the burst, of the lifecycle baseline and per bare Job: the work the API
// server did.
func (b *bench) allClients(n int, ns, lns, bns string) {
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
		keys := slices.SortedFunc(maps.Keys(c), func(x, y string) int {
			if c := cmp.Compare(c[y], c[x]); c != 0 {
				return c
			}
			return cmp.Compare(x, y)
		})
		var parts []string
		for _, k := range keys {
			if isWrite(k) {
				parts = append(parts, fmt.Sprintf("%s %.2f", k, c[k]/float64(n)))
			}
		}
		return writes / float64(n), reads / float64(n), strings.Join(parts, ", ")
	}
	w, r, top := count(ns)
	lw, lr, ltop := count(lns)
	bw, br, btop := count(bns)
	b.add("2", "API requests per run, every client (audit log)", fmt.Sprintf("%.1f writes, %.1f reads", w, r), "", "burst namespace: "+top)
	b.add("2", "API requests per run of the lifecycle baseline, every client (audit log)", fmt.Sprintf("%.1f writes, %.1f reads", lw, lr), "", "lifecycle namespace: "+ltop)
	b.add("2", "API requests per bare Job, every client (audit log)", fmt.Sprintf("%.1f writes, %.1f reads", bw, br), "", "bare baseline namespace: "+btop)
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
	ctl, tr, _, err := b.stage(ctx, ns, trackRuns|trackChildren)
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

// stage prepares namespace ns for a workload of runs: the namespace, the
// runs' instance, a controller watching ns (with extra flags) and a tracker
// of what. The caller stops both.
func (b *bench) stage(ctx context.Context, ns string, what int, extra ...string) (*controller, *tracker, *v1alpha1.SympoziumInstance, error) {
	e := b.e
	if err := e.namespace(ctx, ns); err != nil {
		return nil, nil, nil, err
	}
	inst, err := e.createInstance(ctx, ns)
	if err != nil {
		return nil, nil, nil, err
	}
	ctl, err := e.startController(ctx, ns, extra...)
	if err != nil {
		return nil, nil, nil, err
	}
	tr, err := e.track(ctx, ns, what)
	if err != nil {
		ctl.stop()
		return nil, nil, nil, err
	}
	return ctl, tr, inst, nil
}

// submit creates n runs of spec in ns from the parallel creators.
func (e *env) submit(ctx context.Context, ns string, n int, spec runSpec) error {
	return e.submitRange(ctx, ns, 0, n, spec, nil)
}

// submitRange creates runs [from,to) of spec in ns from the parallel
// creators, each once gate(i) allows it (nil: at once).
func (e *env) submitRange(ctx context.Context, ns string, from, to int, spec runSpec, gate func(int) bool) error {
	return createGated(ctx, from, to, e.creators, gate, func(ctx context.Context, i int) error {
		_, err := e.createRuns.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, spec.run(ns, i), metav1.CreateOptions{})
		return err
	})
}
