package e2e

// SympoziumSchedules on the real API server, with real minute ticks. The
// subtests run in parallel, each in its own namespace with its own
// controller, so the suite waits for at most two minute boundaries in all
// (the tick subtest's second run and the SIGKILL subtest's next tick);
// the outage subtest needs no boundary at all: it writes the status an
// outage leaves (last tick handled five minutes ago) before its controller
// starts.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/schedule"
)

func scheduleYAML(ns, name, cron, policy string, extra string) string {
	return fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SympoziumSchedule
metadata: {name: %s, namespace: %s}
spec:
  instanceRef: inst
  schedule: %q
  task: check in
  type: heartbeat
  concurrencyPolicy: %s
%s`, name, ns, cron, policy, extra)
}

const scheduleInstanceYAML = `apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata: {name: inst, namespace: %s}
spec:
  agents: {default: {model: gpt-4o}}
  authRefs: [{provider: openai, secret: inst-openai-key}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: inst-memory, namespace: %[1]s}
data: {MEMORY.md: "- the user likes tea"}
`

func (e *env) getSchedule(t *testing.T, ns, name string) *v1alpha1.SympoziumSchedule {
	t.Helper()
	s, err := e.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return s
}

func (e *env) waitSchedule(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*v1alpha1.SympoziumSchedule) bool) *v1alpha1.SympoziumSchedule {
	t.Helper()
	var last *v1alpha1.SympoziumSchedule
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := e.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = s
		return cond(s), nil
	})
	require.NoError(t, err, "schedule %s/%s: %s not reached within %s; last status %+v", ns, name, what, timeout, last)
	return last
}

func (e *env) scheduleEvents(t *testing.T, ns, name string) []corev1.Event {
	t.Helper()
	l, err := e.kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	require.NoError(t, err)
	return l.Items
}

func (e *env) waitScheduleEvent(t *testing.T, ns, name, reason string) corev1.Event {
	t.Helper()
	var found corev1.Event
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		for _, ev := range e.scheduleEvents(t, ns, name) {
			if ev.Reason == reason && ev.InvolvedObject.Kind == "SympoziumSchedule" {
				found = ev
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "no %s event on schedule %s/%s", reason, ns, name)
	return found
}

// runsByTick lists the runs of schedule sched by their tick annotation.
func (e *env) runsByTick(t *testing.T, ns, sched string) map[string][]string {
	t.Helper()
	l, err := e.client.SympoziumV1alpha1().AgentRuns(ns).List(context.Background(), metav1.ListOptions{LabelSelector: schedule.LabelSchedule + "=" + sched})
	require.NoError(t, err)
	out := map[string][]string{}
	for _, r := range l.Items {
		tick := r.Annotations[schedule.AnnotationScheduledAt]
		out[tick] = append(out[tick], r.Name)
	}
	return out
}

// labelForSchedule makes run a run of schedule sched, as another creator
// would label it.
func (e *env) labelForSchedule(t *testing.T, ns, run, sched string) {
	t.Helper()
	e.kubectl(t, "label", "agentrun", run, "-n", ns, schedule.LabelSchedule+"="+sched)
}

// minute is the minute of t, as the cron ticks.
func minute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// byTick bounds a wait by the schedule: until tick, then slack (the
// controller's work once the tick is there).
func byTick(tick time.Time, slack time.Duration) time.Duration {
	return max(time.Until(tick), 0) + slack
}

// runTick is the tick run was created for (its annotation).
func runTick(t *testing.T, r *v1alpha1.AgentRun) time.Time {
	t.Helper()
	tick, err := time.Parse(time.RFC3339, r.Annotations[schedule.AnnotationScheduledAt])
	require.NoError(t, err, "run %s: tick annotation", r.Name)
	return tick
}

func TestSchedules(t *testing.T) {
	e := requireE2E(t)

	// A tick creates the run as sympozium builds it; the next minute's
	// tick creates the next one; Forbid with a run going (made by someone
	// else) skips the tick; Replace cancels the going run and creates its
	// own. One controller, one namespace.
	t.Run("ticks", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t, nil)
		e.apply(t, fmt.Sprintf(scheduleInstanceYAML, ns))
		// The runs of other creators exist before their schedules.
		e.apply(t, runYAML(ns, "going-f", "inst", map[string]string{"SIM_DURATION": "1h"}, ""))
		e.labelForSchedule(t, ns, "going-f", "forbid")
		e.apply(t, runYAML(ns, "going-r", "inst", map[string]string{"SIM_DURATION": "1h"}, ""))
		e.labelForSchedule(t, ns, "going-r", "replace")
		e.startController(t, ns)
		e.waitPhase(t, ns, "going-f", v1alpha1.PhaseRunning, 2*time.Minute)
		e.waitPhase(t, ns, "going-r", v1alpha1.PhaseRunning, 2*time.Minute)

		e.apply(t, scheduleYAML(ns, "every", "* * * * *", "Allow", "")+"---\n"+
			scheduleYAML(ns, "forbid", "* * * * *", "Forbid", "  includeMemory: false\n")+"---\n"+
			scheduleYAML(ns, "replace", "* * * * *", "Replace", "  includeMemory: false\n"))
		created := e.getSchedule(t, ns, "every").CreationTimestamp.Time

		// A new schedule fires for the tick of its creation minute at once
		// (sympozium anchors it 24 hours back), at the latest for the next
		// minute's when the create came just before a boundary.
		firstTick := minute(created).Add(time.Minute)
		r1 := e.waitRun(t, ns, "every-1", byTick(firstTick, 30*time.Second), "created", func(*v1alpha1.AgentRun) bool { return true })
		assert.Equal(t, map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/schedule": "every", "sympozium.ai/type": "heartbeat"}, r1.Labels)
		assert.Equal(t, "schedule-every", r1.Spec.AgentID)
		assert.Equal(t, "## Memory Context\n- the user likes tea\n\n## Task\ncheck in", r1.Spec.Task)
		assert.Equal(t, v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o", AuthSecretRef: "inst-openai-key"}, r1.Spec.Model)
		assert.Empty(t, r1.OwnerReferences)
		tick1 := runTick(t, r1)
		assert.True(t, !tick1.Before(minute(created)) && !tick1.After(firstTick), "tick %s, created %s", tick1, created)
		e.waitPhase(t, ns, "every-1", v1alpha1.PhaseSucceeded, 2*time.Minute)

		// The next minute: the next run, for that tick.
		r2 := e.waitRun(t, ns, "every-2", byTick(tick1.Add(time.Minute), 30*time.Second), "created at the next tick", func(*v1alpha1.AgentRun) bool { return true })
		assert.Equal(t, tick1.Add(time.Minute).Format(time.RFC3339), r2.Annotations[schedule.AnnotationScheduledAt])
		lag := r2.CreationTimestamp.Sub(tick1.Add(time.Minute))
		assert.True(t, lag >= 0 && lag < 30*time.Second, "created %s after its tick", lag)
		// (The next tick may have fired by now on a slow machine: the
		// checks below take that into account.)
		s := e.waitSchedule(t, ns, "every", 30*time.Second, "run 2 recorded", func(s *v1alpha1.SympoziumSchedule) bool { return s.Status.TotalRuns >= 2 })
		assert.Equal(t, "Active", s.Status.Phase)
		assert.Equal(t, fmt.Sprintf("every-%d", s.Status.TotalRuns), s.Status.LastRunName)
		assert.True(t, s.Status.NextRunTime.After(s.Status.LastRunTime.Time))
		out := e.kubectl(t, "get", "sympoziumschedules", "-n", ns, "every")
		assert.Contains(t, out, "INSTANCE   SCHEDULE    TYPE        PHASE    LAST RUN")

		// kubectl agentrun schedule and trigger.
		stdout, stderr, code := e.agentrun(t, "schedule", "every", "-n", ns)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, `sympoziumschedule/every: "* * * * *", instance inst, type heartbeat, Allow: Active`)
		assert.Regexp(t, `runs created: ([2-9]|\d\d+), last every-([2-9]|\d\d+)\n`, stdout)
		assert.Regexp(t, `(?s)last runs \(newest first\):\n(  every-\d+ [^\n]*\n)*  every-2 [^\n]*\n  every-1 `, stdout)
		stdout, stderr, code = e.agentrun(t, "trigger", "every", "-n", ns)
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "agentrun/every-manual-")
		manual := strings.Fields(strings.TrimPrefix(stdout, "agentrun/"))[0]
		mr := e.waitPhase(t, ns, manual, v1alpha1.PhaseSucceeded, 2*time.Minute)
		assert.Equal(t, "every", mr.Labels["sympozium.ai/schedule"])

		// Forbid: going-f (any creator, any phase) holds every tick off.
		ev := e.waitScheduleEvent(t, ns, "forbid", schedule.ReasonSkippedForbid)
		assert.Contains(t, ev.Message, "going-f still unfinished (concurrencyPolicy Forbid)")
		fs := e.getSchedule(t, ns, "forbid")
		assert.EqualValues(t, 0, fs.Status.TotalRuns)
		assert.NotNil(t, fs.Status.LastScheduleTime)
		_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(context.Background(), "forbid-1", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "no run under Forbid: %v", err)

		// Replace: the first tick (the one of every-1, or the next when the
		// boundary fell between the two creates) cancels going-r and
		// creates replace-1 at once; going-r ends Cancelled, naming the
		// schedule.
		rr := e.waitRun(t, ns, "replace-1", byTick(firstTick, 30*time.Second), "created", func(*v1alpha1.AgentRun) bool { return true })
		assert.True(t, !runTick(t, rr).Before(minute(created)) && !runTick(t, rr).After(firstTick), "tick %s, created %s", runTick(t, rr), created)
		e.waitScheduleEvent(t, ns, "replace", schedule.ReasonReplaced)
		old := e.waitFailed(t, ns, "going-r", v1alpha1.ReasonCancelled, time.Minute)
		assert.Contains(t, old.Status.Error, "cancelled (spec.cancel) by SympoziumSchedule replace (concurrencyPolicy Replace)")

		for _, name := range []string{"every", "replace"} {
			for tick, runs := range e.runsByTick(t, ns, name) {
				if tick == "" { // the manual trigger's
					continue
				}
				assert.Len(t, runs, 1, "schedule %s, tick %q: %v", name, tick, runs)
			}
		}
	})

	// SIGKILL right after the tick's run is created (its status write may
	// or may not have been sent), then again across the next minute
	// boundary: every tick fires, none twice.
	t.Run("sigkill", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t, nil)
		e.apply(t, fmt.Sprintf(scheduleInstanceYAML, ns))
		c := e.startController(t, ns)
		e.apply(t, scheduleYAML(ns, "k", "* * * * *", "Allow", "  includeMemory: false\n"))
		err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := e.client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, "k-1", metav1.GetOptions{})
			return err == nil, nil
		})
		require.NoError(t, err)
		c.kill()
		c = e.startController(t, ns)
		// k-1 counted (the status write may have been lost to the kill):
		// no second run for its tick. Bounded by the schedule: a slow
		// restart may count it only after the next tick has fired too.
		tick1 := runTick(t, e.getRun(t, ns, "k-1"))
		e.waitSchedule(t, ns, "k", byTick(tick1.Add(time.Minute), 30*time.Second), "k-1 counted", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.TotalRuns >= 1 && s.Status.LastRunTime != nil && !s.Status.LastRunTime.Time.Before(tick1)
		})

		// Down across a boundary: the controller is killed before it (the
		// first one at least 2 s away, once the ticks before it have
		// fired) and restarted after it.
		next := minute(time.Now().Add(2 * time.Second)).Add(time.Minute)
		e.waitSchedule(t, ns, "k", byTick(next.Add(-time.Minute), 30*time.Second), "the ticks before the outage handled", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.LastScheduleTime != nil && !s.Status.LastScheduleTime.Time.Before(next.Add(-time.Minute))
		})
		require.True(t, time.Until(next) > 0, "the controller handled the tick of %s after %s", next.Add(-time.Minute), next)
		c.kill()
		err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			return time.Now().After(next.Add(time.Second)), nil
		})
		require.NoError(t, err)
		e.startController(t, ns)
		e.waitSchedule(t, ns, "k", time.Minute, "the tick missed while down fired", func(s *v1alpha1.SympoziumSchedule) bool {
			return s.Status.LastRunTime != nil && !s.Status.LastRunTime.Time.Before(next)
		})
		// The runs and the status read at one moment (ticks go on firing).
		var s *v1alpha1.SympoziumSchedule
		var byTickNames map[string][]string
		err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			before := e.getSchedule(t, ns, "k")
			byTickNames = e.runsByTick(t, ns, "k")
			s = e.getSchedule(t, ns, "k")
			return before.ResourceVersion == s.ResourceVersion && int(s.Status.TotalRuns) == len(byTickNames), nil
		})
		assert.NoError(t, err, "status and runs agree: totalRuns %d, runs by tick %v", s.Status.TotalRuns, byTickNames)
		var ticks []time.Time
		for tick, runs := range byTickNames {
			assert.Len(t, runs, 1, "tick %q: %v", tick, runs)
			tk, err := time.Parse(time.RFC3339, tick)
			require.NoError(t, err)
			ticks = append(ticks, tk)
		}
		// Every tick while up fired: before the outage, and after it from
		// the catch-up on. The ticks missed while down fire once, for the
		// latest: next, unless the restarted controller's first sync came
		// after the following boundary (a loaded machine), then the latest
		// at that sync, created in its own minute (not a tick left behind).
		slices.SortFunc(ticks, time.Time.Compare)
		i := slices.IndexFunc(ticks, func(tk time.Time) bool { return !tk.Before(next) })
		require.GreaterOrEqual(t, i, 0, "a run for a tick at or after %s: %v", next, ticks)
		catchup := ticks[i]
		for tk := tick1; tk.Before(next); tk = tk.Add(time.Minute) {
			assert.Contains(t, ticks, tk, "tick %s lost", tk)
		}
		for tk := catchup; !tk.After(ticks[len(ticks)-1]); tk = tk.Add(time.Minute) {
			assert.Contains(t, ticks, tk, "tick %s lost", tk)
		}
		if !catchup.Equal(next) {
			cr := e.getRun(t, ns, byTickNames[catchup.Format(time.RFC3339)][0])
			assert.Equal(t, catchup, minute(cr.CreationTimestamp.Time), "the catch-up run %s was created for the latest tick", cr.Name)
			t.Logf("the restarted controller's first sync came after %s: the ticks missed fired once, for %s", next.Add(time.Minute), catchup)
		}
	})

	// The status an outage over several ticks leaves behind (written
	// before any controller watches the namespace): one run, for the
	// latest tick; a tick later than startingDeadlineSeconds is skipped
	// with an Event; sympozium's finalizer is removed and the schedule
	// deletes; an invalid cron is a condition and an Event; a schedule
	// suspended stays so.
	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t, nil)
		e.apply(t, fmt.Sprintf(scheduleInstanceYAML, ns))
		e.apply(t, scheduleYAML(ns, "out", "* * * * *", "Forbid", "  includeMemory: false\n")+"---\n"+
			scheduleYAML(ns, "late", "0 0 1 1 *", "Forbid", "  startingDeadlineSeconds: 3600\n")+"---\n"+
			scheduleYAML(ns, "bad", "every minute", "Forbid", "")+"---\n"+
			scheduleYAML(ns, "paused", "* * * * *", "Forbid", "  suspend: true\n"))
		e.kubectl(t, "patch", "sympoziumschedule", "out", "-n", ns, "--type", "merge", "-p", `{"metadata":{"finalizers":["sympozium.ai/schedule-finalizer"]}}`)
		fiveAgo := metav1.NewTime(minute(time.Now()).Add(-5 * time.Minute))
		lastYear := metav1.NewTime(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
		for name, last := range map[string]*metav1.Time{"out": &fiveAgo, "late": &lastYear} {
			s := e.getSchedule(t, ns, name)
			s.Status = v1alpha1.SympoziumScheduleStatus{Phase: "Active", LastRunTime: last, LastRunName: name + "-3", TotalRuns: 3}
			_, err := e.client.SympoziumV1alpha1().SympoziumSchedules(ns).UpdateStatus(context.Background(), s, metav1.UpdateOptions{})
			require.NoError(t, err)
		}
		start := time.Now()
		e.startController(t, ns)

		// (The next minute's tick may fire too before the checks: only the
		// ticks up to the catch-up's count.)
		s := e.waitSchedule(t, ns, "out", time.Minute, "the latest tick fired", func(s *v1alpha1.SympoziumSchedule) bool { return s.Status.TotalRuns >= 4 })
		catchup := runTick(t, e.getRun(t, ns, "out-4"))
		assert.True(t, !catchup.Before(minute(start)), "out-4 for the latest tick, %s (controller started %s)", catchup, start)
		for tick, runs := range e.runsByTick(t, ns, "out") {
			tk, err := time.Parse(time.RFC3339, tick)
			require.NoError(t, err)
			assert.False(t, tk.Before(catchup), "one run for five missed ticks, out-4; also %v for %s", runs, tick)
			assert.Len(t, runs, 1, "tick %s: %v", tick, runs)
		}
		assert.Empty(t, s.Finalizers, "sympozium's finalizer removed")

		ev := e.waitScheduleEvent(t, ns, "late", schedule.ReasonMissedDeadline)
		assert.Contains(t, ev.Message, "past startingDeadlineSeconds (3600)")
		assert.Equal(t, "Warning", ev.Type)
		ls := e.getSchedule(t, ns, "late")
		assert.EqualValues(t, 3, ls.Status.TotalRuns)

		bs := e.waitSchedule(t, ns, "bad", time.Minute, "Error", func(s *v1alpha1.SympoziumSchedule) bool { return s.Status.Phase == "Error" })
		require.Len(t, bs.Status.Conditions, 1)
		assert.Equal(t, schedule.ReasonInvalidSchedule, bs.Status.Conditions[0].Reason)
		assert.Contains(t, bs.Status.Conditions[0].Message, `invalid schedule "every minute": expected exactly 5 fields, found 2`)
		e.waitScheduleEvent(t, ns, "bad", schedule.ReasonInvalidSchedule)
		e.waitSchedule(t, ns, "paused", time.Minute, "Suspended", func(s *v1alpha1.SympoziumSchedule) bool { return s.Status.Phase == "Suspended" })

		require.NoError(t, e.client.SympoziumV1alpha1().SympoziumSchedules(ns).Delete(context.Background(), "out", metav1.DeleteOptions{}))
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := e.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(ctx, "out", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		require.NoError(t, err, "the schedule's deletion does not hang")
		_, err = e.client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(context.Background(), "paused", metav1.GetOptions{})
		require.NoError(t, err)
		_, err = e.client.SympoziumV1alpha1().AgentRuns(ns).Get(context.Background(), "paused-1", metav1.GetOptions{})
		assert.True(t, apierrors.IsNotFound(err), "a suspended schedule creates nothing")
	})

	// The CRD admits a schedule as sympozium's clients write it (strict
	// field validation), with sympozium's defaults; a Go client's
	// includeMemory: false is kept (sympozium's bool lost it); bad values
	// are rejected with a message. No controller: admission only.
	t.Run("crd", func(t *testing.T) {
		t.Parallel()
		ns := e.namespace(t, nil)
		manifest := func(spec string) string {
			return fmt.Sprintf("apiVersion: sympozium.ai/v1alpha1\nkind: SympoziumSchedule\nmetadata: {name: minimal, namespace: %s}\nspec: %s\n", ns, spec)
		}
		out, err := e.kubectlInput(manifest(`{instanceRef: inst, schedule: "0 * * * *", task: t}`), "apply", "--validate=strict", "-f", "-")
		require.NoError(t, err, out)
		s := e.getSchedule(t, ns, "minimal")
		assert.Equal(t, "scheduled", s.Spec.Type)
		assert.Equal(t, "Forbid", s.Spec.ConcurrencyPolicy)
		require.NotNil(t, s.Spec.IncludeMemory)
		assert.True(t, *s.Spec.IncludeMemory)
		assert.False(t, s.Spec.Suspend)
		f := false
		s.Spec.IncludeMemory = &f
		_, err = e.client.SympoziumV1alpha1().SympoziumSchedules(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		require.NoError(t, err)
		s = e.getSchedule(t, ns, "minimal")
		require.NotNil(t, s.Spec.IncludeMemory)
		assert.False(t, *s.Spec.IncludeMemory, "a Go client's false is kept")
		for spec, msg := range map[string]string{
			`{instanceRef: inst, schedule: "* * * * *", task: t, type: cron}`:                   `Unsupported value: "cron"`,
			`{instanceRef: inst, schedule: "* * * * *", task: t, concurrencyPolicy: Sometimes}`: `Unsupported value: "Sometimes"`,
			`{instanceRef: inst, schedule: "* * * * *", task: t, startingDeadlineSeconds: -1}`:  "startingDeadlineSeconds must be 0 or more",
			`{schedule: "* * * * *", task: t}`:                                                  "spec.instanceRef: Required value",
		} {
			out, err := e.kubectlInput(manifest(spec), "apply", "-f", "-")
			require.Error(t, err, spec)
			assert.Contains(t, out, msg, spec)
		}
	})
}
