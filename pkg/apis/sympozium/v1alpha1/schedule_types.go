package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The fields of SympoziumScheduleSpec and SympoziumScheduleStatus without
// "additive" in their comment are those of sympozium's CRD (commit
// 25c0bb2), with its defaults and printer columns: its web UI, TUI, API
// server and PersonaPack controller write and read them.

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=sympozium
// +kubebuilder:printcolumn:name="Instance",type="string",JSONPath=".spec.instanceRef"
// +kubebuilder:printcolumn:name="Schedule",type="string",JSONPath=".spec.schedule"
// +kubebuilder:printcolumn:name="Type",type="string",JSONPath=".spec.type"
// +kubebuilder:printcolumn:name="Phase",type="string",JSONPath=".status.phase"
// +kubebuilder:printcolumn:name="Last Run",type="date",JSONPath=".status.lastRunTime"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"

// SympoziumSchedule creates an AgentRun of its instance at each tick of a
// cron schedule (heartbeats, scheduled tasks, sweeps).
type SympoziumSchedule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the schedule.
	// +optional
	Spec SympoziumScheduleSpec `json:"spec,omitempty"`
	// status reports the schedule's last and next runs.
	// +optional
	Status SympoziumScheduleStatus `json:"status,omitempty"`
}

// Schedule types (spec.type).
const (
	ScheduleTypeHeartbeat = "heartbeat"
	ScheduleTypeScheduled = "scheduled"
	ScheduleTypeSweep     = "sweep"
)

// Concurrency policies (spec.concurrencyPolicy).
const (
	// ConcurrencyForbid skips a tick while a run of the schedule is
	// unfinished.
	ConcurrencyForbid = "Forbid"
	// ConcurrencyAllow creates the tick's run whatever runs are going.
	ConcurrencyAllow = "Allow"
	// ConcurrencyReplace cancels the unfinished runs of the schedule
	// (spec.cancel), then creates the tick's run.
	ConcurrencyReplace = "Replace"
)

// Schedule phases (status.phase).
const (
	SchedulePhaseActive    = "Active"
	SchedulePhaseSuspended = "Suspended"
	SchedulePhaseError     = "Error"
)

// SympoziumScheduleSpec is a recurring task of a SympoziumInstance.
type SympoziumScheduleSpec struct {
	// instanceRef is the name of the SympoziumInstance (same namespace)
	// whose agent runs the task.
	// +required
	// +kubebuilder:validation:MaxLength=253
	InstanceRef string `json:"instanceRef"`

	// schedule is a cron expression of five fields (minute hour
	// day-of-month month day-of-week, e.g. "0 * * * *"), optionally
	// prefixed with CRON_TZ=<zone> or TZ=<zone>, parsed as sympozium
	// parses it (github.com/robfig/cron/v3, standard fields).
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Schedule string `json:"schedule"`

	// task is the task given to the agent at each tick.
	// +required
	// +kubebuilder:validation:MaxLength=120000
	Task string `json:"task"`

	// type categorises the schedule: heartbeat, scheduled or sweep (it
	// becomes the runs' sympozium.ai/type label).
	// +optional
	// +kubebuilder:validation:Enum=heartbeat;scheduled;sweep
	// +kubebuilder:default="scheduled"
	Type string `json:"type,omitempty"`

	// suspend, true, stops the ticks; the ticks missed while suspended do
	// not fire on resume.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// concurrencyPolicy says what a tick does while a run of the schedule
	// (of any creator) is unfinished: Forbid skips the tick (with an
	// Event), Allow creates the run anyway, Replace cancels the unfinished
	// runs (spec.cancel) and creates the new one.
	// +optional
	// +kubebuilder:validation:Enum=Forbid;Allow;Replace
	// +kubebuilder:default="Forbid"
	ConcurrencyPolicy string `json:"concurrencyPolicy,omitempty"`

	// includeMemory prepends the instance's memory (ConfigMap
	// <instance>-memory, key MEMORY.md) to each run's task. A pointer, so
	// that a Go client can store false (sympozium's plain bool cannot: its
	// false is omitted and defaulted back to true).
	// +optional
	// +kubebuilder:default=true
	IncludeMemory *bool `json:"includeMemory,omitempty"`

	// timeZone is the IANA time zone of the schedule (e.g. Europe/Paris);
	// unset, UTC (or the schedule's CRON_TZ= prefix). Additive: as a
	// CronJob's spec.timeZone.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	TimeZone *string `json:"timeZone,omitempty"`

	// startingDeadlineSeconds: a tick that could not fire within this many
	// seconds (the controller was down, or busy) is skipped with an Event
	// instead of firing late. Unset, a late tick fires (at most once
	// however many were missed). Additive: as a CronJob's.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="startingDeadlineSeconds must be 0 or more",reason=FieldValueInvalid
	StartingDeadlineSeconds *int64 `json:"startingDeadlineSeconds,omitempty"`
}

// SympoziumScheduleStatus is the schedule's last and next runs.
type SympoziumScheduleStatus struct {
	// phase is Active, Suspended or Error (an invalid schedule or time
	// zone, a schedule that never ticks, a missing instance: the
	// conditions say which).
	// +optional
	Phase string `json:"phase,omitempty"`

	// lastRunTime is the tick of the last run created (sympozium writes
	// the time it created it).
	// +optional
	LastRunTime *metav1.Time `json:"lastRunTime,omitempty"`

	// nextRunTime is the next tick.
	// +optional
	NextRunTime *metav1.Time `json:"nextRunTime,omitempty"`

	// lastRunName is the name of the last run created.
	// +optional
	LastRunName string `json:"lastRunName,omitempty"`

	// totalRuns counts the runs the schedule created.
	// +optional
	TotalRuns int64 `json:"totalRuns,omitempty"`

	// lastScheduleTime is the last tick handled: fired, or skipped
	// (concurrencyPolicy Forbid, startingDeadlineSeconds, suspended).
	// Additive: as a CronJob's.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// conditions: Ready (False with the reason when the schedule cannot
	// fire).
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// SympoziumScheduleList is a list of SympoziumSchedules.
type SympoziumScheduleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SympoziumSchedule `json:"items"`
}
