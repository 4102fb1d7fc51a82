package schedule

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// sched is an hourly Forbid schedule created at 09:30 on 2026-03-01 that
// last fired (this controller) at 10:00.
func sched(mods ...func(*v1alpha1.SympoziumSchedule)) *v1alpha1.SympoziumSchedule {
	s := &v1alpha1.SympoziumSchedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hb", UID: "uid-1", Generation: 1,
			CreationTimestamp: metav1.NewTime(at("09:30"))},
		Spec: v1alpha1.SympoziumScheduleSpec{InstanceRef: "inst", Schedule: "0 * * * *", Task: "check",
			Type: "heartbeat", ConcurrencyPolicy: "Forbid"},
		Status: v1alpha1.SympoziumScheduleStatus{Phase: "Active", LastRunTime: mt(at("10:00")), LastScheduleTime: mt(at("10:00")),
			LastRunName: "hb-1", TotalRuns: 1, NextRunTime: mt(at("11:00"))},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func ours(name, tick string, finished bool) Run {
	return Run{Name: name, Tick: at(tick), ScheduleUID: "uid-1", Created: at(tick).Add(time.Second), Finished: finished}
}

func TestDecide(t *testing.T) {
	type want struct {
		create     *Fire
		cancel     []string
		phase      string
		reason     string // Ready's
		lastRun    string // lastRunTime "15:04"
		lastSched  string
		runName    string
		total      int64
		next       string // nextRunTime and WakeAt; "" none
		events     []string
		msgHas     string // in the first event's message
		noLastSchd bool
	}
	for _, tc := range []struct {
		name  string
		s     *v1alpha1.SympoziumSchedule
		runs  []Run
		noIns bool
		taken []string
		now   string
		want  want
	}{
		{name: "between ticks: nothing but the next wake", s: sched(), runs: []Run{ours("hb-1", "10:00", true)}, now: "10:30",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "10:00", lastSched: "10:00", runName: "hb-1", total: 1, next: "11:00"}},
		{name: "tick: creates <schedule>-<totalRuns+1>", s: sched(), runs: []Run{ours("hb-1", "10:00", true)}, now: "11:00:02",
			want: want{create: &Fire{Name: "hb-2", Tick: at("11:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00",
				runName: "hb-2", total: 2, next: "12:00", events: []string{ReasonRunCreated}}},
		{name: "never fired: the tick of the last 24h fires at once (sympozium's anchor)",
			s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Status = v1alpha1.SympoziumScheduleStatus{} }), now: "09:30:01",
			want: want{create: &Fire{Name: "hb-1", Tick: at("09:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "09:00", lastSched: "09:00",
				runName: "hb-1", total: 1, next: "10:00", events: []string{ReasonRunCreated}}},
		{name: "never fired, deadline: the backdated tick is on time at creation",
			s: sched(func(s *v1alpha1.SympoziumSchedule) {
				s.Status = v1alpha1.SympoziumScheduleStatus{}
				s.Spec.StartingDeadlineSeconds = ptr.To[int64](30)
			}), now: "09:30:10",
			want: want{create: &Fire{Name: "hb-1", Tick: at("09:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "09:00", lastSched: "09:00",
				runName: "hb-1", total: 1, next: "10:00", events: []string{ReasonRunCreated}}},
		{name: "outage over several ticks: one run, for the latest", s: sched(), runs: []Run{ours("hb-1", "10:00", true)}, now: "14:20",
			want: want{create: &Fire{Name: "hb-2", Tick: at("14:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "14:00", lastSched: "14:00",
				runName: "hb-2", total: 2, next: "15:00", events: []string{ReasonRunCreated}}},
		{name: "later than startingDeadlineSeconds: skipped with an event",
			s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.StartingDeadlineSeconds = ptr.To[int64](60) }), now: "14:20",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "10:00", lastSched: "14:00", runName: "hb-1", total: 1, next: "15:00",
				events: []string{ReasonMissedDeadline}, msgHas: "20m0s late, past startingDeadlineSeconds (60)"}},
		{name: "fired before: the deadline counts from the tick, even one before the schedule's creation",
			s: sched(func(s *v1alpha1.SympoziumSchedule) {
				s.Spec.Schedule = "0 0 1 1 *"
				s.Spec.StartingDeadlineSeconds = ptr.To[int64](3600)
				s.Status.LastScheduleTime = nil
				s.Status.LastRunTime = mt(at("10:00").AddDate(-1, 0, 0))
				s.Status.NextRunTime = nil
			}), now: "09:30:10",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "-1y", lastSched: "jan1", runName: "hb-1", total: 1, next: "jan1+1y",
				events: []string{ReasonMissedDeadline}, msgHas: "past startingDeadlineSeconds (3600)"}},
		{name: "within startingDeadlineSeconds: fires",
			s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.StartingDeadlineSeconds = ptr.To[int64](60) }), now: "11:00:59",
			want: want{create: &Fire{Name: "hb-2", Tick: at("11:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00",
				runName: "hb-2", total: 2, next: "12:00", events: []string{ReasonRunCreated}}},
		{name: "Forbid: an unfinished run of another creator skips the tick", s: sched(),
			runs: []Run{ours("hb-1", "10:00", true), {Name: "someone-elses", Created: at("10:50")}}, now: "11:00:01",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "10:00", lastSched: "11:00", runName: "hb-1", total: 1, next: "12:00",
				events: []string{ReasonSkippedForbid}, msgHas: "someone-elses still unfinished"}},
		{name: "Forbid: an unfinished run being cancelled still counts", s: sched(),
			runs: []Run{{Name: "hb-1", Tick: at("10:00"), ScheduleUID: "uid-1", Created: at("10:00"), Cancel: true}}, now: "11:00:01",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "10:00", lastSched: "11:00", runName: "hb-1", total: 1, next: "12:00",
				events: []string{ReasonSkippedForbid}}},
		{name: "Forbid: finished runs do not", s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.ConcurrencyPolicy = "" }),
			runs: []Run{ours("hb-1", "10:00", true)}, now: "11:00:01",
			want: want{create: &Fire{Name: "hb-2", Tick: at("11:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00",
				runName: "hb-2", total: 2, next: "12:00", events: []string{ReasonRunCreated}}},
		{name: "Replace: cancels the unfinished runs, then creates",
			s:    sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.ConcurrencyPolicy = "Replace" }),
			runs: []Run{ours("hb-1", "10:00", false), {Name: "x", Cancel: true}, {Name: "y", Finished: true}}, now: "11:00:01",
			want: want{create: &Fire{Name: "hb-2", Tick: at("11:00")}, cancel: []string{"hb-1"}, phase: "Active", reason: ReasonScheduled,
				lastRun: "11:00", lastSched: "11:00", runName: "hb-2", total: 2, next: "12:00", events: []string{ReasonReplaced, ReasonRunCreated}}},
		{name: "Allow: creates beside the unfinished run",
			s:    sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.ConcurrencyPolicy = "Allow" }),
			runs: []Run{ours("hb-1", "10:00", false)}, now: "11:00:01",
			want: want{create: &Fire{Name: "hb-2", Tick: at("11:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00",
				runName: "hb-2", total: 2, next: "12:00", events: []string{ReasonRunCreated}}},
		{name: "killed after the create, before the status write: the run counts as fired", s: sched(),
			runs: []Run{ours("hb-1", "10:00", true), ours("hb-2", "11:00", false)}, now: "11:00:05",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00", runName: "hb-2", total: 2, next: "12:00",
				events: []string{ReasonRunFound}}},
		{name: "sympozium created the tick's run and lost its status write: counts as fired", s: sched(func(s *v1alpha1.SympoziumSchedule) {
			s.Status.LastScheduleTime = nil
			s.Status.LastRunTime = mt(at("10:00:03"))
		}),
			runs: []Run{{Name: "hb-1", Created: at("10:00:03"), Finished: true}, {Name: "hb-2", Created: at("11:00:02")}}, now: "11:00:05",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00", runName: "hb-2", total: 2, next: "12:00",
				events: []string{ReasonRunFound}}},
		{name: "Replace: a run of another creator made after the tick, in the schedule's second, is cancelled, not counted as fired",
			s: sched(func(s *v1alpha1.SympoziumSchedule) {
				s.Spec.ConcurrencyPolicy = "Replace"
				s.CreationTimestamp = metav1.NewTime(at("11:00:07"))
				s.Status = v1alpha1.SympoziumScheduleStatus{}
			}),
			runs: []Run{{Name: "going", Created: at("11:00:07")}, {Name: "hb-x", Created: at("11:00:07")}}, now: "11:00:07",
			want: want{create: &Fire{Name: "hb-1", Tick: at("11:00")}, cancel: []string{"going", "hb-x"}, phase: "Active", reason: ReasonScheduled,
				lastRun: "11:00", lastSched: "11:00", runName: "hb-1", total: 1, next: "12:00", events: []string{ReasonReplaced, ReasonRunCreated}}},
		{name: "a manual trigger does not count as the tick's run",
			s:    sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.ConcurrencyPolicy = "Allow" }),
			runs: []Run{{Name: "hb-manual-1", Created: at("11:00:02"), Manual: true}}, now: "11:00:05",
			want: want{create: &Fire{Name: "hb-2", Tick: at("11:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "11:00", lastSched: "11:00",
				runName: "hb-2", total: 2, next: "12:00", events: []string{ReasonRunCreated}}},
		{name: "continues from sympozium's status: its fire time covers its tick", s: sched(func(s *v1alpha1.SympoziumSchedule) {
			s.Status.LastScheduleTime = nil
			s.Status.LastRunTime = mt(at("10:00:03"))
			s.Status.TotalRuns = 7
			s.Status.LastRunName = "hb-7"
		}), runs: []Run{{Name: "hb-7", Created: at("10:00:03"), Finished: true}}, now: "10:59:59",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "10:00:03", runName: "hb-7", total: 7, next: "11:00", noLastSchd: true}},
		{name: "recreated schedule: its runs go past the old ones' names", s: sched(func(s *v1alpha1.SympoziumSchedule) {
			s.UID = "uid-2"
			s.Status = v1alpha1.SympoziumScheduleStatus{}
		}), runs: []Run{ours("hb-1", "08:00", true), ours("hb-3", "09:00", true)}, taken: []string{"hb-4"}, now: "09:30:01",
			want: want{create: &Fire{Name: "hb-5", Tick: at("09:00")}, phase: "Active", reason: ReasonScheduled, lastRun: "09:00", lastSched: "09:00",
				runName: "hb-5", total: 1, next: "10:00", events: []string{ReasonRunCreated}}},
		{name: "invalid cron: Error with the parser's message, an event",
			s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.Schedule = "every hour" }), now: "11:00",
			want: want{phase: "Error", reason: ReasonInvalidSchedule, lastRun: "10:00", lastSched: "10:00", runName: "hb-1", total: 1,
				events: []string{ReasonInvalidSchedule}, msgHas: `invalid schedule "every hour": expected exactly 5 fields, found 2`}},
		{name: "invalid time zone", s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.TimeZone = new("Europe/Atlantis") }), now: "11:00",
			want: want{phase: "Error", reason: ReasonInvalidSchedule, lastRun: "10:00", lastSched: "10:00", runName: "hb-1", total: 1,
				events: []string{ReasonInvalidSchedule}, msgHas: "unknown time zone Europe/Atlantis"}},
		{name: "a cron with no tick for years never fires (sympozium fired on every sync)",
			s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.Schedule = "0 0 30 2 *" }), now: "11:00",
			want: want{phase: "Error", reason: ReasonNeverFires, lastRun: "10:00", lastSched: "10:00", runName: "hb-1", total: 1,
				events: []string{ReasonNeverFires}, msgHas: "no tick within five years"}},
		{name: "suspended: no run, no wake", s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Spec.Suspend = true }), now: "13:00",
			want: want{phase: "Suspended", reason: ReasonSuspended, lastRun: "10:00", lastSched: "10:00", runName: "hb-1", total: 1}},
		{name: "resumed: the ticks missed while suspended do not fire", s: sched(func(s *v1alpha1.SympoziumSchedule) { s.Status.Phase = "Suspended" }),
			now:  "13:20",
			want: want{phase: "Active", reason: ReasonScheduled, lastRun: "10:00", lastSched: "13:00", runName: "hb-1", total: 1, next: "14:00"}},
		{name: "instance missing: Error, no wake (its creation wakes the schedule), no poll", s: sched(), noIns: true, now: "11:00:01",
			want: want{phase: "Error", reason: ReasonInstanceNotFound, lastRun: "10:00", lastSched: "10:00", runName: "hb-1", total: 1,
				events: []string{ReasonInstanceNotFound}, msgHas: `SympoziumInstance "inst" not found in namespace ns`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Schedule: tc.s, InstanceFound: !tc.noIns, Runs: tc.runs, Now: atS(tc.now)}
			if tc.taken != nil {
				in.NameTaken = func(n string) bool {
					return slices.Contains(tc.taken, n)
				}
			}
			before := tc.s.DeepCopy()
			d := Decide(in)
			assert.Equal(t, before, tc.s, "the input is not changed")
			w := tc.want
			assert.Equal(t, w.create, d.Create)
			assert.Equal(t, w.cancel, d.Cancel)
			st := d.Status
			assert.Equal(t, w.phase, st.Phase)
			ready := apimeta.FindStatusCondition(st.Conditions, ConditionReady)
			require.NotNil(t, ready)
			assert.Equal(t, w.reason, ready.Reason)
			assert.Equal(t, timeOf(w.lastRun), st.LastRunTime)
			if w.noLastSchd {
				assert.Nil(t, st.LastScheduleTime)
			} else {
				assert.Equal(t, timeOf(w.lastSched), st.LastScheduleTime)
			}
			assert.Equal(t, w.runName, st.LastRunName)
			assert.Equal(t, w.total, st.TotalRuns)
			assert.Equal(t, timeOf(w.next), st.NextRunTime)
			if w.next == "" {
				assert.True(t, d.WakeAt.IsZero())
			} else {
				assert.True(t, d.WakeAt.Equal(atS(w.next)), "wake %s", d.WakeAt)
			}
			var reasons []string
			for _, e := range d.Events {
				reasons = append(reasons, e.Reason)
			}
			assert.Equal(t, w.events, reasons)
			if w.msgHas != "" {
				require.NotEmpty(t, d.Events)
				assert.Contains(t, d.Events[0].Message, w.msgHas)
				if ready.Status == metav1.ConditionFalse {
					assert.Contains(t, ready.Message, w.msgHas)
				}
			}

			// Carried out, the decision is at rest: the same time again
			// (and any time up to the next tick) writes nothing, creates
			// nothing, records no event.
			after := tc.s.DeepCopy()
			after.Status = st
			runs := tc.runs
			if d.Create != nil {
				runs = append(runs, Run{Name: d.Create.Name, Tick: d.Create.Tick, ScheduleUID: string(tc.s.UID), Created: in.Now})
			}
			for _, now := range []time.Time{in.Now, in.Now.Add(10 * time.Second)} {
				if !d.WakeAt.IsZero() && !now.Before(d.WakeAt) {
					continue
				}
				again := Decide(Input{Schedule: after, InstanceFound: !tc.noIns, Runs: runs, NameTaken: in.NameTaken, Now: now})
				assert.Nil(t, again.Create)
				assert.Empty(t, again.Cancel)
				assert.Empty(t, again.Events)
				assert.True(t, apiequality.Semantic.DeepEqual(st, again.Status), "status at rest: %+v\n%+v", st, again.Status)
			}
		})
	}
}

func TestIncludeMemoryFalseIsStored(t *testing.T) {
	// sympozium's bool with omitempty drops false, which its default turns
	// back into true; the pointer keeps it.
	b, err := json.Marshal(v1alpha1.SympoziumScheduleSpec{IncludeMemory: new(false)})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"includeMemory":false`)
	assert.False(t, IncludeMemory(&v1alpha1.SympoziumSchedule{Spec: v1alpha1.SympoziumScheduleSpec{IncludeMemory: new(false)}}))
	assert.True(t, IncludeMemory(&v1alpha1.SympoziumSchedule{}))
}

func TestBuildRun(t *testing.T) {
	inst := &v1alpha1.SympoziumInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "inst"},
		Spec: v1alpha1.SympoziumInstanceSpec{
			Agents: v1alpha1.AgentsSpec{Default: v1alpha1.AgentConfig{Model: "gpt-4o", BaseURL: "http://llm:8080", Thinking: "low",
				NodeSelector: map[string]string{"gpu": "yes"}}},
			AuthRefs: []v1alpha1.AuthRef{{Secret: "  "}, {Secret: "inst-anthropic-key"}},
			Skills:   []v1alpha1.SkillRef{{SkillPackRef: "k8s-ops", Params: map[string]string{"a": "b"}}, {SkillPackRef: "web-endpoint"}, {SkillPackRef: "skillpack-web-endpoint"}},
		},
	}
	s := sched()
	r := BuildRun(s, inst, Fire{Name: "hb-2", Tick: at("11:00")}, "- likes tea")
	assert.Equal(t, "hb-2", r.Name)
	assert.Equal(t, "ns", r.Namespace)
	assert.Equal(t, map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/schedule": "hb", "sympozium.ai/type": "heartbeat"}, r.Labels)
	assert.Equal(t, map[string]string{AnnotationScheduledAt: "2026-03-01T11:00:00Z", AnnotationScheduleUID: "uid-1"}, r.Annotations)
	assert.Empty(t, r.OwnerReferences)
	assert.Equal(t, "inst", r.Spec.InstanceRef)
	assert.Equal(t, "schedule-hb", r.Spec.AgentID)
	assert.Equal(t, "", r.Spec.SessionKey)
	assert.Equal(t, "## Memory Context\n- likes tea\n\n## Task\ncheck", r.Spec.Task)
	assert.Equal(t, v1alpha1.ModelSpec{Provider: "anthropic", Model: "gpt-4o", BaseURL: "http://llm:8080", Thinking: "low",
		AuthSecretRef: "inst-anthropic-key", NodeSelector: map[string]string{"gpu": "yes"}}, r.Spec.Model)
	assert.Equal(t, []v1alpha1.SkillRef{{SkillPackRef: "k8s-ops", Params: map[string]string{"a": "b"}}}, r.Spec.Skills)
	assert.Equal(t, "check", BuildRun(s, inst, Fire{Name: "hb-2", Tick: at("11:00")}, "").Spec.Task)
	// The run read back is the tick's.
	got := RunOf(r)
	assert.True(t, got.Tick.Equal(at("11:00")))
	assert.Equal(t, "uid-1", got.ScheduleUID)
}

func TestCreateFailed(t *testing.T) {
	s := sched()
	d := Decide(Input{Schedule: s, InstanceFound: true, Now: at("11:00")})
	require.NotNil(t, d.Create)
	f := CreateFailed(s, d, "spec.model.model: Required value", at("11:00"))
	assert.Nil(t, f.Create)
	assert.Equal(t, int64(1), f.Status.TotalRuns, "not counted as a run")
	assert.Equal(t, timeOf("11:00"), f.Status.LastScheduleTime, "the tick is handled")
	ready := apimeta.FindStatusCondition(f.Status.Conditions, ConditionReady)
	require.NotNil(t, ready)
	assert.Equal(t, ReasonCreateFailed, ready.Reason)
	require.Len(t, f.Events, 1)
	assert.Contains(t, f.Events[0].Message, "Could not create run hb-2 for the tick of 2026-03-01T11:00:00Z: spec.model.model: Required value")
	// The next decision, a tick later, is Ready again.
	s.Status = f.Status
	d2 := Decide(Input{Schedule: s, InstanceFound: true, Now: at("12:00")})
	assert.Equal(t, ReasonScheduled, apimeta.FindStatusCondition(d2.Status.Conditions, ConditionReady).Reason)
	assert.Equal(t, "hb-2", d2.Create.Name)
}

// atS is at, or one of the yearly schedule's times.
func atS(s string) time.Time {
	switch s {
	case "-1y":
		return at("10:00").AddDate(-1, 0, 0)
	case "jan1":
		return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	case "jan1+1y":
		return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return at(s)
}

func timeOf(s string) *metav1.Time {
	if s == "" {
		return nil
	}
	return mt(atS(s))
}
