// Package phase is the AgentRun phase state machine: a pure function from
// what the controller observed (the run, its instance, its workload and
// agent Pod, the instance's sub-agent load, the clock) to what the run's
// status must be and which actions bring the cluster there.
//
// One lifecycle (admission, deadlines, terminal phases, conditions, events,
// the server finalizer) runs over every execution backend and names none of
// them: each backend is an adapter (task.go, server.go, sandbox.go, listed
// in workload.go) that knows only its own objects: the Job of a task-mode
// run, the Deployment and Service of a server-mode run, the Sandbox or
// SandboxClaim of an agent-sandbox run. What the machine reads of cached
// objects is fixed beside it (cached.go).
//
// Nothing here does I/O, reads a clock, logs or draws random numbers, and
// inputs (which point into informer caches) are never mutated: the same
// Observed always gives the same Decision.
package phase

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Config holds the controller's settings the decisions depend on.
type Config struct {
	// Workload configures the workload builder (agent image, default
	// timeout).
	Workload workload.Config
	// Grace is how long a run may wait for a missing ConfigMap or parent, or
	// an agent container may wait on an image pull or a missing Secret,
	// before the run fails.
	Grace time.Duration
	// MaxResultBytes bounds status.result.
	MaxResultBytes int
	// MaxConcurrentRuns caps the admitted, unfinished runs of the whole
	// controller (--max-concurrent-runs); 0 is no limit.
	MaxConcurrentRuns int
	// SkillsNamespace is where cluster admins install SkillPacks: only
	// packs from there may declare clusterRBAC (workload.CheckGrants).
	SkillsNamespace string
}

// Observed is everything a decision depends on. Pointers point into informer
// caches and are read-only.
type Observed struct {
	Run      *v1alpha1.AgentRun
	Instance *v1alpha1.SympoziumInstance // nil: not found
	// Objects are the run's workload objects as the caches hold them, by
	// kind (the kinds of its backend, see Children); a kind is absent when
	// the cache has none. A cached Deployment may have its pod template
	// trimmed (see runcache.TrimForCache).
	Objects Objects
	// WorkloadExpected is true when this controller created the run's
	// workload and the cache has not shown it yet: a missing workload is
	// then not lost.
	WorkloadExpected bool
	// Pod is the agent pod: the newest pod of the Job (task mode), the
	// newest pod of the Deployment (server mode), the pod named like the
	// Sandbox (agent sandbox); nil when there is none.
	Pod *corev1.Pod
	// SandboxAPI is what the cluster serves of the agent-sandbox API (read
	// by the agent-sandbox backends only).
	SandboxAPI SandboxAPI
	// PoolTemplate is the run's warm pool's template, looked up before the
	// claim of a run that NeedsPoolTemplate is created; nil otherwise.
	PoolTemplate *PoolTemplate
	// LogTail is the end of the agent container's log, read only when the
	// agent terminated and its termination message holds no report.
	LogTail string
	// SkillPacks are the SkillPacks the run mounts, by name (for their
	// sidecars); missing ones are absent.
	SkillPacks map[string]*v1alpha1.SkillPack
	// MissingConfigMaps are the skill ConfigMaps the pod would mount that
	// do not exist.
	MissingConfigMaps []string
	// Refused is the API server's refusal of a write of the previous
	// decision on this run, in the same sync (see Refusal); zero when
	// none was refused.
	Refused Refusal
	// Grants are the run's RoleBindings, ClusterRoleBindings and
	// ClusterRoles as cached (see identity.go).
	Grants []Grant
	// SkillMirrors are the mounted SkillPacks found in the skills
	// namespace, whose ConfigMaps are mirrored into the run's (those are
	// not in MissingConfigMaps).
	SkillMirrors []SkillMirror
	// NewAPIKey is a fresh random key for the API-key Secret of a server
	// that needs one (workload.ServerAPIKeySecret), used only when the
	// Secret is created.
	NewAPIKey string
	// OrphanGrants are cluster-scoped grants made for an earlier run of
	// the same namespace and name (the garbage collector cannot take them:
	// a cluster-scoped object has no namespaced owner); they are revoked.
	OrphanGrants []Grant

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

	// The run limits (see capacity.go), counted only for a run that is not
	// admitted yet and only where a limit applies.
	// Runs is the load of the run's instance (its maxConcurrentRuns).
	Runs Load
	// AllRuns is the load of the whole controller (Config.MaxConcurrentRuns).
	AllRuns Load

	Config Config
	Now    time.Time
}

// Event is a Kubernetes Event to record once the status is written.
type Event struct {
	Type    string // corev1.EventTypeNormal or corev1.EventTypeWarning
	Reason  string
	Message string
	// Progress marks a step of the happy path that says nothing the run's
	// status does not (the Admitted and Running conditions): a plain
	// JobCreated, a task's Started. The controller records it only when
	// asked to (--progress-events): under a burst it would be most of the
	// Event writes. Never set on a Warning, a wait, an outcome, or an
	// admission whose message has more to say (an adopted workload, an
	// ignored field).
	Progress bool
}

// Decision is the desired status and the actions that lead to it.
type Decision struct {
	// Status is the complete desired status.
	Status v1alpha1.AgentRunStatus
	// SetOwner, when set, is an ownerReference to add to the run (a
	// sub-agent run is owned by its parent).
	SetOwner *metav1.OwnerReference
	// AddFinalizer asks to add v1alpha1.FinalizerServer to the run (before
	// anything is created); RemoveFinalizer to remove it (after everything
	// else: the status write and the deletes).
	AddFinalizer    bool
	RemoveFinalizer bool
	// Actions are the writes to the run's children, in order: apply
	// executes the creates, then the updates, writes the status, then the
	// deletes. A finished decision (terminal phase) carries deletes only.
	Actions []Action
	// KeepLog asks to keep the end of the agent's log (ConfigMap
	// naming.LogName, owned by the run) before the status write and the
	// deletes: the run failed now and its agent pod is about to be deleted
	// with its workload. Only a failure asks: a successful run spends no
	// write on it. nil: nothing to keep.
	KeepLog *KeptLog
	// RemoveLegacyFinalizer asks to remove LegacyFinalizer (left by
	// sympozium's own controller) and nothing else: the decision that
	// asks for it changes nothing more, and the next one is taken on the
	// run without it.
	RemoveLegacyFinalizer bool
	// RequeueAfter is the next deadline or grace expiry; 0 for none.
	RequeueAfter time.Duration
	// Events are recorded after the status is written, only on transitions.
	Events []Event
}

// KeptLog is the log a failed run keeps: its agent pod's (in the run's
// namespace) and the end of the log already read for the result marker
// ("" when none was read: apply reads it).
type KeptLog struct {
	Pod  string
	Tail string
}

// LegacyFinalizer is the finalizer sympozium's own controller (commit
// 25c0bb2) put on every run it had not finished; it removes it only when
// it runs itself. This controller needs none of it (a server run holds its
// own), so it goes first, also from a run being deleted, which it would
// otherwise hold forever.
const LegacyFinalizer = "sympozium.ai/agentrun-finalizer"

// Refusal is the API server's refusal of one of a decision's writes,
// which the machine decides on once more in the same sync.
type Refusal struct {
	Kind RefusalKind
	// Reason is the API server's message.
	Reason string
}

// RefusalKind says which write was refused; "" for none.
type RefusalKind string

const (
	// RefusedInvalid: a create of the run's workload (or another child)
	// was Invalid. The run fails (InvalidSpec).
	RefusedInvalid RefusalKind = "Invalid"
	// RefusedGrant: a create of one of the run's identity objects was
	// Forbidden (it grants more than the controller holds). The run
	// fails (GrantRefused).
	RefusedGrant RefusalKind = "GrantForbidden"
	// RefusedCompacted: the status of a finished run was to change, but
	// the run was the cache's compacted copy (runcache.TrimForCache),
	// whose status is never written back; the run is read from the API
	// server and decided on again. The machine needs nothing from it.
	RefusedCompacted RefusalKind = "Compacted"
)

// Verb is what an Action does to its object.
type Verb string

const (
	Create Verb = "create"
	Update Verb = "update"
	Delete Verb = "delete"
	// Retire labels a child a finished run keeps with v1alpha1.LabelRetired
	// (a merge patch of that label, the UID as precondition), after the
	// status write like a delete: the informers, which select children
	// without the label, then drop it (see retireKept).
	Retire Verb = "retire"
)

// Action is one write to a child of the run. Object is what to create, or
// the replacement (carrying the cached resourceVersion) to update with, or
// the identity (namespace, name, UID) of the cached object to delete: the
// UID is the delete's precondition.
type Action struct {
	Verb   Verb
	Kind   Kind
	Object metav1.Object
}

// MinRequeue is the shortest delay a Decision asks for.
const MinRequeue = time.Second

// Next decides the run's next status and actions.
func Next(in Observed) Decision {
	if slices.Contains(in.Run.Finalizers, LegacyFinalizer) {
		return Decision{Status: *in.Run.Status.DeepCopy(), RemoveLegacyFinalizer: true}
	}
	if in.Run.DeletionTimestamp != nil && !HasFinalizer(in.Run) {
		// Left to the garbage collector, but for the cluster-scoped grants,
		// which it cannot take: nothing else changes, not even the
		// observed generation.
		m := &machine{in: in}
		m.revoke(slices.DeleteFunc(slices.Clone(in.Grants), func(g Grant) bool { return g.Kind == KindRoleBinding }))
		m.revoke(in.OrphanGrants)
		return Decision{Status: *in.Run.Status.DeepCopy(), Actions: m.deletes}
	}
	m := &machine{in: in, st: *in.Run.Status.DeepCopy()}
	m.w = newAdapter(m)
	m.st.ObservedGeneration = in.Run.Generation
	m.step()
	if m.d.RequeueAfter > 0 && m.d.RequeueAfter < MinRequeue {
		m.d.RequeueAfter = MinRequeue
	}
	// The finalizer is held only while a run is live: once the outcome is
	// recorded (and the server removed) nothing needs to delay deletion.
	if HasFinalizer(in.Run) && m.st.Phase.IsTerminal() {
		m.d.RemoveFinalizer = true
	}
	if m.d.RemoveFinalizer || m.st.Phase.IsTerminal() {
		m.d.AddFinalizer = false
	}
	// A finished run creates and updates nothing, whatever was asked for
	// before it finished: only the deletes leave the machine.
	if !m.st.Phase.IsTerminal() {
		m.d.Actions = append(m.d.Actions, m.writes...)
	}
	if m.st.Phase.IsTerminal() && in.Run.DeletionTimestamp == nil {
		m.retireKept()
	}
	// The grants end with the run, whatever its outcome and spec.cleanup.
	if m.st.Phase.IsTerminal() || in.Run.DeletionTimestamp != nil {
		m.revokeGrants()
	}
	m.revoke(in.OrphanGrants)
	m.d.Actions = append(m.d.Actions, m.deletes...)
	m.d.Status = m.st
	return m.d
}

// HasFinalizer reports whether the run holds v1alpha1.FinalizerServer.
func HasFinalizer(run *v1alpha1.AgentRun) bool {
	return slices.Contains(run.Finalizers, v1alpha1.FinalizerServer)
}

type machine struct {
	in Observed
	w  adapter
	st v1alpha1.AgentRunStatus
	d  Decision
	// writes (creates, updates) and deletes become the Decision's actions.
	writes, deletes []Action
}

// act asks for an action; Next decides which of them leave the machine.
func (m *machine) act(verb Verb, kind Kind, obj metav1.Object) {
	a := Action{Verb: verb, Kind: kind, Object: obj}
	if verb == Delete || verb == Retire {
		m.deletes = append(m.deletes, a)
		return
	}
	m.writes = append(m.writes, a)
}

func (m *machine) run() *v1alpha1.AgentRun { return m.in.Run }

func (m *machine) step() {
	if m.run().DeletionTimestamp != nil {
		m.deleted()
		return
	}
	if m.st.Phase.IsTerminal() {
		m.finished()
		return
	}
	if m.stopRequested() {
		return
	}
	m.adoptByParent()
	if m.st.Phase == "" {
		m.st.Phase = v1alpha1.PhasePending
	}
	if m.in.Refused.Kind == RefusedGrant {
		// At admission, or when a server's rebuilt pod needs new grants.
		m.fail(v1alpha1.ReasonGrantRefused, grantRefusedMessage(m.in.Refused.Reason), nil)
		return
	}
	w := m.w
	obj := w.object()
	if obj == nil && !m.in.WorkloadExpected {
		if w.recorded() {
			if !m.foreignWorkload() {
				w.lost()
			}
			return
		}
		m.admit()
		return
	}
	if obj != nil && !metav1.IsControlledBy(obj, m.run()) {
		m.fail(v1alpha1.ReasonChildNameConflict, fmt.Sprintf("%s %s exists and is not controlled by this run", w.kind(), obj.GetName()), nil)
		return
	}
	if adopt := m.adopting(obj); !w.recorded() || adopt {
		// The workload exists (or was just created) but the status that
		// admitted the run was never written: an earlier write lost a
		// conflict or the controller stopped in between, or sympozium's
		// own controller created it (see adopting). Record the admission
		// now.
		w.record()
		if m.st.TraceID == "" {
			m.st.TraceID, _ = workload.TraceParent(m.run())
		}
		msg := m.created(obj)
		if m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, msg) {
			m.admissionEvent(msg)
		}
		if adopt {
			m.adoptedPhase()
		}
	}
	if w.needsFinalizer() && !HasFinalizer(m.run()) {
		m.d.AddFinalizer = true
	}
	w.observe()
}

// finished keeps a terminal status as it is and only cleans up: the
// workload goes unless spec.cleanup is keep, and always after a timeout.
func (m *machine) finished() {
	m.w.remove(forcesCleanup(failedReason(&m.st)))
}

// retireKept asks to retire what a finished run keeps: each of its
// workload objects that is not deleted now (spec.cleanup: keep) and, when
// none is, its agent pod (which would otherwise go with the workload).
// Retired children leave the informers' caches, so a long history of kept
// runs does not grow the controller's memory; in the cluster they stay as
// they were, with one more label.
func (m *machine) retireKept() {
	deleted := map[Kind]bool{}
	for _, a := range m.deletes {
		if a.Verb == Delete {
			deleted[a.Kind] = true
		}
	}
	for _, ch := range Children(m.run()) {
		obj := m.in.Objects[ch.Kind]
		if obj == nil || deleted[ch.Kind] || !retirable(obj) || !metav1.IsControlledBy(obj, m.run()) {
			continue
		}
		m.act(Retire, ch.Kind, identity(obj))
	}
	// Only a pod the controller's informer holds (a warm pool's pod, read
	// once from the API server, does not carry the label it selects).
	if p := m.in.Pod; len(deleted) == 0 && p != nil && retirable(p) && p.Labels[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue {
		m.act(Retire, KindPod, identity(p))
	}
}

// retirable reports whether obj is neither being deleted nor retired.
func retirable(obj metav1.Object) bool {
	return obj.GetDeletionTimestamp() == nil && obj.GetLabels()[v1alpha1.LabelRetired] == ""
}

// identity is what an action on an existing object carries: its namespace,
// name and UID (the write's precondition).
func identity(obj metav1.Object) *metav1.ObjectMeta {
	return &metav1.ObjectMeta{Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID()}
}

// forcesCleanup reports a failure whose workload is deleted whatever
// spec.cleanup says: the run ran out of time.
func forcesCleanup(reason string) bool {
	switch reason {
	case v1alpha1.ReasonTimeout, v1alpha1.ReasonServerNotReady, v1alpha1.ReasonCancelled, v1alpha1.ReasonParentFinished:
		return true
	}
	return false
}

// deleted handles a run being deleted that still holds the server
// finalizer: its outcome is recorded (a serving run Succeeded; one that
// never served Failed), its workload deleted, and the finalizer released.
// Runs without the finalizer are left to the garbage collector.
func (m *machine) deleted() {
	switch {
	case m.st.Phase == v1alpha1.PhaseServing:
		m.stopped()
	case !m.st.Phase.IsTerminal():
		m.fail(v1alpha1.ReasonServerNotReady, "the run was deleted before its server became available", nil)
	}
	m.w.remove(true)
	m.d.RemoveFinalizer = true
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

// deadline is the run's effective deadline: its own, or its parent's when
// that is earlier (a parent's budget caps its children).
func (m *machine) deadline() time.Time {
	return workload.EffectiveDeadline(m.inputs(), m.in.Config.Workload.DefaultTimeout)
}

func (m *machine) timeout() time.Duration {
	return workload.Timeout(m.run(), m.in.Instance, m.in.Config.Workload.DefaultTimeout)
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
	if why := m.w.unavailable(); why != "" {
		m.fail(v1alpha1.ReasonSandboxUnavailable, why, nil)
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
	if msg := m.atCapacity(); msg != "" {
		m.wait(v1alpha1.ReasonWaitingForCapacity, msg, 0)
		return
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
	if m.in.Refused.Kind == RefusedInvalid {
		m.fail(v1alpha1.ReasonInvalidSpec, "the API server rejected the run's "+m.w.kind()+": "+m.in.Refused.Reason, nil)
		return
	}
	// The identity is asked for before the workload (a pod naming a
	// missing ServiceAccount is refused); a pod that cannot be built at
	// all is the first thing to say.
	m.mirrorSkills()
	refused := m.grantIdentity()
	if err := m.w.create(); err != nil {
		m.fail(failureReason(err), err.Error(), nil)
		return
	}
	if refused != nil {
		m.fail(failureReason(refused), refused.Error(), nil)
		return
	}
	m.w.record()
	if m.w.needsFinalizer() && !HasFinalizer(run) {
		m.d.AddFinalizer = true
	}
	m.st.TraceID, _ = workload.TraceParent(run)
	msg := m.created(nil)
	m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, msg)
	m.admissionEvent(msg)
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

// agentOf returns the agent container's status in pod; nil without one.
// The pod's name is recorded with the next transition (Running or the
// outcome), not on its own: one status write less per run.
func agentOf(pod *corev1.Pod) *corev1.ContainerStatus {
	if pod == nil {
		return nil
	}
	return agentStatus(pod)
}

// followPod is the part of following an admitted run that every backend
// whose agent runs to completion shares, once the outcomes it can read
// from its own objects are ruled out: the deadline, an agent container
// that cannot start (after the grace period), the start of the agent.
func (m *machine) followPod(pod *corev1.Pod, agent *corev1.ContainerStatus) {
	if !m.in.Now.Before(m.deadline()) {
		m.fail(v1alpha1.ReasonTimeout, m.timeoutMessage(pod, agent), nil)
		return
	}
	if m.waitingTooLong(pod, agent) {
		return
	}
	if agent != nil && agent.State.Running != nil && m.st.Phase == v1alpha1.PhasePending {
		m.start(agent.State.Running.StartedAt)
	}
	m.requeueAt(m.deadline())
}

// waitingTooLong fails the run when its agent container has been waiting
// for a reason that does not heal (an image that cannot be pulled, a
// missing Secret) for longer than the grace period, and reports whether it
// did. Within the grace period it asks to be woken when it ends.
func (m *machine) waitingTooLong(pod *corev1.Pod, agent *corev1.ContainerStatus) bool {
	if agent == nil || agent.State.Waiting == nil {
		return false
	}
	w := agent.State.Waiting
	reason := waitingFailure(w.Reason)
	if reason == "" {
		return false
	}
	if left := m.graceLeft(pod.CreationTimestamp); left > 0 {
		m.requeue(left)
		return false
	}
	m.fail(reason, fmt.Sprintf("agent container waiting: %s: %s", w.Reason, w.Message), nil)
	return true
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
	m.progress(v1alpha1.ReasonStarted, msg)
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

// stopped records the outcome of a serving run that is being deleted: it
// did what it was for.
func (m *machine) stopped() {
	m.st.Phase = v1alpha1.PhaseSucceeded
	m.complete()
	msg := "the run was deleted: its server was stopped"
	m.setCondition(v1alpha1.ConditionServing, metav1.ConditionFalse, v1alpha1.ReasonSucceeded, msg)
	m.setCondition(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, msg)
	m.event(corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, msg)
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
	if c := findCondition(m.st.Conditions, v1alpha1.ConditionServing); c != nil {
		m.setCondition(v1alpha1.ConditionServing, metav1.ConditionFalse, reason, msg)
	}
	if !m.w.recorded() {
		m.setCondition(v1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, msg)
	}
	m.setCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, reason, msg)
	m.event(corev1.EventTypeWarning, reason, msg)
	m.w.remove(forcesCleanup(reason))
	m.d.KeepLog = nil
	if m.keepsLog(reason) {
		m.d.KeepLog = &KeptLog{Pod: m.in.Pod.Name, Tail: m.in.LogTail}
	}
}

// keepsLog reports whether a run failing now with reason loses its agent's
// log: it has a pod, and the pod goes with the workload (cleanup: delete,
// or a failure that forces the cleanup). A run being deleted keeps
// nothing: the ConfigMap would go with it.
func (m *machine) keepsLog(reason string) bool {
	return m.in.Pod != nil && m.run().DeletionTimestamp == nil &&
		(forcesCleanup(reason) || m.run().Spec.Cleanup != v1alpha1.CleanupKeep)
}

func (m *machine) complete() {
	m.recordPod()
	now := metav1.NewTime(m.in.Now)
	m.st.CompletedAt = &now
	m.d.RequeueAfter = 0
}

// cleanup removes the workload of a finished run unless spec.cleanup is
// keep.
func (m *machine) cleanup() { m.w.remove(false) }

// removable reports whether obj (not nil), part of the run's workload, is
// to be deleted: it is not being deleted already, is the run's, and either force
// is set or spec.cleanup is not keep.
func (m *machine) removable(obj metav1.Object, force bool) bool {
	if obj.GetDeletionTimestamp() != nil || !metav1.IsControlledBy(obj, m.run()) {
		return false
	}
	return force || m.run().Spec.Cleanup != v1alpha1.CleanupKeep
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

// progress is a Normal event of the happy path (see Event.Progress).
func (m *machine) progress(reason, msg string) {
	m.d.Events = append(m.d.Events, Event{Type: corev1.EventTypeNormal, Reason: reason, Message: msg, Progress: true})
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
