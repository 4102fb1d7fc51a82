// Package phase is the AgentRun phase state machine: a pure function from
// what the controller observed (the run, its instance, its Job and agent
// Pod, the instance's sub-agent load, the clock) to what the run's status
// must be and which actions bring the cluster there.
//
// Nothing here does I/O, reads a clock, logs or draws random numbers, and
// inputs (which point into informer caches) are never mutated: the same
// Observed always gives the same Decision.
package phase

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/jobspec"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Config holds the controller's settings the decisions depend on.
type Config struct {
	// Job configures the workload builder (agent image, default timeout).
	Job jobspec.Config
	// Grace is how long a run may wait for a missing ConfigMap or parent, or
	// an agent container may wait on an image pull or a missing Secret,
	// before the run fails.
	Grace time.Duration
	// MaxResultBytes bounds status.result.
	MaxResultBytes int
}

// Observed is everything a decision depends on. Pointers point into informer
// caches and are read-only.
type Observed struct {
	Run      *v1alpha1.AgentRun
	Instance *v1alpha1.SympoziumInstance // nil: not found
	// Job is the run's Job (by its deterministic name); nil when the cache
	// has none.
	Job *batchv1.Job
	// JobExpected is true when this controller created the Job and the
	// cache has not shown it yet: a missing Job is then not lost.
	JobExpected bool
	// Pod is the newest pod of Job; nil when there is none.
	Pod *corev1.Pod
	// LogTail is the end of the agent container's log, read only when the
	// agent terminated and its termination message holds no report.
	LogTail string
	// SkillPacks are the SkillPacks the run mounts, by name (for their
	// sidecars); missing ones are absent.
	SkillPacks map[string]*v1alpha1.SkillPack
	// MissingConfigMaps are the skill ConfigMaps the pod would mount that
	// do not exist.
	MissingConfigMaps []string
	// JobRejected is the API server's reason for refusing the Job this
	// machine asked to create (an invalid object); "" when not refused.
	JobRejected string

	// Sub-agent runs only (spec.parent set).
	// Parent is the parent run; nil when not found.
	Parent *v1alpha1.AgentRun
	// ChildRank is this run's 0-based position among its parent's children,
	// oldest first.
	ChildRank int
	// ActiveSubagents counts the instance's other admitted, unfinished
	// sub-agent runs.
	ActiveSubagents int
	// WaitingAhead counts the instance's sub-agent runs waiting for
	// capacity that are older than this one.
	WaitingAhead int

	Config Config
	Now    time.Time
}

// Event is a Kubernetes Event to record once the status is written.
type Event struct {
	Type    string // corev1.EventTypeNormal or corev1.EventTypeWarning
	Reason  string
	Message string
}

// Decision is the desired status and the actions that lead to it.
type Decision struct {
	// Status is the complete desired status.
	Status v1alpha1.AgentRunStatus
	// SetOwner, when set, is an ownerReference to add to the run (a
	// sub-agent run is owned by its parent).
	SetOwner *metav1.OwnerReference
	// CreateJob is the Job to create; nil for none.
	CreateJob *batchv1.Job
	// DeleteJob asks to delete Observed.Job (with its UID as precondition).
	DeleteJob bool
	// RequeueAfter is the next deadline or grace expiry; 0 for none.
	RequeueAfter time.Duration
	// Events are recorded after the status is written, only on transitions.
	Events []Event
}

// MinRequeue is the shortest delay a Decision asks for.
const MinRequeue = time.Second

// Next decides the run's next status and actions.
func Next(in Observed) Decision {
	m := machine{in: in, st: *in.Run.Status.DeepCopy()}
	m.st.ObservedGeneration = in.Run.Generation
	m.step()
	if m.d.RequeueAfter > 0 && m.d.RequeueAfter < MinRequeue {
		m.d.RequeueAfter = MinRequeue
	}
	m.d.Status = m.st
	return m.d
}

type machine struct {
	in Observed
	st v1alpha1.AgentRunStatus
	d  Decision
}

func (m *machine) run() *v1alpha1.AgentRun { return m.in.Run }

func (m *machine) step() {
	if m.st.Phase.IsTerminal() {
		m.finished()
		return
	}
	m.adoptByParent()
	if m.st.Phase == "" {
		m.st.Phase = v1alpha1.PhasePending
	}
	if m.in.Job == nil && !m.in.JobExpected {
		if m.st.JobName != "" {
			m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("Job %s was deleted before the run finished", m.st.JobName), nil)
			return
		}
		m.admit()
		return
	}
	if m.in.Job != nil && !metav1.IsControlledBy(m.in.Job, m.run()) {
		m.fail(v1alpha1.ReasonChildNameConflict, fmt.Sprintf("Job %s exists and is not controlled by this run", m.in.Job.Name), nil)
		return
	}
	if m.st.JobName == "" {
		// The Job exists (or was just created) but the status that admitted
		// the run was never written: an earlier write lost a conflict or the
		// controller stopped in between. Record the admission now.
		name := naming.JobName(m.run().Name)
		if m.in.Job != nil {
			name = m.in.Job.Name
		}
		m.st.JobName = name
		if m.st.TraceID == "" {
			m.st.TraceID, _ = jobspec.TraceParent(m.run())
		}
		msg := fmt.Sprintf("Job %s created", name)
		if m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, msg) {
			m.event(corev1.EventTypeNormal, v1alpha1.ReasonJobCreated, msg)
		}
	}
	m.observeWorkload()
}

// finished keeps a terminal status as it is and only cleans up.
func (m *machine) finished() {
	job := m.in.Job
	if job == nil || job.DeletionTimestamp != nil || !metav1.IsControlledBy(job, m.run()) {
		return
	}
	if m.run().Spec.Cleanup != v1alpha1.CleanupKeep || failedReason(&m.st) == v1alpha1.ReasonTimeout {
		m.d.DeleteJob = true
	}
}

// adoptByParent asks for the ownerReference from a sub-agent run to its
// parent, so that deleting the parent removes its children.
func (m *machine) adoptByParent() {
	p := m.in.Parent
	if m.run().Spec.Parent == nil || p == nil {
		return
	}
	for _, ref := range m.run().OwnerReferences {
		if ref.UID == p.UID {
			return
		}
	}
	m.d.SetOwner = &metav1.OwnerReference{
		APIVersion: v1alpha1.SchemeGroupVersion.String(),
		Kind:       "AgentRun",
		Name:       p.Name,
		UID:        p.UID,
	}
}

func (m *machine) deadline() time.Time {
	return jobspec.Deadline(m.run(), m.in.Instance, m.in.Config.Job.DefaultTimeout)
}

func (m *machine) timeout() time.Duration {
	return jobspec.Timeout(m.run(), m.in.Instance, m.in.Config.Job.DefaultTimeout)
}

// graceLeft is how long a wait that began at since may still go on.
func (m *machine) graceLeft(since metav1.Time) time.Duration {
	return since.Add(m.in.Config.Grace).Sub(m.in.Now)
}

// admit decides whether the run may start and, if so, creates its Job.
func (m *machine) admit() {
	run := m.run()
	if !m.in.Now.Before(m.deadline()) {
		why := "the run was not admitted"
		if c := findCondition(m.st.Conditions, v1alpha1.ConditionAdmitted); c != nil && c.Status == metav1.ConditionFalse {
			why = c.Reason + ": " + c.Message
		}
		m.fail(v1alpha1.ReasonTimeout, fmt.Sprintf("timeout of %s expired before the run started (%s)", m.timeout(), why), nil)
		return
	}
	if run.Spec.Mode == v1alpha1.ModeServer || (run.Spec.AgentSandbox != nil && run.Spec.AgentSandbox.Enabled) {
		m.fail(v1alpha1.ReasonInvalidSpec, "mode: server and agentSandbox are not supported by this controller version", nil)
		return
	}
	if m.in.Instance == nil {
		m.wait(v1alpha1.ReasonInstanceNotFound, fmt.Sprintf("SympoziumInstance %s not found", run.Spec.InstanceRef), 0)
		return
	}
	if p := run.Spec.Parent; p != nil {
		lim := Limits(m.in.Instance)
		if p.SpawnDepth > lim.MaxDepth {
			m.fail(v1alpha1.ReasonSpawnDepthExceeded, fmt.Sprintf("spawnDepth %d exceeds the instance's maxDepth %d", p.SpawnDepth, lim.MaxDepth), nil)
			return
		}
		if m.in.Parent == nil {
			if left := m.graceLeft(run.CreationTimestamp); left > 0 {
				m.wait(v1alpha1.ReasonInvalidSpec, fmt.Sprintf("waiting for parent run %s", p.RunName), left)
				return
			}
			m.fail(v1alpha1.ReasonInvalidSpec, fmt.Sprintf("parent run %s not found", p.RunName), nil)
			return
		}
		if m.in.ChildRank >= int(lim.MaxChildrenPerAgent) {
			m.fail(v1alpha1.ReasonTooManyChildren, fmt.Sprintf("parent run %s already has %d children, the instance's maxChildrenPerAgent", p.RunName, lim.MaxChildrenPerAgent), nil)
			return
		}
		if m.in.ActiveSubagents+m.in.WaitingAhead >= int(lim.MaxConcurrent) {
			m.wait(v1alpha1.ReasonWaitingForCapacity, fmt.Sprintf("waiting for a sub-agent slot of instance %s (maxConcurrent %d)", run.Spec.InstanceRef, lim.MaxConcurrent), 0)
			return
		}
	}
	if len(m.in.MissingConfigMaps) > 0 {
		msg := fmt.Sprintf("ConfigMap %v not found", m.in.MissingConfigMaps)
		if left := m.graceLeft(run.CreationTimestamp); left > 0 {
			m.wait(v1alpha1.ReasonConfigError, "waiting: "+msg, left)
			return
		}
		m.fail(v1alpha1.ReasonConfigError, msg, nil)
		return
	}
	if m.in.JobRejected != "" {
		m.fail(v1alpha1.ReasonInvalidSpec, "the API server rejected the run's Job: "+m.in.JobRejected, nil)
		return
	}
	job, err := jobspec.Job(m.in.Config.Job, jobspec.Inputs{Run: run, Instance: m.in.Instance, SkillPacks: m.in.SkillPacks, Now: m.in.Now})
	if err != nil {
		m.fail(v1alpha1.ReasonInvalidSpec, err.Error(), nil)
		return
	}
	m.d.CreateJob = job
	m.st.JobName = job.Name
	m.st.TraceID, _ = jobspec.TraceParent(run)
	msg := fmt.Sprintf("Job %s created", job.Name)
	m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, msg)
	m.event(corev1.EventTypeNormal, v1alpha1.ReasonJobCreated, msg)
	m.requeueAt(m.deadline())
}

// wait keeps the run Pending, not admitted, for the given reason. A wait
// ends at the run's deadline at the latest; within sets an earlier wake-up.
func (m *machine) wait(reason, msg string, within time.Duration) {
	if m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, msg) {
		m.event(corev1.EventTypeNormal, reason, msg)
	}
	m.requeueAt(m.deadline())
	if within > 0 {
		m.requeue(within)
	}
}

// observeWorkload follows an admitted run through its Job and agent Pod.
func (m *machine) observeWorkload() {
	job, pod := m.in.Job, m.in.Pod
	var agent *corev1.ContainerStatus
	if pod != nil {
		// The pod's name is recorded with the next transition (Running or
		// the outcome), not on its own: one status write less per run.
		agent = agentStatus(pod)
	}
	switch {
	case agent != nil && agent.State.Terminated != nil:
		m.agentTerminated(pod, agent.State.Terminated)
		return
	case pod != nil && podLost(pod):
		m.fail(v1alpha1.ReasonPodLost, podLostMessage(pod), nil)
		return
	case job != nil && jobFailed(job) != nil:
		c := jobFailed(job)
		if c.Reason == batchv1.JobReasonDeadlineExceeded {
			m.fail(v1alpha1.ReasonTimeout, fmt.Sprintf("Job %s exceeded its active deadline: %s", job.Name, c.Message), nil)
		} else {
			m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("Job %s failed without an agent result: %s: %s", job.Name, c.Reason, c.Message), nil)
		}
		return
	case pod == nil && m.st.PodName != "" && job != nil && job.DeletionTimestamp == nil:
		m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("pod %s disappeared before the agent finished", m.st.PodName), nil)
		return
	case job != nil && pod == nil && jobComplete(job):
		// The pod succeeded (exit 0) but is gone: no report to read.
		m.succeed(0, result.Outcome{Error: "the agent pod was removed before its result could be read"})
		return
	}

	if !m.in.Now.Before(m.deadline()) {
		m.fail(v1alpha1.ReasonTimeout, m.timeoutMessage(pod, agent), nil)
		m.d.DeleteJob = job != nil && job.DeletionTimestamp == nil
		return
	}
	if agent != nil && agent.State.Waiting != nil {
		w := agent.State.Waiting
		if reason := waitingFailure(w.Reason); reason != "" {
			if left := m.graceLeft(pod.CreationTimestamp); left > 0 {
				m.requeue(left)
			} else {
				m.fail(reason, fmt.Sprintf("agent container waiting: %s: %s", w.Reason, w.Message), nil)
				return
			}
		}
	}
	if agent != nil && agent.State.Running != nil && m.st.Phase == v1alpha1.PhasePending {
		m.start(agent.State.Running.StartedAt)
	}
	m.requeueAt(m.deadline())
}

func (m *machine) recordPod() {
	if m.in.Pod != nil {
		m.st.PodName = m.in.Pod.Name
	}
}

func (m *machine) start(at metav1.Time) {
	if at.IsZero() {
		at = metav1.NewTime(m.in.Now)
	}
	m.recordPod()
	m.st.Phase = v1alpha1.PhaseRunning
	m.st.StartedAt = &at
	msg := fmt.Sprintf("agent container started in pod %s", m.st.PodName)
	m.setCondition(v1alpha1.ConditionRunning, metav1.ConditionTrue, v1alpha1.ReasonStarted, msg)
	m.event(corev1.EventTypeNormal, v1alpha1.ReasonStarted, msg)
}

// agentTerminated records the agent's outcome: its exit code decides.
func (m *machine) agentTerminated(pod *corev1.Pod, t *corev1.ContainerStateTerminated) {
	if m.st.StartedAt == nil {
		m.start(t.StartedAt)
	}
	rep, ok := result.Parse(t.Message)
	if !ok && m.in.LogTail != "" {
		rep, ok = result.FindMarker([]byte(m.in.LogTail))
	}
	var out result.Outcome
	if ok {
		out = result.Status(rep, m.maxResultBytes())
	}
	exit := t.ExitCode
	if exit == 0 {
		m.succeed(exit, out)
		return
	}
	if podLost(pod) {
		m.fail(v1alpha1.ReasonPodLost, podLostMessage(pod), &exit)
		m.applyOutcome(out, false)
		return
	}
	msg := fmt.Sprintf("agent container exited with code %d", exit)
	if t.Reason != "" {
		msg += " (" + t.Reason + ")"
	}
	if out.Error != "" {
		msg += ": " + out.Error
	}
	m.fail(v1alpha1.ReasonAgentFailed, msg, &exit)
	m.applyOutcome(out, false)
}

func (m *machine) maxResultBytes() int {
	if m.in.Config.MaxResultBytes > 0 {
		return m.in.Config.MaxResultBytes
	}
	return result.DefaultMaxResultBytes
}

// applyOutcome records the agent's report; withError also takes the
// error the agent reported (a failure keeps the controller's own message,
// which already quotes it).
func (m *machine) applyOutcome(out result.Outcome, withError bool) {
	m.st.Result = out.Result
	m.st.ResultTruncated = out.Truncated
	if withError {
		m.st.Error = out.Error
	}
	u := out.Usage
	if u != (v1alpha1.TokenUsage{}) {
		m.st.TokenUsage = &u
	}
}

func (m *machine) succeed(exit int32, out result.Outcome) {
	m.st.Phase = v1alpha1.PhaseSucceeded
	m.st.ExitCode = &exit
	m.applyOutcome(out, true)
	m.complete()
	msg := "agent container exited with code 0"
	m.setCondition(v1alpha1.ConditionRunning, metav1.ConditionFalse, v1alpha1.ReasonSucceeded, msg)
	m.setCondition(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, msg)
	m.event(corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, msg)
	m.cleanup()
}

// fail moves the run to Failed with reason; exit is the agent's exit code
// when it has one.
func (m *machine) fail(reason, msg string, exit *int32) {
	m.st.Phase = v1alpha1.PhaseFailed
	m.st.Error = reason + ": " + msg
	if exit != nil {
		e := *exit
		m.st.ExitCode = &e
	}
	m.complete()
	if c := findCondition(m.st.Conditions, v1alpha1.ConditionRunning); c != nil {
		m.setCondition(v1alpha1.ConditionRunning, metav1.ConditionFalse, reason, msg)
	}
	if m.st.JobName == "" {
		m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, msg)
	}
	m.setCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, reason, msg)
	m.event(corev1.EventTypeWarning, reason, msg)
	m.d.CreateJob = nil
	if reason == v1alpha1.ReasonTimeout {
		m.d.DeleteJob = m.in.Job != nil && m.in.Job.DeletionTimestamp == nil && metav1.IsControlledBy(m.in.Job, m.run())
		return
	}
	m.cleanup()
}

func (m *machine) complete() {
	m.recordPod()
	now := metav1.NewTime(m.in.Now)
	m.st.CompletedAt = &now
	m.d.RequeueAfter = 0
}

func (m *machine) cleanup() {
	job := m.in.Job
	if job == nil || job.DeletionTimestamp != nil || !metav1.IsControlledBy(job, m.run()) {
		return
	}
	m.d.DeleteJob = m.run().Spec.Cleanup != v1alpha1.CleanupKeep
}

func (m *machine) timeoutMessage(pod *corev1.Pod, agent *corev1.ContainerStatus) string {
	msg := fmt.Sprintf("run exceeded its timeout of %s", m.timeout())
	switch {
	case pod == nil:
		msg += " before its pod was created"
	case unschedulable(pod) != "":
		msg += "; pod " + pod.Name + " never started: " + v1alpha1.ReasonUnschedulable + ": " + unschedulable(pod)
	case agent != nil && agent.State.Waiting != nil:
		msg += "; agent container waiting: " + agent.State.Waiting.Reason
	case agent != nil && agent.State.Running != nil:
		msg += "; the agent was still running"
	}
	return msg
}

func (m *machine) requeueAt(t time.Time) { m.requeue(t.Sub(m.in.Now)) }

// requeue asks to be woken after d at the latest.
func (m *machine) requeue(d time.Duration) {
	if d < MinRequeue {
		d = MinRequeue
	}
	if m.d.RequeueAfter == 0 || d < m.d.RequeueAfter {
		m.d.RequeueAfter = d
	}
}

func (m *machine) event(typ, reason, msg string) {
	m.d.Events = append(m.d.Events, Event{Type: typ, Reason: reason, Message: msg})
}

// setCondition sets a condition and reports whether anything changed.
func (m *machine) setCondition(typ string, status metav1.ConditionStatus, reason, msg string) bool {
	c := findCondition(m.st.Conditions, typ)
	if c != nil && c.Status == status && c.Reason == reason && c.Message == msg && c.ObservedGeneration == m.run().Generation {
		return false
	}
	now := metav1.NewTime(m.in.Now)
	next := metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: m.run().Generation, LastTransitionTime: now}
	if c != nil {
		if c.Status == status {
			next.LastTransitionTime = c.LastTransitionTime
		}
		*c = next
		return true
	}
	m.st.Conditions = append(m.st.Conditions, next)
	return true
}

func findCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func failedReason(st *v1alpha1.AgentRunStatus) string {
	if c := findCondition(st.Conditions, v1alpha1.ConditionFailed); c != nil && c.Status == metav1.ConditionTrue {
		return c.Reason
	}
	return ""
}
