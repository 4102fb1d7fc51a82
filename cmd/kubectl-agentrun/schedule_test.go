package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/schedule"
)

func TestDescribeSchedule(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	next := metav1.NewTime(now.Add(30 * time.Minute))
	s := &v1alpha1.SympoziumSchedule{
		ObjectMeta: metav1.ObjectMeta{Name: "hb"},
		Spec:       v1alpha1.SympoziumScheduleSpec{InstanceRef: "inst", Schedule: "0 * * * *", Type: "heartbeat"},
		Status:     v1alpha1.SympoziumScheduleStatus{Phase: "Active", NextRunTime: &next, TotalRuns: 2, LastRunName: "hb-2"},
	}
	run := func(name string, at time.Time, ann map[string]string, phase v1alpha1.AgentRunPhase) v1alpha1.AgentRun {
		return v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(at), Annotations: ann},
			Status: v1alpha1.AgentRunStatus{Phase: phase}}
	}
	runs := []v1alpha1.AgentRun{
		run("hb-1", now.Add(-90*time.Minute), map[string]string{schedule.AnnotationScheduledAt: "2026-03-01T09:00:00Z"}, v1alpha1.PhaseSucceeded),
		run("hb-2", now.Add(-30*time.Minute), map[string]string{schedule.AnnotationScheduledAt: "2026-03-01T10:00:00Z"}, v1alpha1.PhaseRunning),
		run("hb-manual-1", now.Add(-10*time.Minute), map[string]string{schedule.AnnotationTrigger: "manual"}, v1alpha1.PhasePending),
	}
	assert.Equal(t, `sympoziumschedule/hb: "0 * * * *", instance inst, type heartbeat, Forbid: Active
next tick: 2026-03-01T11:00:00Z (in 30m0s)
runs created: 2, last hb-2
last runs (newest first):
  hb-manual-1                    Pending    tick manual               created 2026-03-01T10:20:00Z
  hb-2                           Running    tick 2026-03-01T10:00:00Z created 2026-03-01T10:00:00Z
  hb-1                           Succeeded  tick 2026-03-01T09:00:00Z created 2026-03-01T09:00:00Z
`, describeSchedule(s, runs, now))

	s.Status = v1alpha1.SympoziumScheduleStatus{Phase: "Error", Conditions: []metav1.Condition{{Type: schedule.ConditionReady,
		Status: metav1.ConditionFalse, Reason: schedule.ReasonInvalidSchedule, Message: `invalid schedule "x": expected exactly 5 fields, found 1: [x]`}}}
	assert.Equal(t, `sympoziumschedule/hb: "0 * * * *", instance inst, type heartbeat, Forbid: Error
  InvalidSchedule: invalid schedule "x": expected exactly 5 fields, found 1: [x]
next tick: none
runs created: 0
`, describeSchedule(s, nil, now))
}
