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
	stopProfile := b.profileAPIServer(ctx, "burst")
	res, err := b.runAll(ctx, ns, n, tr, func() cpuSnapshot { return e.cpu(ctl) }, func(ctx context.Context) error { return e.submit(ctx, ns, n, spec) })
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
	stopProfile()
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	m1, err := ctl.scrape()
	if err != nil {
		return err
	}
	tr.stop()
	ctl.stop()
	q := fmt.Sprintf("client QPS %g, burst %d, %d parallel creators; controller --kube-api-qps %g --kube-api-burst %d, %d workers", b.o.qps, b.o.burst, e.creators, b.o.qps, b.o.burst, b.o.workers)
	b.add("1", fmt.Sprintf("burst: %d AgentRuns created", n), seconds(res.created), "", q)
	b.add("1", "burst: every Job exists", seconds(res.allJobs), "", "from the first create; seen by a watch")
	b.add("1", "burst: every run Succeeded", seconds(res.allDone), "", fmt.Sprintf("%d/%d Succeeded; SIM_DURATION=0s, cleanup %s; %s", res.succeeded, n, cleanup, cpuNote(res.cpu, n)))
	b.writes(n, ns, m0, m1)
	b.apiTime(n, "burst", res)
	b.latency(tr, m0, m1)
	namespaces := []string{ns}

	// The lifecycle baseline: the same runs, carried through by the least
	// a client-go program of the controller's shape and budget must do.
	var lres *burstResult
	if b.baseline("lifecycle") {
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
		stopProfile := b.profileAPIServer(ctx, "lifecycle")
		r, err := b.runAll(ctx, lns, n, ltr, func() cpuSnapshot { return e.cpu(nil) }, func(ctx context.Context) error { return e.submit(ctx, lns, n, spec) })
		if err != nil {
			return err
		}
		lres = &r
		if cleanup == v1alpha1.CleanupDelete {
			if err := b.waitNoChildren(ctx, lns, timeoutFor(n)); err != nil {
				return err
			}
		}
		stopProfile()
		stopLifecycle()
		ltr.stop()
		logf("lifecycle baseline: created in %s, every Job in %s, every run terminal in %s (%d Succeeded)", lres.created, lres.allJobs, lres.allDone, lres.succeeded)
		b.add("1", fmt.Sprintf("baseline: lifecycle client, %d AgentRuns created", n), seconds(lres.created), "", "the same runs, creators and QPS in a clean namespace the controller does not watch, after the burst")
		b.add("1", "baseline: lifecycle client, every run Succeeded", seconds(lres.allDone), "", fmt.Sprintf("%d/%d Succeeded; a client-go program inside the benchmark (informers on AgentRuns and pods, a workqueue, %d workers, the controller's QPS and burst) "+
			"that only creates the Job the controller builds (workload.Job), writes Pending (jobName), Running, Succeeded and deletes the Job; %s; its own CPU is in the benchmark's share",
			lres.succeeded, n, b.o.workers, cpuNote(lres.cpu, n)))
		b.ratio("ratio burst / lifecycle baseline", res.allDone, lres.allDone, 1.25, "")
		b.clientWrites(n, lns, lifecycleUserAgent, "writes per run, lifecycle baseline")
		b.apiTime(n, "lifecycle baseline", *lres)
		namespaces = append(namespaces, lns)
	}

	// The minimal client: the fewest requests a run needs, from a client
	// with no budget of its own.
	var mres *burstResult
	if b.baseline("minimal") {
		const mns = "bench-minimal"
		r, err := b.minimalRound(ctx, mns, n, spec, true)
		if err != nil {
			return err
		}
		mres = &r
		b.add("1", "baseline: minimal client, every run Succeeded", seconds(mres.allDone), "", fmt.Sprintf("%d/%d Succeeded; a client-go program inside the benchmark with no client-side rate limit and %d workers "+
			"that creates each run itself, then its Job (workload.Job), writes Pending (jobName), and once its pod informer shows the agent terminated writes Succeeded and deletes the Job: no run informer, no Running, conditions or events (hack/bench/minimal.go); "+
			"runs created in %s; %s; its own CPU is in the benchmark's share",
			mres.succeeded, n, minimalWorkers, seconds(mres.created), cpuNote(mres.cpu, n)))
		b.clientWrites(n, mns, minimalUserAgent, "writes per run, minimal client")
		b.apiTime(n, "minimal client", *mres)
		namespaces = append(namespaces, mns)
	}

	// The bare baseline: the same number of Jobs from a bare client-go program.
	if b.baseline("bare") {
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
		b.add("1", fmt.Sprintf("baseline: %d bare Jobs created by client-go", n), seconds(bCreated), "", "same QPS/burst and creators, clean namespace, same cluster, after the other baselines")
		b.add("1", "baseline: every bare Job Complete", seconds(bDone), "", cpuNote(bcpu, n))
		b.ratio("ratio burst / bare Job baseline", res.allDone, bDone, 0, "informative: a bare Job has no run object and no status writes")
		namespaces = append(namespaces, bns)
	}

	// Further rounds of the burst against the minimal client, each in
	// fresh namespaces and in alternating order, after everything else so
	// that the rows above stay those of the first round.
	if mres != nil {
		rounds := []round{{burst: res, minimal: *mres}}
		for k := 2; k <= b.o.rounds; k++ {
			r, err := b.extraRound(ctx, k, n, spec)
			if err != nil {
				return fmt.Errorf("round %d: %w", k, err)
			}
			rounds = append(rounds, r)
		}
		b.roundRatios(n, rounds, lres)
	}

	b.allClients(n, namespaces)
	b.admission(n, res, lres)
	return nil
}

// round is one burst and one minimal client run of the same runs.
type round struct {
	burst, minimal burstResult
	minimalFirst   bool
}

// extraRound runs round k (from 2): the burst and the minimal client in
// namespaces of their own, the minimal client first in even rounds so
// that neither always meets the cluster the other left.
func (b *bench) extraRound(ctx context.Context, k, n int, spec runSpec) (round, error) {
	r := round{minimalFirst: k%2 == 0}
	bns, mns := fmt.Sprintf("bench-burst-%d", k), fmt.Sprintf("bench-minimal-%d", k)
	runBurst := func() (err error) {
		logf("round %d: burst of %d AgentRuns", k, n)
		r.burst, err = b.burstRound(ctx, bns, n, spec)
		return err
	}
	runMinimal := func() (err error) {
		r.minimal, err = b.minimalRound(ctx, mns, n, spec, false)
		return err
	}
	order := []func() error{runBurst, runMinimal}
	if r.minimalFirst {
		order = []func() error{runMinimal, runBurst}
	}
	for _, f := range order {
		if err := f(); err != nil {
			return r, err
		}
	}
	logf("round %d: burst %s, minimal client %s (%.2f×)", k, seconds(r.burst.allDone), seconds(r.minimal.allDone), r.burst.allDone.Seconds()/r.minimal.allDone.Seconds())
	return r, nil
}

// burstRound is a burst without the first round's measurements around it:
// a controller for ns, n runs created at once, every run terminal and, with
// cleanup delete, every child gone.
func (b *bench) burstRound(ctx context.Context, ns string, n int, spec runSpec) (burstResult, error) {
	e := b.e
	ctl, tr, _, err := b.stage(ctx, ns, trackRuns|trackChildren)
	if err != nil {
		return burstResult{}, err
	}
	defer ctl.stop()
	defer tr.stop()
	if err := waitQuiet(ctx, ctl, 2*time.Second, time.Minute); err != nil {
		return burstResult{}, err
	}
	res, err := b.runAll(ctx, ns, n, tr, func() cpuSnapshot { return e.cpu(ctl) }, func(ctx context.Context) error { return e.submit(ctx, ns, n, spec) })
	if err != nil {
		return res, err
	}
	if spec.cleanup == v1alpha1.CleanupDelete {
		if err := b.waitNoChildren(ctx, ns, timeoutFor(n)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// minimalRound carries n runs of spec through the minimal client in the
// new namespace ns (with an API-server profile when profile is set) and
// waits, with cleanup delete, until every child is gone.
func (b *bench) minimalRound(ctx context.Context, ns string, n int, spec runSpec, profile bool) (burstResult, error) {
	e := b.e
	logf("minimal client: %d AgentRuns created and carried through by %d unthrottled workers in %s", n, minimalWorkers, ns)
	if err := e.namespace(ctx, ns); err != nil {
		return burstResult{}, err
	}
	inst, err := e.createInstance(ctx, ns)
	if err != nil {
		return burstResult{}, err
	}
	mtr, err := e.track(ctx, ns, trackRuns|trackChildren)
	if err != nil {
		return burstResult{}, err
	}
	defer mtr.stop()
	submit, stopMinimal, err := e.runMinimal(ctx, ns, inst, spec)
	if err != nil {
		return burstResult{}, err
	}
	defer stopMinimal()
	stopProfile := func() {}
	if profile {
		stopProfile = b.profileAPIServer(ctx, "minimal")
	}
	defer stopProfile()
	res, err := b.runAll(ctx, ns, n, mtr, func() cpuSnapshot { return e.cpu(nil) }, func(ctx context.Context) error { return submit(ctx, n) })
	if err != nil {
		return res, err
	}
	if spec.cleanup == v1alpha1.CleanupDelete {
		if err := b.waitNoChildren(ctx, ns, timeoutFor(n)); err != nil {
			return res, err
		}
	}
	logf("minimal client: created in %s, every Job in %s, every run terminal in %s (%d Succeeded)", res.created, res.allJobs, res.allDone, res.succeeded)
	return res, nil
}

// baseline reports whether -baselines names the burst's baseline name.
func (b *bench) baseline(name string) bool { return b.o.baseline(name) }

// roundRatios reports the burst against the minimal client over every
// round: the wall time from the first create to the last run terminal, and
// the API server's CPU per run in the same window. One round on a 2-core
// machine swings by a fifth either way (docs/bench.md section 8), so the
// goal is read on the median of the rounds; each round is in the note.
func (b *bench) roundRatios(n int, rounds []round, lres *burstResult) {
	apiCPU := func(r burstResult) float64 { return r.cpu["kube-apiserver"] * 1000 / float64(n) }
	var wall, cpu []float64
	var wallNotes, cpuNotes []string
	for i, r := range rounds {
		order := "burst first"
		if r.minimalFirst {
			order = "minimal first"
		}
		w := r.burst.allDone.Seconds() / r.minimal.allDone.Seconds()
		c := apiCPU(r.burst) / apiCPU(r.minimal)
		wall, cpu = append(wall, w), append(cpu, c)
		wallNotes = append(wallNotes, fmt.Sprintf("%d: %.2f× (%s / %s, %s)", i+1, w, seconds(r.burst.allDone), seconds(r.minimal.allDone), order))
		cpuNotes = append(cpuNotes, fmt.Sprintf("%d: %.2f× (%.1f / %.1f ms)", i+1, c, apiCPU(r.burst), apiCPU(r.minimal)))
	}
	of := fmt.Sprintf("median of %d rounds", len(rounds))
	if len(rounds) == 1 {
		of = "one round (-rounds 1)"
	}
	mw, mc := median(wall), median(cpu)
	b.add("1", "ratio burst / minimal client", fmt.Sprintf("%.2f×", mw), "≤ 1.2×", fmt.Sprintf("%s; %s, every run Succeeded: %s", verdict(mw <= 1.2), of, strings.Join(wallNotes, ", ")))
	note := fmt.Sprintf("%s; %s, kube-apiserver CPU from the first create to the last run terminal, burst / minimal client: %s", verdict(mc <= 1.3), of, strings.Join(cpuNotes, ", "))
	if lres != nil {
		first := apiCPU(rounds[0].minimal)
		note += fmt.Sprintf("; lifecycle client (round 1) %.1f ms (%.2f× the minimal client's)", apiCPU(*lres), apiCPU(*lres)/first)
	}
	b.add("1", "ratio API-server CPU per run, burst / minimal client", fmt.Sprintf("%.2f×", mc), "≤ 1.3×", note)
}

// median of xs (the mean of the middle two when there is an even number);
// xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratio adds a ratio row; goal 0 means informative, no goal.
func (b *bench) ratio(what string, x, y time.Duration, goal float64, note string) {
	r := x.Seconds() / y.Seconds()
	if goal == 0 {
		b.add("1", what, fmt.Sprintf("%.2f×", r), "", note)
		return
	}
	b.add("1", what, fmt.Sprintf("%.2f×", r), fmt.Sprintf("≤ %g×", goal), verdict(r <= goal))
}

// burstResult is what runAll measured of one burst of runs.
type burstResult struct {
	created, allJobs, allDone time.Duration // from the first create
	succeeded                 int
	cpu                       cpuSnapshot // from the first create to the last run terminal
	api                       apiTimes    // the API server's request time, same window
	tr                        *tracker
}

// runAll submits n runs in ns at once (submit returns once every run was
// created) and waits until every one is terminal, as tr sees it.
func (b *bench) runAll(ctx context.Context, ns string, n int, tr *tracker, cpu func() cpuSnapshot, submit func(context.Context) error) (burstResult, error) {
	r := burstResult{tr: tr}
	api0 := b.e.apiserverTimes(ctx)
	cpu0 := cpu()
	t0 := time.Now()
	if err := submit(ctx); err != nil {
		return r, err
	}
	r.created = time.Since(t0)
	if err := tr.waitFor(ctx, timeoutFor(n), "every run terminal in "+ns, func(terminal, _, _, _ int) bool { return terminal >= n }); err != nil {
		return r, err
	}
	r.cpu = cpu().minus(cpu0)
	r.api = b.e.apiserverTimes(ctx).minus(api0)
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

// clientWrites reports a baseline client's writes per run (audit log).
func (b *bench) clientWrites(n int, ns, userAgent, what string) {
	c, err := auditCounts(b.e.cluster.AuditLogPath(), func(ev *localcp.AuditEvent) bool {
		return ev.UserAgent == userAgent && ev.ObjectRef.Namespace == ns
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
	b.add("2", what, fmt.Sprintf("%.2f", total/float64(n)), "", fmt.Sprintf("audit log, user agent %s, namespace %s, every response code: %s", userAgent, ns, strings.Join(parts, ", ")))
}

// admission reports the order in which the burst's runs got their Jobs and
// how long they waited, against the time the client took to create them.
func (b *bench) admission(n int, res burstResult, lres *burstResult) {
	const slack = time.Second
	order := func(r burstResult) (string, string) {
		k, worst := r.tr.inversions(slack)
		return fmt.Sprintf("%d of %d", k, n), ms(worst)
	}
	k, worst := order(res)
	note := fmt.Sprintf("worst: a run got its Job %s after a run created after it", worst)
	if lres != nil {
		lk, lworst := order(*lres)
		note += fmt.Sprintf("; lifecycle baseline: %s, worst %s", lk, lworst)
	}
	b.add("5", "admission order: runs whose Job came more than 1 s after a younger run's", k, "", note+"; creation and Job seen by the benchmark's watches")
	job := res.tr.latencies(func(it *item) time.Time { return it.added }, func(it *item) time.Time { return it.jobSeen })
	p99, bound := job.quantile(0.99), time.Duration(1.2*float64(res.created))
	verdict := "met"
	if p99 > bound {
		verdict = "**missed**"
	}
	note = fmt.Sprintf("%s; the client created the %d runs in %s (1.2× = %s)", verdict, n, seconds(res.created), seconds(bound))
	if lres != nil {
		ljob := lres.tr.latencies(func(it *item) time.Time { return it.added }, func(it *item) time.Time { return it.jobSeen })
		note += fmt.Sprintf("; lifecycle baseline %s / %s (creation %s)", ms(ljob.quantile(0.5)), ms(ljob.quantile(0.99)), seconds(lres.created))
	}
	b.add("5", "admission: run created → Job exists, p50 / p99", fmt.Sprintf("%s / %s", ms(job.quantile(0.5)), ms(p99)), "p99 ≤ 1.2 × creation time", note)
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
// in each namespace of the burst and its baselines: the work the API server
// did.
func (b *bench) allClients(n int, namespaces []string) {
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
	for _, ns := range namespaces {
		w, r, top := count(ns)
		b.add("2", "API requests per run in "+ns+", every client (audit log)", fmt.Sprintf("%.1f writes, %.1f reads", w, r), "", top)
	}
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
