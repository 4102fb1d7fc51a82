package v1alpha1

// Phases of an AgentRun. Succeeded and Failed are terminal: nothing moves a
// run out of them.
const (
	PhasePending   AgentRunPhase = "Pending"
	PhaseRunning   AgentRunPhase = "Running"
	PhaseServing   AgentRunPhase = "Serving"
	PhaseSucceeded AgentRunPhase = "Succeeded"
	PhaseFailed    AgentRunPhase = "Failed"
)

// IsTerminal reports whether p is Succeeded or Failed.
func (p AgentRunPhase) IsTerminal() bool { return p == PhaseSucceeded || p == PhaseFailed }

// Workload is the kind and name of the workload the run was admitted to,
// read from the status field its backend writes; both "" before
// admission. It is the one reader of those fields: the admission test of
// the state machine, the metrics and the traces ask it, so a new backend's
// status field is added here and nowhere else (TestWorkloadCoversEveryName
// fails until it is).
func (s *AgentRunStatus) Workload() (kind, name string) {
	switch {
	case s.JobName != "":
		return "Job", s.JobName
	case s.DeploymentName != "":
		return "Deployment", s.DeploymentName
	case s.SandboxName != "":
		return "Sandbox", s.SandboxName
	case s.SandboxClaimName != "":
		return "SandboxClaim", s.SandboxClaimName
	}
	return "", ""
}

// Modes, cleanup policies and thinking modes.
const (
	ModeTask   AgentRunMode = "task"
	ModeServer AgentRunMode = "server"

	CleanupDelete CleanupPolicy = "delete"
	CleanupKeep   CleanupPolicy = "keep"

	ThinkingOff    ThinkingMode = "off"
	ThinkingLow    ThinkingMode = "low"
	ThinkingMedium ThinkingMode = "medium"
	ThinkingHigh   ThinkingMode = "high"
)

// Condition types of an AgentRun, Job-style, so that
// `kubectl wait --for=condition=Complete agentrun/x` works.
const (
	// ConditionAdmitted is True once the workload is created, False while the
	// run waits (WaitingForCapacity, InstanceNotFound).
	ConditionAdmitted = "Admitted"
	// ConditionRunning is True while the agent container runs.
	ConditionRunning = "Running"
	// ConditionServing is True while a server-mode run is available.
	ConditionServing = "Serving"
	// ConditionComplete is True once the run Succeeded.
	ConditionComplete = "Complete"
	// ConditionFailed is True once the run Failed.
	ConditionFailed = "Failed"
)

// Reasons: the fixed catalogue used for conditions, Events and the context of
// status.error. docs and code are kept in agreement by a test.
const (
	ReasonWaitingForCapacity = "WaitingForCapacity"
	ReasonInstanceNotFound   = "InstanceNotFound"
	ReasonJobCreated         = "JobCreated"
	ReasonStarted            = "Started"
	ReasonSucceeded          = "Succeeded"
	ReasonAgentFailed        = "AgentFailed"
	ReasonTimeout            = "Timeout"
	ReasonPodLost            = "PodLost"
	ReasonJobLost            = "JobLost"
	ReasonImagePullFailed    = "ImagePullFailed"
	ReasonConfigError        = "ConfigError"
	ReasonUnschedulable      = "Unschedulable"
	ReasonSpawnDepthExceeded = "SpawnDepthExceeded"
	ReasonTooManyChildren    = "TooManyChildren"
	ReasonSandboxUnavailable = "SandboxUnavailable"
	ReasonChildNameConflict  = "ChildNameConflict"
	ReasonServerNotReady     = "ServerNotReady"
	ReasonInvalidSpec        = "InvalidSpec"
	// ReasonCancelled: spec.cancel was set (on the run, or on the parent
	// of a sub-agent run; the message names it).
	ReasonCancelled = "Cancelled"
	// ReasonParentFinished: the parent of a sub-agent run finished first.
	ReasonParentFinished = "ParentFinished"
	// ReasonRetrying is the Event of a task-mode run whose Job replaces a
	// pod the infrastructure stopped (spec.retry); the run stays Running.
	ReasonRetrying         = "Retrying"
	ReasonHostAccessDenied = "HostAccessDenied"
	ReasonGrantRefused     = "GrantRefused"
	// ReasonSandboxRefused: the agent-sandbox controller refuses the run's
	// Sandbox or SandboxClaim, or reports it unhealthy, for a reason that
	// waiting does not heal; the message names agent-sandbox's own reason.
	ReasonSandboxRefused = "SandboxRefused"
)

// Reasons lists the whole catalogue, in a stable order.
var Reasons = []string{
	ReasonWaitingForCapacity, ReasonInstanceNotFound, ReasonJobCreated, ReasonStarted,
	ReasonSucceeded, ReasonAgentFailed, ReasonTimeout, ReasonPodLost, ReasonJobLost,
	ReasonImagePullFailed, ReasonConfigError, ReasonUnschedulable, ReasonSpawnDepthExceeded,
	ReasonTooManyChildren, ReasonSandboxUnavailable, ReasonChildNameConflict,
	ReasonServerNotReady, ReasonInvalidSpec, ReasonCancelled, ReasonParentFinished, ReasonRetrying,
	ReasonHostAccessDenied, ReasonGrantRefused, ReasonSandboxRefused,
}

// Labels and annotations the controller puts on the objects it creates.
const (
	// LabelManagedBy marks every child object; informers for children are
	// filtered on it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is LabelManagedBy's value.
	ManagedByValue = "sympozium-controller"
	// FieldManager is the field manager of every write of the controllers
	// and the source of their events.
	FieldManager = ManagedByValue
	// LabelAgentRun carries the owning run's name.
	LabelAgentRun = "sympozium.ai/agent-run"
	// LabelInstance carries the run's instance.
	LabelInstance = "sympozium.ai/instance"
	// AnnotationCancelledBy names who set spec.cancel (a schedule replacing
	// its run); the run's Cancelled message repeats it.
	AnnotationCancelledBy = "sympozium.ai/cancelled-by"
	// LabelComponent distinguishes agent pods from other children.
	LabelComponent = "sympozium.ai/component"
	// LabelAgentSandbox ("true") marks a run's agent-sandbox Sandbox and
	// SandboxClaim, as sympozium's controller labels them (its clients
	// select on it).
	LabelAgentSandbox = "sympozium.ai/agent-sandbox"
	// LabelSkillPack marks a SkillPack's rendered ConfigMap.
	LabelSkillPack = "sympozium.ai/skillpack"
	// LabelRetired ("true") marks a child a finished run keeps
	// (spec.cleanup: keep): the controller's informers select children
	// without it, so kept children of finished runs cost it no memory.
	LabelRetired = "sympozium.ai/retired"

	// FinalizerServer holds a server-mode run until its Deployment and
	// Service are removed and its outcome is recorded.
	FinalizerServer = "sympozium.ai/server-cleanup"

	// AgentContainerName is the container whose exit decides the run.
	AgentContainerName = "agent"
)
