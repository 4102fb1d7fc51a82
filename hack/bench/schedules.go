package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// schedules is the schedules phase (-phases schedules): -schedules
// schedules firing on the same minute (every run admitted, latency from
// the tick to the run seen created, the controller's requests per tick),
// then -idle-schedules schedules whose next tick is months away (the
// controller's requests/s and RSS, against its RSS with no schedule,
// measured in the same run).
func (b *bench) schedules(ctx context.Context) error {
	e, n, idle := b.e, b.o.schedules, b.o.idleSchedules
	const ns = "bench-schedules"
	logf("schedules: %d firing on one minute, then %d idle", n, idle)
	ctl, tr, inst, err := b.stage(ctx, ns, trackRuns)
	if err != nil {
		return err
	}
	defer ctl.stop()
	defer tr.stop()
	inst.Spec.Agents.Default.Model = "gpt-4o"
	if _, err := e.watchClient.SympoziumV1alpha1().SympoziumInstances(ns).Update(ctx, inst, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := waitQuiet(ctx, ctl, 5*time.Second, 5*time.Minute); err != nil {
		return err
	}
	mem0, err := ctl.memory()
	if err != nil {
		return err
	}
	sched := func(name, cron string, suspend bool) *v1alpha1.SympoziumSchedule {
		return &v1alpha1.SympoziumSchedule{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.SympoziumScheduleSpec{InstanceRef: instanceName, Schedule: cron, Task: "tick", Type: "scheduled",
				ConcurrencyPolicy: v1alpha1.ConcurrencyAllow, Suspend: suspend, IncludeMemory: new(false)}}
	}
	schedules := e.createRuns.SympoziumV1alpha1().SympoziumSchedules(ns)
	// Created suspended (a new schedule fires its creation minute's tick
	// at once), resumed before the minute M: resuming skips the ticks
	// missed, so all n fire at M and only at M.
	if err := createGated(ctx, 0, n, e.creators, nil, func(ctx context.Context, i int) error {
		_, err := schedules.Create(ctx, sched(fmt.Sprintf("tick-%05d", i), "* * * * *", true), metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	count := func(prefix string, ok func(*v1alpha1.SympoziumSchedule) bool) (int, error) {
		l, err := e.watchClient.SympoziumV1alpha1().SympoziumSchedules(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		c := 0
		for i := range l.Items {
			if len(l.Items[i].Name) > len(prefix) && l.Items[i].Name[:len(prefix)] == prefix && ok(&l.Items[i]) {
				c++
			}
		}
		return c, nil
	}
	if err := poll(ctx, 5*time.Minute, "every schedule Suspended", func() (bool, error) {
		c, err := count("tick-", func(s *v1alpha1.SympoziumSchedule) bool { return s.Status.Phase == v1alpha1.SchedulePhaseSuspended })
		return c == n, err
	}); err != nil {
		return err
	}
	// M: the first minute boundary at least 45 s away (time to resume n).
	m := time.Now().Add(45 * time.Second).Truncate(time.Minute).Add(time.Minute)
	if err := createGated(ctx, 0, n, e.creators, nil, func(ctx context.Context, i int) error {
		_, err := schedules.Patch(ctx, fmt.Sprintf("tick-%05d", i), types.MergePatchType, []byte(`{"spec":{"suspend":false}}`), metav1.PatchOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := poll(ctx, 5*time.Minute, "every schedule Active, next tick M", func() (bool, error) {
		c, err := count("tick-", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.Phase == v1alpha1.SchedulePhaseActive && s.Status.NextRunTime != nil && s.Status.NextRunTime.Time.Equal(m)
		})
		return c == n, err
	}); err != nil {
		return err
	}
	if time.Now().After(m.Add(-5 * time.Second)) {
		return fmt.Errorf("resuming %d schedules took past the minute %s: lower -schedules", n, m)
	}
	if err := waitQuiet(ctx, ctl, 3*time.Second, time.Until(m)); err != nil {
		return err
	}
	m0, err := ctl.scrape()
	if err != nil {
		return err
	}
	logf("schedules: waiting for the tick of %s", m.Format(time.TimeOnly))
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
	if err := poll(ctx, timeoutFor(n), "every tick's run admitted", func() (bool, error) {
		c, _ := seen(func(it *item) time.Time { return it.admitted })
		return c == n, nil
	}); err != nil {
		return err
	}
	_, created := seen(func(it *item) time.Time { return it.added })
	if err := poll(ctx, 5*time.Minute, "every schedule's status recorded the tick", func() (bool, error) {
		c, err := count("tick-", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.LastRunTime != nil && s.Status.LastRunTime.Time.Equal(m)
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
	b.add("6", fmt.Sprintf("schedules: %d firing on one minute, runs admitted", n), fmt.Sprintf("%d", n), fmt.Sprintf("%d", n), "each schedule's run seen with status.jobName")
	b.add("6", "schedules: tick → run seen created (p50 / p90 / p99 / max)", created.pcts(), "", "from the minute boundary to the tracker's watch seeing the run; the API server on the same machine")
	d := diffCounts(m1.apiCounts(), m0.apiCounts())
	total := 0.0
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if isWrite(k) && !isEvents(k) {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, d[k]/float64(n)))
		}
		total += d[k]
	}
	b.add("6", "schedules: controller requests per schedule per tick (all, of every controller)", fmt.Sprintf("%.2f", total/float64(n)),
		"", "writes: "+list(parts)+"; includes the run controller's writes for the runs (create, Job, status) until they finished; events apart in the total: none left out")

	// Idle: schedules whose next tick is months away (1 January), the
	// firing ones deleted first.
	if err := e.watchClient.SympoziumV1alpha1().SympoziumSchedules(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return err
	}
	if err := createGated(ctx, 0, idle, e.creators, nil, func(ctx context.Context, i int) error {
		_, err := schedules.Create(ctx, sched(fmt.Sprintf("idle-%05d", i), "0 0 1 1 *", false), metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := poll(ctx, 10*time.Minute, "every idle schedule Active", func() (bool, error) {
		c, err := count("idle-", func(s *v1alpha1.SympoziumSchedule) bool { return s.Status.Phase == v1alpha1.SchedulePhaseActive })
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
	b.add("6", fmt.Sprintf("schedules: API requests/s with %d idle schedules", idle), fmt.Sprintf("%.2f", idleReq/window.Seconds()), "0",
		fmt.Sprintf("over %s; %d schedules waiting on a timer", window, idle))
	b.add("6", fmt.Sprintf("schedules: controller RSS with %d idle schedules / with none", idle), fmt.Sprintf("%s / %s (%.2f×)", mib(mem1.rss), mib(mem0.rss), mem1.rss/mem0.rss),
		"", fmt.Sprintf("live heap after GC %s / %s (GODEBUG gctrace); same controller, same run", mib(mem1.live), mib(mem0.live)))
	return nil
}
