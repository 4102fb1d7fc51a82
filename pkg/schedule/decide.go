package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Labels and annotations of a schedule's runs. The labels are sympozium's
// (25c0bb2, sympoziumschedule_controller.go:172-176); the annotations are
// this controller's: the tick a run was created for and the schedule (by
// UID) that created it, so that a run already created for a tick counts as
// the tick fired, even when the status write that followed was lost.
const (
	LabelSchedule          = "sympozium.ai/schedule"
	LabelType              = "sympozium.ai/type"
	AnnotationScheduledAt  = "sympozium.ai/scheduled-at"
	AnnotationScheduleUID  = "sympozium.ai/schedule-uid"
	AnnotationTrigger      = "sympozium.ai/trigger"
	AnnotationCancelledBy  = v1alpha1.AnnotationCancelledBy
	TriggerManual          = "manual"
	ConditionReady         = "Ready"
	legacyFirstTickBackoff = 24 * time.Hour
)

// Reasons of the Ready condition and of the events.
const (
	ReasonScheduled        = "Scheduled"
	ReasonSuspended        = "Suspended"
	ReasonInvalidSchedule  = "InvalidSchedule"
	ReasonNeverFires       = "NeverFires"
	ReasonInstanceNotFound = "InstanceNotFound"
	ReasonRunCreated       = "RunCreated"
	ReasonRunFound         = "RunFound"
	ReasonSkippedForbid    = "SkippedForbid"
	ReasonMissedDeadline   = "MissedDeadline"
	ReasonReplaced         = "Replaced"
	ReasonCreateFailed     = "CreateFailed"
)

// Run is what the decision reads of one run of the schedule (a run in the
// schedule's namespace labelled sympozium.ai/schedule=<schedule>).
type Run struct {
	Name    string
	Created time.Time
	// Tick is the run's sympozium.ai/scheduled-at, zero when absent or
	// unreadable (sympozium's runs have none).
	Tick time.Time
	// ScheduleUID is the run's sympozium.ai/schedule-uid.
	ScheduleUID string
	// Manual: created by kubectl agentrun trigger, not for a tick.
	Manual bool
	// Finished: Succeeded or Failed.
	Finished bool
	// Cancel: spec.cancel is set.
	Cancel bool
}

// RunOf reads a run for the decision.
func RunOf(r *v1alpha1.AgentRun) Run {
	out := Run{
		Name: r.Name, Created: r.CreationTimestamp.Time, ScheduleUID: r.Annotations[AnnotationScheduleUID],
		Manual: r.Annotations[AnnotationTrigger] == TriggerManual, Finished: r.Status.Phase.IsTerminal(), Cancel: r.Spec.Cancel,
	}
	if v, ok := r.Annotations[AnnotationScheduledAt]; ok {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			out.Tick = t
		}
	}
	return out
}

// Input is what the controller observed.
type Input struct {
	Schedule *v1alpha1.SympoziumSchedule
	// InstanceFound: the instance spec.instanceRef names is in the cache.
	InstanceFound bool
	// Runs are the schedule's runs in the cache, of any creator.
	Runs []Run
	// NameTaken reports whether a run of that name is in the namespace's
	// cache, labelled for this schedule or not (nil: none is).
	NameTaken func(name string) bool
	Now       time.Time
}

// Fire is a run to create.
type Fire struct {
	Name string
	Tick time.Time
}

// Event is an event to record on the schedule.
type Event struct {
	Warning         bool
	Reason, Message string
}

// Decision is what the controller does.
type Decision struct {
	// Cancel are the runs to cancel (spec.cancel) before Create.
	Cancel []string
	// Create is the run to create, then Status to write; nil: none.
	Create *Fire
	// Status is the status to write (when it differs from the stored one)
	// once Cancel and Create are done.
	Status v1alpha1.SympoziumScheduleStatus
	Events []Event
	// WakeAt is when to sync the schedule again (its next tick); zero: only
	// an event wakes it (suspended, invalid, instance missing).
	WakeAt time.Time
}

// Decide is the schedule's decision at in.Now. The rules, in order:
//
//   - An invalid schedule or time zone, or one that never ticks (no tick
//     within five years, "0 0 30 2 *"): phase Error, condition Ready False
//     with the parser's message, an Event when it appears; no wake.
//   - Suspended: phase Suspended, no next run time, no wake. On resume
//     (status still Suspended, spec no longer), the ticks up to now are
//     handled without firing: ticks missed while suspended never fire.
//   - The instance is missing: phase Error (InstanceNotFound) and no wake
//     (its creation wakes the schedule); the due tick is kept.
//   - The latest tick after the last handled one (lastScheduleTime, else
//     lastRunTime, else creationTimestamp - 24h as sympozium does) and not
//     after now is the one due: however many were missed, one fires.
//   - A run of the schedule already made for that tick (its annotations,
//     or a sympozium run created since the tick) counts as fired.
//   - Later than startingDeadlineSeconds: skipped with an Event.
//   - Forbid with an unfinished run of the schedule (any phase, any
//     creator): skipped with an Event. Replace: the unfinished runs are
//     cancelled, then the run is created. Allow: created.
//   - The run is <schedule>-<n>, n one more than totalRuns and than every
//     <schedule>-<n> run of the cache, and past any name already taken.
func Decide(in Input) Decision {
	s := in.Schedule
	now := in.Now
	d := Decision{Status: *s.Status.DeepCopy()}
	st := &d.Status
	tz := ""
	if s.Spec.TimeZone != nil {
		tz = *s.Spec.TimeZone
	}
	c, err := Parse(s.Spec.Schedule, tz)
	if err == nil && c.Next(now).IsZero() {
		err = fmt.Errorf("schedule %q has no tick within five years: it would never fire", s.Spec.Schedule)
		d.setReady(s, metav1.ConditionFalse, ReasonNeverFires, err.Error(), now)
		st.Phase, st.NextRunTime = v1alpha1.SchedulePhaseError, nil
		return d
	}
	if err != nil {
		d.setReady(s, metav1.ConditionFalse, ReasonInvalidSchedule, err.Error(), now)
		st.Phase, st.NextRunTime = v1alpha1.SchedulePhaseError, nil
		return d
	}
	if s.Spec.Suspend {
		d.setReady(s, metav1.ConditionFalse, ReasonSuspended, "spec.suspend is true", now)
		st.Phase, st.NextRunTime = v1alpha1.SchedulePhaseSuspended, nil
		return d
	}
	last := lastHandled(s)
	if s.Status.Phase == v1alpha1.SchedulePhaseSuspended {
		// Resumed: the ticks missed while suspended are handled, not fired.
		if t, ok := c.Latest(last, now); ok {
			st.LastScheduleTime = mt(t)
			last = t
		}
	}
	if !in.InstanceFound {
		d.setReady(s, metav1.ConditionFalse, ReasonInstanceNotFound,
			fmt.Sprintf("SympoziumInstance %q not found in namespace %s", s.Spec.InstanceRef, s.Namespace), now)
		st.Phase, st.NextRunTime = v1alpha1.SchedulePhaseError, nil
		return d
	}
	st.Phase = v1alpha1.SchedulePhaseActive
	d.setReady(s, metav1.ConditionTrue, ReasonScheduled, "", now)
	next := c.Next(now)
	st.NextRunTime = mt(next)
	d.WakeAt = next
	tick, due := c.Latest(last, now)
	if !due {
		return d
	}
	// From here the tick is handled: fired, found or skipped.
	st.LastScheduleTime = mt(tick)
	if r, ok := firedFor(in, tick); ok {
		// Created, and the status write that followed was lost (the tick
		// is after lastRunTime): count it now.
		st.LastRunTime, st.LastRunName = mt(tick), r.Name
		st.TotalRuns++
		d.Events = append(d.Events, Event{Reason: ReasonRunFound,
			Message: fmt.Sprintf("Run %s was already created for the tick of %s", r.Name, tick.UTC().Format(time.RFC3339))})
		return d
	}
	if dl := s.Spec.StartingDeadlineSeconds; dl != nil {
		from := tick
		if created := s.CreationTimestamp.Time; neverFired(s) && from.Before(created) {
			from = created // sympozium's backdated first tick is on time at creation
		}
		if late := now.Sub(from); late > time.Duration(*dl)*time.Second {
			d.Events = append(d.Events, Event{Warning: true, Reason: ReasonMissedDeadline,
				Message: fmt.Sprintf("Skipped the tick of %s: %s late, past startingDeadlineSeconds (%d)",
					tick.UTC().Format(time.RFC3339), late.Round(time.Second), *dl)})
			return d
		}
	}
	var unfinished []Run
	for _, r := range in.Runs {
		if !r.Finished {
			unfinished = append(unfinished, r)
		}
	}
	policy := s.Spec.ConcurrencyPolicy
	if policy == "" {
		policy = v1alpha1.ConcurrencyForbid
	}
	switch {
	case len(unfinished) == 0 || policy == v1alpha1.ConcurrencyAllow:
	case policy == v1alpha1.ConcurrencyReplace:
		for _, r := range unfinished {
			if !r.Cancel {
				d.Cancel = append(d.Cancel, r.Name)
			}
		}
		if len(d.Cancel) > 0 {
			d.Events = append(d.Events, Event{Reason: ReasonReplaced,
				Message: fmt.Sprintf("Cancelling %s for the tick of %s (concurrencyPolicy Replace)", strings.Join(d.Cancel, ", "), tick.UTC().Format(time.RFC3339))})
		}
	default: // Forbid
		names := make([]string, 0, len(unfinished))
		for _, r := range unfinished {
			names = append(names, r.Name)
		}
		d.Events = append(d.Events, Event{Reason: ReasonSkippedForbid,
			Message: fmt.Sprintf("Skipped the tick of %s: %s still unfinished (concurrencyPolicy Forbid)", tick.UTC().Format(time.RFC3339), strings.Join(names, ", "))})
		return d
	}
	name := RunName(s, in.Runs, in.NameTaken)
	d.Create = &Fire{Name: name, Tick: tick}
	st.LastRunTime, st.LastRunName = mt(tick), name
	st.TotalRuns++
	d.Events = append(d.Events, Event{Reason: ReasonRunCreated,
		Message: fmt.Sprintf("Created run %s for the tick of %s", name, tick.UTC().Format(time.RFC3339))})
	return d
}

// CreateFailed is the decision d after its run could not be created for a
// reason a retry will not change (the API server rejected it): the tick
// is handled, not counted as a run, and the condition and an Event say why.
func CreateFailed(s *v1alpha1.SympoziumSchedule, d Decision, msg string, now time.Time) Decision {
	out := Decision{Status: *s.Status.DeepCopy(), WakeAt: d.WakeAt}
	out.Status.Phase, out.Status.NextRunTime, out.Status.LastScheduleTime = d.Status.Phase, d.Status.NextRunTime, d.Status.LastScheduleTime
	out.Status.Conditions = d.Status.Conditions
	m := fmt.Sprintf("Could not create run %s for the tick of %s: %s", d.Create.Name, d.Create.Tick.UTC().Format(time.RFC3339), msg)
	out.Events = []Event{{Warning: true, Reason: ReasonCreateFailed, Message: m}}
	out.setReady(s, metav1.ConditionFalse, ReasonCreateFailed, m, now)
	return out
}

// RunName is the name of the schedule's next run: <schedule>-<n> as
// sympozium names them, n past status.totalRuns, past every
// <schedule>-<n> run of the schedule in the cache (a schedule deleted and
// recreated under its name starts again at totalRuns 0 while the old runs
// remain: sympozium then loses each tick to AlreadyExists) and past any
// name taken by another run.
func RunName(s *v1alpha1.SympoziumSchedule, runs []Run, taken func(string) bool) string {
	n := s.Status.TotalRuns
	prefix := s.Name + "-"
	for _, r := range runs {
		if v, ok := runNumber(s.Name, r.Name); ok && v > n {
			n = v
		}
	}
	for {
		n++
		name := prefix + strconv.FormatInt(n, 10)
		if taken == nil || !taken(name) {
			return name
		}
	}
}

// firedFor is the run already made for tick: one this schedule annotated
// with the tick, or (sympozium's runs carry no annotation) one named as
// sympozium names a schedule's runs, <schedule>-<n>, created at or after
// the tick and after the schedule itself. A run of another creator
// labelled for the schedule is never the tick's run, even when it was
// created in the schedule's second (creation times have one-second
// resolution).
func firedFor(in Input, tick time.Time) (Run, bool) {
	s := in.Schedule
	for _, r := range in.Runs {
		if r.Manual {
			continue
		}
		if !r.Tick.IsZero() {
			if r.Tick.Equal(tick) && r.ScheduleUID == string(s.UID) {
				return r, true
			}
			continue
		}
		if r.ScheduleUID == "" && legacyRunName(s.Name, r.Name) && !r.Created.Before(tick) && !r.Created.Before(s.CreationTimestamp.Time) {
			return r, true
		}
	}
	return Run{}, false
}

// legacyRunName reports whether name is <schedule>-<n>, n a positive
// integer: the name sympozium gives a schedule's runs.
func legacyRunName(schedule, name string) bool {
	n, ok := runNumber(schedule, name)
	return ok && n > 0 && schedule+"-"+strconv.FormatInt(n, 10) == name
}

// runNumber is n of a run named <schedule>-<n>; ok false for another name.
func runNumber(schedule, name string) (int64, bool) {
	k, ok := strings.CutPrefix(name, schedule+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(k, 10, 64)
	return n, err == nil
}

// lastHandled is the last tick handled: lastScheduleTime (this
// controller), else lastRunTime (sympozium writes the time it fired), else
// 24 hours before the schedule's creation, as sympozium anchors a schedule
// that never fired (so an hourly schedule fires at once when created).
func lastHandled(s *v1alpha1.SympoziumSchedule) time.Time {
	var last time.Time
	for _, t := range []*metav1.Time{s.Status.LastScheduleTime, s.Status.LastRunTime} {
		if t != nil && t.After(last) {
			last = t.Time
		}
	}
	if last.IsZero() {
		last = s.CreationTimestamp.Add(-legacyFirstTickBackoff)
	}
	return last
}

// neverFired: the schedule has handled no tick yet.
func neverFired(s *v1alpha1.SympoziumSchedule) bool {
	return s.Status.LastScheduleTime == nil && s.Status.LastRunTime == nil
}

// setReady sets the Ready condition; a change of reason or message to a
// failure is also an Event, with the condition's message.
func (d *Decision) setReady(s *v1alpha1.SympoziumSchedule, status metav1.ConditionStatus, reason, msg string, now time.Time) {
	old := apimeta.FindStatusCondition(s.Status.Conditions, ConditionReady)
	if status == metav1.ConditionFalse && reason != ReasonSuspended && reason != ReasonCreateFailed &&
		(old == nil || old.Reason != reason || old.Message != msg) {
		d.Events = append(d.Events, Event{Warning: true, Reason: reason, Message: msg})
	}
	// A condition list of our own (sympozium never writes one): a copy, so
	// the cached object is never changed.
	conds := make([]metav1.Condition, 0, len(d.Status.Conditions)+1)
	for _, c := range d.Status.Conditions {
		conds = append(conds, *c.DeepCopy())
	}
	apimeta.SetStatusCondition(&conds, metav1.Condition{Type: ConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: s.Generation, LastTransitionTime: metav1.NewTime(now)})
	d.Status.Conditions = conds
}

func mt(t time.Time) *metav1.Time {
	m := metav1.NewTime(t.UTC()).Rfc3339Copy()
	return &m
}
