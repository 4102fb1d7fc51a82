package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The label that tells the phase's two groups of schedules apart (lists
// and deletes select on it).
const benchGroup = "bench.sympozium.ai/group"

// schedules is the schedules phase (-phases schedules), section 7:
//
//  1. -idle-schedules schedules whose next tick is months away: the
//     controller's API requests/s over -steady-window, and its RSS against
//     its RSS with no schedule (measured first, same controller);
//  2. those deleted, -schedules schedules whose one tick is the same minute
//     M: every run admitted, the latency from M to each run seen created,
//     the controller's requests per schedule for the tick.
//
// The idle part comes first so that the burst of runs of the second leaves
// no heap behind in the RSS it reports.
func (b *bench) schedules(ctx context.Context) error {
	e, n, idle := b.e, b.o.schedules, b.o.idleSchedules
	const ns = "bench-schedules"
	logf("schedules: %d idle, then %d firing on one minute", idle, n)
	ctl, tr, _, err := b.stage(ctx, ns, trackRuns)
	if err != nil {
		return err
	}
	defer ctl.stop()
	defer tr.stop()
	// The model the runs take from the instance (a patch: the controller
	// writes the instance too).
	if _, err := e.watchClient.SympoziumV1alpha1().SympoziumInstances(ns).Patch(ctx, instanceName, types.MergePatchType,
		[]byte(`{"spec":{"agents":{"default":{"model":"gpt-4o"}}}}`), metav1.PatchOptions{}); err != nil {
		return err
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	mem0, err := ctl.memory()
	if err != nil {
		return err
	}
	sched := func(group, name, cron string) *v1alpha1.SympoziumSchedule {
		return &v1alpha1.SympoziumSchedule{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{benchGroup: group}},
			Spec: v1alpha1.SympoziumScheduleSpec{InstanceRef: instanceName, Schedule: cron, Task: "tick", Type: "scheduled",
				ConcurrencyPolicy: v1alpha1.ConcurrencyAllow, IncludeMemory: new(false)}}
	}
	schedules := e.createRuns.SympoziumV1alpha1().SympoziumSchedules(ns)
	// count lists a group's schedules (at most every 2 s: a list of 10,000
	// is no small request, and the API server is on the machine measured)
	// and counts those ok accepts.
	count := func(group string, ok func(*v1alpha1.SympoziumSchedule) bool) (int, error) {
		l, err := e.watchClient.SympoziumV1alpha1().SympoziumSchedules(ns).List(ctx, metav1.ListOptions{LabelSelector: benchGroup + "=" + group})
		if err != nil {
			return 0, err
		}
		c := 0
		for i := range l.Items {
			if ok(&l.Items[i]) {
				c++
			}
		}
		return c, nil
	}

	// 1. Idle.
	idleCron := idleCron(time.Now())
	if err := createGated(ctx, 0, idle, e.creators, nil, func(ctx context.Context, i int) error {
		_, err := schedules.Create(ctx, sched("idle", fmt.Sprintf("idle-%05d", i), idleCron), metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := pollEvery(ctx, 10*time.Minute, 2*time.Second, "every idle schedule Active", func() (bool, error) {
		c, err := count("idle", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.Phase == v1alpha1.SchedulePhaseActive && s.Status.NextRunTime != nil
		})
		return c == idle, err
	}); err != nil {
		return err
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	i0, err := ctl.scrape()
	if err != nil {
		return err
	}
	window := b.o.steadyWindow
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	i1, err := ctl.scrape()
	if err != nil {
		return err
	}
	idleReq := 0.0
	for _, v := range diffCounts(i1.apiCounts(), i0.apiCounts()) {
		idleReq += v
	}
	mem1, err := ctl.memory()
	if err != nil {
		return err
	}
	b.add("7", fmt.Sprintf("schedules: API requests/s with %d idle schedules", idle), fmt.Sprintf("%.2f", idleReq/window.Seconds()), "0",
		fmt.Sprintf("the controller's, over %s; each schedule waits on a timer for %q", window, idleCron))
	b.add("7", fmt.Sprintf("schedules: controller RSS with %d idle schedules / with none", idle), fmt.Sprintf("%s / %s (%.2f×)", mib(mem1.rss), mib(mem0.rss), mem1.rss/mem0.rss),
		"", fmt.Sprintf("live heap after GC %s / %s (GODEBUG gctrace); same controller, same run", mib(mem1.live), mib(mem0.live)))

	if err := e.watchClient.SympoziumV1alpha1().SympoziumSchedules(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: benchGroup + "=idle"}); err != nil {
		return err
	}
	if err := pollEvery(ctx, 5*time.Minute, 2*time.Second, "idle schedules deleted", func() (bool, error) {
		c, err := count("idle", func(*v1alpha1.SympoziumSchedule) bool { return true })
		return c == 0, err
	}); err != nil {
		return err
	}

	// 2. Firing: n schedules whose only tick (in a year) is the minute M,
	// far enough ahead to create them all and let the controller settle.
	lead := 30*time.Second + time.Duration(n)*40*time.Millisecond
	m := time.Now().UTC().Add(lead).Truncate(time.Minute).Add(time.Minute)
	cron := minuteCron(m)
	logf("schedules: %d schedules %q, ticking at %s", n, cron, m.Local().Format(time.TimeOnly))
	if err := createGated(ctx, 0, n, e.creators, nil, func(ctx context.Context, i int) error {
		_, err := schedules.Create(ctx, sched("tick", fmt.Sprintf("tick-%05d", i), cron), metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := pollEvery(ctx, time.Until(m), time.Second, "every schedule Active, next tick M", func() (bool, error) {
		c, err := count("tick", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.Phase == v1alpha1.SchedulePhaseActive && s.Status.NextRunTime != nil && s.Status.NextRunTime.Time.Equal(m)
		})
		return c == n, err
	}); err != nil {
		return fmt.Errorf("%w (the schedules were not all ready before their tick: lower -schedules)", err)
	}
	if err := waitQuiet(ctx, ctl, 3*time.Second, time.Until(m.Add(-time.Second))); err != nil {
		return fmt.Errorf("%w (before the tick)", err)
	}
	if time.Now().After(m.Add(-time.Second)) {
		return fmt.Errorf("the controller settled only %s before the tick: lower -schedules", time.Until(m))
	}
	m0, err := ctl.scrape()
	if err != nil {
		return err
	}
	logf("schedules: waiting for the tick of %s", m.Local().Format(time.TimeOnly))
	runName := func(i int) string { return fmt.Sprintf("tick-%05d-1", i) }
	seen := func(f func(*item) time.Time) (int, durations) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		var d durations
		for i := range n {
			if it, ok := tr.items[runName(i)]; ok && !f(it).IsZero() {
				d = append(d, f(it).Sub(m))
			}
		}
		return len(d), d
	}
	if err := poll(ctx, time.Until(m)+timeoutFor(n), "every tick's run admitted", func() (bool, error) {
		c, _ := seen(func(it *item) time.Time { return it.admitted })
		return c == n, nil
	}); err != nil {
		c, _ := seen(func(it *item) time.Time { return it.admitted })
		return fmt.Errorf("%w: %d of %d", err, c, n)
	}
	_, created := seen(func(it *item) time.Time { return it.added })
	_, admitted := seen(func(it *item) time.Time { return it.admitted })
	if err := pollEvery(ctx, 5*time.Minute, time.Second, "every schedule's status recorded the tick", func() (bool, error) {
		c, err := count("tick", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.LastRunTime != nil && s.Status.LastRunTime.Time.Equal(m) && s.Status.TotalRuns == 1
		})
		return c == n, err
	}); err != nil {
		return err
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	m1, err := ctl.scrape()
	if err != nil {
		return err
	}
	runs, err := e.watchClient.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	b.add("7", fmt.Sprintf("schedules: %d firing on one minute, runs admitted", n), fmt.Sprintf("%d", n), fmt.Sprintf("%d", n),
		fmt.Sprintf("each schedule's run seen with status.jobName; %d runs in the namespace (one per schedule)", len(runs.Items)))
	b.add("7", "schedules: tick → run seen created (p50 / p90 / p99 / max)", created.pcts()+" / "+ms(slices.Max(created)), "",
		fmt.Sprintf("from the minute boundary to the tracker's watch seeing the run; → admitted (status.jobName): %s / %s; the API server on the same machine",
			admitted.pcts(), ms(slices.Max(admitted))))
	d := diffCounts(m1.apiCounts(), m0.apiCounts())
	total, own := 0.0, 0.0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		total += d[k]
		// The schedule controller's own: its schedules, the run it creates
		// (and the memory ConfigMap it reads, none here).
		if strings.Contains(k, " sympoziumschedules") || k == "create agentruns" {
			own += d[k]
		}
		if isWrite(k) {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, d[k]/float64(n)))
		}
	}
	b.add("7", "schedules: controller requests per schedule for its tick (all / the schedule's own)", fmt.Sprintf("%.2f / %.2f", total/float64(n), own/float64(n)),
		"", "all: every controller, the run's lifecycle included (its Job, status, cleanup) until it finished; own: requests on sympoziumschedules and the run's create; writes: "+strings.TrimPrefix(list(parts), " "))
	return nil
}

// idleCron is the schedule of the idle schedules created at now: midnight
// UTC of the first of the month five months on, so that the next tick is
// months away and none lies in the 24 hours before creation either (a new
// schedule fires a tick of that day, as sympozium's does).
func idleCron(now time.Time) string {
	return fmt.Sprintf("0 0 1 %d *", (int(now.UTC().Month())+4)%12+1)
}

// minuteCron is a schedule (UTC) whose only tick in a year is the minute m.
func minuteCron(m time.Time) string {
	m = m.UTC()
	return fmt.Sprintf("%d %d %d %d *", m.Minute(), m.Hour(), m.Day(), int(m.Month()))
}
