package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The schema in manifests/crds is generated from this file by controller-gen
// (hack/update-codegen.sh); the +kubebuilder markers below are its input and
// nothing else reads them at run time.

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ar,categories=sympozium
// +kubebuilder:printcolumn:name="Instance",type=string,JSONPath=`.spec.instanceRef`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.status.podName`
// +kubebuilder:printcolumn:name="Tokens",type=integer,JSONPath=`.status.tokenUsage.totalTokens`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Failed")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// AgentRun is one invocation of an LLM agent. The controller turns it into a
// Job (mode task), a Deployment and Service (mode server) or an agent-sandbox
// Sandbox (agentSandbox.enabled), and reports the outcome in its status.
type AgentRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the invocation. Only a server-mode run may change it
	// after creation.
	// +required
	Spec AgentRunSpec `json:"spec"`
	// status is written by the controller.
	// +optional
	Status AgentRunStatus `json:"status,omitempty"`
}

// AgentRunMode selects the workload that carries the agent.
//
// The allowed values are checked by a CEL rule rather than an enum: an enum
// violation makes the API server skip every CEL rule of the object and add a
// "some validation rules were not checked" line to the one real mistake.
// +kubebuilder:validation:XValidation:rule="self in ['task', 'server']",message="mode must be task or server"
type AgentRunMode string

// CleanupPolicy says what happens to a finished run's workload (a CEL rule,
// not an enum: see AgentRunMode).
// +kubebuilder:validation:XValidation:rule="self in ['delete', 'keep']",message="cleanup must be delete or keep"
type CleanupPolicy string

// ThinkingMode is the model's reasoning effort (a CEL rule, not an enum: see
// AgentRunMode).
// +kubebuilder:validation:XValidation:rule="self in ['off', 'low', 'medium', 'high']",message="thinking must be off, low, medium or high"
type ThinkingMode string

// AgentRunSpec describes one invocation of an agent.
// +kubebuilder:validation:XValidation:rule="!(has(self.agentSandbox) && has(self.agentSandbox.enabled) && self.agentSandbox.enabled && has(self.mode) && self.mode == 'server')",message="agentSandbox.enabled is not supported with mode: server",fieldPath=".agentSandbox.enabled",reason=FieldValueForbidden
// Fields a run cannot do without are required by CEL rules rather than by the
// schema's required list, for the reason given on AgentRunMode.
// +kubebuilder:validation:XValidation:rule="has(self.instanceRef)",message="instanceRef is required: the SympoziumInstance the run belongs to",fieldPath=".instanceRef",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.agentId)",message="agentId is required: the agent of the instance (it may be empty)",fieldPath=".agentId",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.sessionKey)",message="sessionKey is required: the conversation of the run (it may be empty)",fieldPath=".sessionKey",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.task)",message="task is required: the instruction given to the agent",fieldPath=".task",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.model)",message="model is required: its provider and model name",fieldPath=".model",reason=FieldValueRequired
// The spec of a task-mode run is immutable once created. Fields are compared
// by value (a timeout by its duration), so that a client that writes the
// object back through Go types ("5m" becomes "5m0s") is not refused.
// The API server evaluates every rule of the spec on every status write as
// well (the status subresource validates the whole object), and each field a
// rule reads on the spec costs a copy of the spec's schema (issue 26): the
// rule first asks whether the spec changed at all (self == oldSelf, true on
// every status write), which reads each field once instead of two to four
// times, and decides the same. The rule on agentSandbox with mode: server
// reads agentSandbox first, absent from most runs, for the same reason.
// retry is immutable like the rest of a task-mode spec (its own rule, so the
// rule above stays as it is), and refused where no Job carries it.
// +kubebuilder:validation:XValidation:rule="has(self.retry) ? has(oldSelf.retry) && self.retry == oldSelf.retry : !has(oldSelf.retry)",message="retry is immutable once created",fieldPath=".retry",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="!(has(self.retry) && has(self.retry.infrastructure) && self.retry.infrastructure > 0 && has(self.agentSandbox) && has(self.agentSandbox.enabled) && self.agentSandbox.enabled)",message="retry.infrastructure is not supported with agentSandbox.enabled: a lost sandbox pod fails the run",fieldPath=".retry.infrastructure",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="self == oldSelf || has(oldSelf.mode) && oldSelf.mode == 'server' && has(self.mode) && self.mode == 'server' || (!has(self.instanceRef) || has(oldSelf.instanceRef) && self.instanceRef == oldSelf.instanceRef) && self.agentId == oldSelf.agentId && self.sessionKey == oldSelf.sessionKey && (!has(self.task) || has(oldSelf.task) && self.task == oldSelf.task) && (!has(self.model) || has(oldSelf.model) && self.model == oldSelf.model) && (has(self.systemPrompt) ? has(oldSelf.systemPrompt) && self.systemPrompt == oldSelf.systemPrompt : !has(oldSelf.systemPrompt)) && (has(self.mode) ? has(oldSelf.mode) && self.mode == oldSelf.mode : !has(oldSelf.mode)) && (has(self.parent) ? has(oldSelf.parent) && self.parent == oldSelf.parent : !has(oldSelf.parent)) && (has(self.skills) ? has(oldSelf.skills) && self.skills == oldSelf.skills : !has(oldSelf.skills)) && (has(self.toolPolicy) ? has(oldSelf.toolPolicy) && self.toolPolicy == oldSelf.toolPolicy : !has(oldSelf.toolPolicy)) && (has(self.cleanup) ? has(oldSelf.cleanup) && self.cleanup == oldSelf.cleanup : !has(oldSelf.cleanup)) && (has(self.env) ? has(oldSelf.env) && self.env == oldSelf.env : !has(oldSelf.env)) && (has(self.timeout) ? has(oldSelf.timeout) && duration(self.timeout) == duration(oldSelf.timeout) : !has(oldSelf.timeout)) && (has(self.sandbox) && has(self.sandbox.enabled) && self.sandbox.enabled) == (has(oldSelf.sandbox) && has(oldSelf.sandbox.enabled) && oldSelf.sandbox.enabled) && (has(self.agentSandbox) && has(self.agentSandbox.enabled) && self.agentSandbox.enabled) == (has(oldSelf.agentSandbox) && has(oldSelf.agentSandbox.enabled) && oldSelf.agentSandbox.enabled)",message="spec is immutable once created, except for runs in mode: server"
// spec.cancel is the one field of a task-mode run that may change (it is
// not listed in the rule above), and only from unset or false to true: a
// cancelled run stays cancelled.
// +kubebuilder:validation:XValidation:rule="!(has(oldSelf.cancel) && oldSelf.cancel) || (has(self.cancel) && self.cancel)",message="cancel cannot be undone: a cancelled run stays cancelled",fieldPath=".cancel",reason=FieldValueForbidden
type AgentRunSpec struct {
	// instanceRef is the name of the SympoziumInstance in the same namespace
	// that this run belongs to. The run waits in Pending (reason
	// InstanceNotFound) until it exists.
	// Required by a CEL rule on the spec, not by the schema.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	InstanceRef string `json:"instanceRef"`

	// agentId identifies the agent of the instance that runs the task. It
	// may be empty: sympozium's TUI creates runs without one. Required (a
	// CEL rule on spec, so that its message stands alone).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	AgentID string `json:"agentId"`

	// sessionKey identifies the conversation this run belongs to. It may be
	// empty: sympozium's schedule controller and TUI create runs without one.
	// Required (a CEL rule on spec, so that its message stands alone).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	SessionKey string `json:"sessionKey"`

	// task is the instruction given to the agent.
	// Required by a CEL rule on the spec, not by the schema.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=120000
	Task string `json:"task"`

	// systemPrompt, when set, replaces the agent's default system prompt.
	// +optional
	// +kubebuilder:validation:MaxLength=120000
	SystemPrompt string `json:"systemPrompt,omitempty"`

	// model selects the LLM and how to reach it.
	// Required by a CEL rule on the spec, not by the schema.
	// +optional
	Model ModelSpec `json:"model"`

	// mode is task (default: a Job that runs once) or server (a long-lived
	// Deployment and Service).
	// +optional
	// +kubebuilder:default=task
	Mode AgentRunMode `json:"mode,omitempty"`

	// parent is set only on sub-agent runs spawned by another run.
	// +optional
	Parent *ParentRef `json:"parent,omitempty"`

	// skills are SkillPacks whose instructions are mounted at /skills.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Skills []SkillRef `json:"skills,omitempty"`

	// toolPolicy restricts the tools the agent may call; deny wins over allow.
	// +optional
	ToolPolicy *ToolPolicy `json:"toolPolicy,omitempty"`

	// timeout bounds the whole run, counted from its creation, as a Go
	// duration such as 5m or 1h30m. It defaults to the instance's
	// agents.default.runTimeout, else to the controller's default (10m).
	// +optional
	// The format is checked by the first rule and the second reads only a
	// well-formed value, so a malformed timeout gets one message and no CEL
	// conversion error.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$')",message="timeout must be a duration such as 90s, 5m or 1h30m",reason=FieldValueInvalid
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) > duration('0s')",message="timeout must be greater than zero",reason=FieldValueInvalid
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// cleanup is delete (default: the workload is removed once the outcome is
	// recorded) or keep.
	// +optional
	// +kubebuilder:default=delete
	Cleanup CleanupPolicy `json:"cleanup,omitempty"`

	// sandbox adds a container-level sandbox sidecar to the agent pod.
	// +optional
	Sandbox *SandboxSpec `json:"sandbox,omitempty"`

	// agentSandbox runs the agent in a kernel-level sandbox through the
	// agent-sandbox Sandbox API (agents.x-k8s.io). It may be enabled together
	// with sandbox, as sympozium's clients do: the agent sandbox then wins.
	// +optional
	AgentSandbox *AgentSandboxSpec `json:"agentSandbox,omitempty"`

	// cancel, set to true, stops the run and keeps its record: a Pending
	// (also waiting for capacity or its instance), Running or Serving run
	// ends Failed with reason Cancelled, completedAt set, its workload
	// deleted (the agent gets its pod's termination grace period), and its
	// unfinished sub-agent runs are cancelled too. A finished run ignores
	// it. It is the only field of a task-mode run that may change after
	// creation, and it cannot be set back to false.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// env adds environment variables to the agent container. The variables
	// the controller sets itself (see the agent pod contract) cannot be
	// overridden.
	// +optional
	// +kubebuilder:validation:MaxProperties=128
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[-._a-zA-Z][-._a-zA-Z0-9]*$'))",message="env keys must be valid environment variable names"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['AGENT_RUN_ID','AGENT_ID','SESSION_KEY','INSTANCE_NAME','AGENT_NAMESPACE','TASK','SYSTEM_PROMPT','MODEL_PROVIDER','MODEL_NAME','MODEL_BASE_URL','THINKING_MODE','TOOLS_ENABLED','TOOL_POLICY_ALLOW','TOOL_POLICY_DENY','RUN_TIMEOUT','TRACEPARENT','PARENT_RUN_NAME','PARENT_SESSION_KEY','SPAWN_DEPTH']))",message="env cannot override a variable the controller sets (AGENT_RUN_ID, TASK, MODEL_NAME, RUN_TIMEOUT, ...)"
	Env map[string]string `json:"env,omitempty"`

	// retry says how often a task-mode run's pod is replaced when the
	// infrastructure broke it (evicted, preempted, lost with its node: the
	// pod's DisruptionTarget condition), within the run's one timeout. The
	// agent's own non-zero exit, a timeout or a configuration error are never
	// retried. Defaults to the instance's agents.default.retry, else 2.
	// Server-mode runs are restarted by their Deployment; agent-sandbox runs
	// are not retried (a lost sandbox pod fails the run with PodLost).
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`

	// ttlSecondsAfterFinished deletes the run this many seconds after it
	// finished (Succeeded or Failed); 0 deletes it as soon as it finished.
	// Defaults to the instance's runTTLSecondsAfterFinished; unset on both,
	// finished runs are kept up to the instance's history limits. Unlike the
	// rest of a task-mode spec it may be changed after creation.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="ttlSecondsAfterFinished must be 0 or more",reason=FieldValueInvalid
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// MaxInfrastructureRetries bounds RetryPolicy.Infrastructure.
const MaxInfrastructureRetries = 10

// RetryPolicy bounds the retries of a run whose pod the infrastructure broke.
type RetryPolicy struct {
	// infrastructure is how many times a pod evicted, preempted or lost with
	// its node is replaced (0 to 10); the run keeps its one deadline, and
	// the Job's backoff (10s, doubling) applies between attempts.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0 && self <= 10",message="infrastructure must be between 0 and 10",reason=FieldValueInvalid
	Infrastructure *int32 `json:"infrastructure,omitempty"`
}

// ModelSpec selects the LLM.
// +kubebuilder:validation:XValidation:rule="has(self.provider)",message="provider is required: openai, anthropic, azure-openai, ollama, ...",fieldPath=".provider",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.model)",message="model is required: the provider's model name",fieldPath=".model",reason=FieldValueRequired
type ModelSpec struct {
	// provider is the model provider: openai, anthropic, azure-openai,
	// ollama, ...
	// Required by a CEL rule on ModelSpec, not by the schema.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Provider string `json:"provider"`

	// model is the provider's model name.
	// Required by a CEL rule on ModelSpec, not by the schema.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Model string `json:"model"`

	// baseURL overrides the provider's API endpoint.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	BaseURL string `json:"baseURL,omitempty"`

	// thinking is the reasoning effort: off, low, medium or high.
	// +optional
	Thinking ThinkingMode `json:"thinking,omitempty"`

	// authSecretRef names a Secret in the run's namespace whose keys become
	// the agent's environment (the API key). Empty for keyless local models.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	AuthSecretRef string `json:"authSecretRef,omitempty"`

	// nodeSelector is copied to the agent pod.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// ParentRef links a sub-agent run to the run that spawned it.
// +kubebuilder:validation:XValidation:rule="has(self.runName)",message="runName is required: the parent AgentRun",fieldPath=".runName",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="has(self.spawnDepth)",message="spawnDepth is required: 1 for a direct child",fieldPath=".spawnDepth",reason=FieldValueRequired
type ParentRef struct {
	// runName is the parent AgentRun in the same namespace; it owns this run.
	// Required by a CEL rule on ParentRef, not by the schema.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RunName string `json:"runName"`

	// sessionKey is the parent's session.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	SessionKey string `json:"sessionKey,omitempty"`

	// spawnDepth is this run's depth in the tree of sub-agents, 1 for a
	// direct child.
	// Required by a CEL rule on ParentRef, not by the schema.
	// +optional
	// +kubebuilder:validation:Minimum=1
	SpawnDepth int32 `json:"spawnDepth"`
}

// SkillRef mounts a SkillPack's instructions, or a ConfigMap of skills,
// into the agent pod. One of skillPackRef and configMapRef is required; a
// configMapRef alone (as sympozium's design document writes one) mounts that
// ConfigMap of the run's namespace at /skills, with no SkillPack.
// +kubebuilder:validation:XValidation:rule="(has(self.skillPackRef) && size(self.skillPackRef) > 0) || (has(self.configMapRef) && size(self.configMapRef) > 0)",message="a skill needs skillPackRef or configMapRef",reason=FieldValueRequired
type SkillRef struct {
	// skillPackRef is the SkillPack in the same namespace (or sympozium's
	// skills namespace).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SkillPackRef string `json:"skillPackRef,omitempty"`

	// configMapRef overrides the ConfigMap mounted for this skill pack (by
	// default the one the controller renders, named like the SkillPack);
	// alone, it is the ConfigMap of skills the pod mounts.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ConfigMapRef string `json:"configMapRef,omitempty"`

	// params are passed to the skill.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Params map[string]string `json:"params,omitempty"`
}

// ToolPolicy restricts the agent's tools.
type ToolPolicy struct {
	// allow lists the tools the agent may call; empty means all.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	Allow []string `json:"allow,omitempty"`
	// deny lists tools the agent must not call; it wins over allow.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=253
	Deny []string `json:"deny,omitempty"`
}

// SandboxSpec configures the container-level sandbox sidecar.
type SandboxSpec struct {
	// enabled adds the sandbox sidecar.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// image of the sandbox sidecar; defaults to the controller's flag.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image,omitempty"`
	// securityContext of the sandbox container.
	// +optional
	SecurityContext *corev1.SecurityContext `json:"securityContext,omitempty"`
	// resources of the sandbox container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// AgentSandboxSpec configures the kernel-level agent sandbox.
type AgentSandboxSpec struct {
	// enabled runs the agent in a Sandbox (agents.x-k8s.io) instead of a Job.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// runtimeClass is the RuntimeClass of the sandbox pod (gvisor, kata, ...).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RuntimeClass string `json:"runtimeClass,omitempty"`
	// warmPoolRef names a SandboxWarmPool; when set the run claims a sandbox
	// from it through a SandboxClaim. The pool's SandboxTemplate decides the
	// pod (runtime class, resources, secrets): runtimeClass and resources set
	// with it must be what that template says, or the run fails; the run's
	// values reach the already running agent as pod annotations (see the
	// README's warm-pool contract).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	WarmPoolRef string `json:"warmPoolRef,omitempty"`
	// resources of the agent container in the sandbox.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// AgentRunPhase is the high-level state of a run.
// +kubebuilder:validation:Enum=Pending;Running;Serving;Succeeded;Failed
type AgentRunPhase string

// AgentRunStatus is the observed state of a run, written by the controller.
// Everything the controller needs to survive a restart lives here.
type AgentRunStatus struct {
	// observedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase is Pending, Running, Serving, Succeeded or Failed. Succeeded and
	// Failed are terminal.
	// +optional
	Phase AgentRunPhase `json:"phase,omitempty"`

	// podName is the agent pod.
	// +optional
	PodName string `json:"podName,omitempty"`
	// jobName is the Job of a task-mode run.
	// +optional
	JobName string `json:"jobName,omitempty"`
	// sandboxName is the Sandbox of an agent-sandbox run.
	// +optional
	SandboxName string `json:"sandboxName,omitempty"`
	// sandboxClaimName is the SandboxClaim of a warm-pool agent-sandbox run.
	// +optional
	SandboxClaimName string `json:"sandboxClaimName,omitempty"`
	// deploymentName is the Deployment of a server-mode run.
	// +optional
	DeploymentName string `json:"deploymentName,omitempty"`
	// serviceName is the Service of a server-mode run.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`

	// startedAt is when the agent container started running.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// completedAt is when the run reached Succeeded or Failed.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// result is the agent's response, bounded in size.
	// +optional
	Result string `json:"result,omitempty"`
	// resultTruncated is true when result was cut to its bound.
	// +optional
	ResultTruncated bool `json:"resultTruncated,omitempty"`
	// error says why the run failed, or the error the agent reported.
	// +optional
	Error string `json:"error,omitempty"`
	// exitCode is the agent container's exit code.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
	// tokenUsage is what the agent reported spending.
	// +optional
	TokenUsage *TokenUsage `json:"tokenUsage,omitempty"`
	// traceID is the OpenTelemetry trace of the run; the agent receives it
	// in TRACEPARENT.
	// +optional
	TraceID string `json:"traceID,omitempty"`

	// conditions are Admitted, Running, Serving, Complete and Failed, each
	// with a reason from a fixed catalogue.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// attempts is how many pods the run's Job started: 1, plus one for each
	// pod the infrastructure broke and the Job replaced (spec.retry).
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
}

// TokenUsage is the LLM usage the agent reported. Values are clamped by the
// controller.
type TokenUsage struct {
	// inputTokens is the number of prompt tokens.
	// +optional
	InputTokens int64 `json:"inputTokens,omitempty"`
	// outputTokens is the number of completion tokens.
	// +optional
	OutputTokens int64 `json:"outputTokens,omitempty"`
	// totalTokens is inputTokens + outputTokens.
	// +optional
	TotalTokens int64 `json:"totalTokens,omitempty"`
	// toolCalls is the number of tool calls the agent made.
	// +optional
	ToolCalls int64 `json:"toolCalls,omitempty"`
	// durationMs is the agent's wall-clock time in milliseconds.
	// +optional
	DurationMs int64 `json:"durationMs,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// AgentRunList is a list of AgentRuns.
type AgentRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentRun `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=si,categories=sympozium
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.activeRuns`
// +kubebuilder:printcolumn:name="Waiting",type=integer,JSONPath=`.status.waitingRuns`
// +kubebuilder:printcolumn:name="Succeeded",type=integer,JSONPath=`.status.succeededRuns`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedRuns`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// SympoziumInstance is the agent that runs belong to: its defaults, its
// credentials and its limits.
type SympoziumInstance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the defaults and limits for the instance's runs.
	// +optional
	Spec SympoziumInstanceSpec `json:"spec,omitempty"`
	// status counts the instance's runs.
	// +optional
	Status SympoziumInstanceStatus `json:"status,omitempty"`
}

// SympoziumInstanceSpec holds what runs need from their instance.
type SympoziumInstanceSpec struct {
	// agents configures the instance's agents.
	// +optional
	// +kubebuilder:default={}
	Agents AgentsSpec `json:"agents,omitempty"`
	// authRefs name the Secrets holding the providers' API keys. An entry
	// without a provider (as sympozium's TUI and PersonaPacks write them) is
	// the instance's key for whichever provider its runs use.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	AuthRefs []AuthRef `json:"authRefs,omitempty"`
	// skills are SkillPacks mounted into every run of the instance.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Skills []SkillRef `json:"skills,omitempty"`
	// runHistoryLimit is how many finished runs of the instance are kept;
	// the oldest finished ones beyond it are deleted.
	// +optional
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=0
	RunHistoryLimit *int32 `json:"runHistoryLimit,omitempty"`
	// maxConcurrentRuns caps the instance's admitted, unfinished runs (task,
	// server and sub-agent runs alike). Beyond it a new run waits in Pending
	// (condition Admitted=False, reason WaitingForCapacity) and starts,
	// oldest first, when a run finishes; its timeout still runs. Unset: no
	// limit of the instance (the controller's --max-concurrent-runs still
	// applies).
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 1",message="maxConcurrentRuns must be at least 1 (leave it unset for no limit)",reason=FieldValueInvalid
	MaxConcurrentRuns *int32 `json:"maxConcurrentRuns,omitempty"`
	// successfulRunsHistoryLimit is how many Succeeded runs of the instance
	// are kept, within runHistoryLimit; unset, only runHistoryLimit applies.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="successfulRunsHistoryLimit must be 0 or more",reason=FieldValueInvalid
	SuccessfulRunsHistoryLimit *int32 `json:"successfulRunsHistoryLimit,omitempty"`
	// failedRunsHistoryLimit is how many Failed runs of the instance are
	// kept, within runHistoryLimit; unset, only runHistoryLimit applies.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="failedRunsHistoryLimit must be 0 or more",reason=FieldValueInvalid
	FailedRunsHistoryLimit *int32 `json:"failedRunsHistoryLimit,omitempty"`
	// runTTLSecondsAfterFinished is the default ttlSecondsAfterFinished of
	// the instance's runs: a finished run is deleted this many seconds after
	// it finished. Unset, runs are kept up to the history limits.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 0",message="runTTLSecondsAfterFinished must be 0 or more",reason=FieldValueInvalid
	RunTTLSecondsAfterFinished *int32 `json:"runTTLSecondsAfterFinished,omitempty"`

	// The fields below are sympozium's. This controller admits and keeps
	// them so that sympozium's clients (web UI, CLI, TUI, PersonaPacks) work
	// unchanged. It runs channels and memory as sympozium's instance
	// controller did (see the README); policies and MCP servers are run by
	// other components.

	// channels this instance connects to (telegram, whatsapp, discord,
	// slack): one gateway Deployment <instance>-channel-<type> each.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Channels []ChannelSpec `json:"channels,omitempty"`
	// policyRef names the SympoziumPolicy of the instance. Kept, not acted on.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PolicyRef string `json:"policyRef,omitempty"`
	// memory configures persistent memory: enabled, the ConfigMap
	// <instance>-memory.
	// +optional
	Memory *MemorySpec `json:"memory,omitempty"`
	// observability configures OpenTelemetry for agent pods. Kept, not
	// acted on.
	// +optional
	Observability *ObservabilitySpec `json:"observability,omitempty"`
	// mcpServers are remote MCP servers the agents may use. Kept, not acted
	// on.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	MCPServers []MCPServerRef `json:"mcpServers,omitempty"`
	// webEndpoint exposes the agent as an HTTP API (deprecated in sympozium
	// in favour of the web-endpoint SkillPack). Kept, not acted on.
	// +optional
	WebEndpoint *WebEndpointSpec `json:"webEndpoint,omitempty"`
}

// ChannelSpec is a channel connection of an instance.
type ChannelSpec struct {
	// type is the channel type (telegram, whatsapp, discord, slack, ...).
	// +required
	// +kubebuilder:validation:MaxLength=63
	Type string `json:"type"`
	// configRef names the Secret with the channel's credentials; its secret
	// is empty for channels that need none (WhatsApp pairs by QR code).
	// +optional
	ConfigRef ChannelConfigRef `json:"configRef,omitempty"`
	// accessControl restricts who may talk to the agent through the channel.
	// +optional
	AccessControl *ChannelAccessControl `json:"accessControl,omitempty"`
}

// ChannelConfigRef names a channel's credentials Secret.
type ChannelConfigRef struct {
	// provider is unused for channels; kept for sympozium's clients.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Provider string `json:"provider,omitempty"`
	// secret is the Secret's name, or empty.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Secret string `json:"secret"`
}

// ChannelAccessControl restricts which senders and chats a channel serves.
type ChannelAccessControl struct {
	// allowedSenders, when not empty, are the only senders served.
	// +optional
	// +listType=atomic
	AllowedSenders []string `json:"allowedSenders,omitempty"`
	// deniedSenders are never served; they win over allowedSenders.
	// +optional
	// +listType=atomic
	DeniedSenders []string `json:"deniedSenders,omitempty"`
	// allowedChats, when not empty, are the only chats served.
	// +optional
	// +listType=atomic
	AllowedChats []string `json:"allowedChats,omitempty"`
	// denyMessage is the reply to a refused sender; empty drops silently.
	// +optional
	DenyMessage string `json:"denyMessage,omitempty"`
}

// MemorySpec configures an instance's persistent memory.
type MemorySpec struct {
	// enabled turns memory on (sympozium's default when memory is set).
	// +optional
	Enabled bool `json:"enabled"`
	// maxSizeKB caps the memory's size in kilobytes (sympozium: 256).
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxSizeKB int32 `json:"maxSizeKB,omitempty"`
	// systemPrompt tells the agent how to use its memory.
	// +optional
	SystemPrompt string `json:"systemPrompt,omitempty"`
}

// ObservabilitySpec configures OpenTelemetry for an instance's agent pods.
type ObservabilitySpec struct {
	// enabled turns tracing and metrics on.
	// +optional
	Enabled bool `json:"enabled"`
	// otlpEndpoint is the collector's endpoint.
	// +optional
	OTLPEndpoint string `json:"otlpEndpoint,omitempty"`
	// otlpProtocol is grpc or http/protobuf.
	// +optional
	// +kubebuilder:validation:Enum=grpc;http/protobuf
	OTLPProtocol string `json:"otlpProtocol,omitempty"`
	// serviceName overrides the OpenTelemetry service name.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// headers are extra OTLP export headers.
	// +optional
	Headers map[string]string `json:"headers,omitempty"`
	// headersSecretRef names a Secret holding OTLP export headers.
	// +optional
	HeadersSecretRef string `json:"headersSecretRef,omitempty"`
	// samplingRatio is the trace sampling probability, "0.0" to "1.0".
	// +optional
	SamplingRatio string `json:"samplingRatio,omitempty"`
	// resourceAttributes are extra OpenTelemetry resource attributes.
	// +optional
	ResourceAttributes map[string]string `json:"resourceAttributes,omitempty"`
}

// MCPServerRef is a remote MCP (Model Context Protocol) server.
type MCPServerRef struct {
	// name identifies the connection.
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// url is the server's Streamable HTTP endpoint.
	// +optional
	URL string `json:"url,omitempty"`
	// toolsPrefix is prepended to the server's tool names.
	// +required
	// +kubebuilder:validation:MinLength=1
	ToolsPrefix string `json:"toolsPrefix"`
	// timeout is the per-request timeout in seconds (sympozium: 30).
	// +optional
	Timeout int32 `json:"timeout,omitempty"`
	// authSecret names a Secret with a bearer token.
	// +optional
	AuthSecret string `json:"authSecret,omitempty"`
	// authKey is the key of authSecret to use (sympozium: token).
	// +optional
	AuthKey string `json:"authKey,omitempty"`
	// headers are sent with every request.
	// +optional
	Headers map[string]string `json:"headers,omitempty"`
	// toolsAllow, when set, are the only tools exposed.
	// +optional
	// +listType=atomic
	ToolsAllow []string `json:"toolsAllow,omitempty"`
	// toolsDeny are tools hidden after toolsAllow.
	// +optional
	// +listType=atomic
	ToolsDeny []string `json:"toolsDeny,omitempty"`
}

// WebEndpointSpec configures sympozium's web proxy for an instance.
type WebEndpointSpec struct {
	// enabled is the master switch.
	// +optional
	Enabled bool `json:"enabled"`
	// hostname of the instance's HTTPRoute.
	// +optional
	Hostname string `json:"hostname,omitempty"`
	// authSecretRef names a Secret with the key api-key.
	// +optional
	AuthSecretRef string `json:"authSecretRef,omitempty"`
	// rateLimit bounds the requests per API key.
	// +optional
	RateLimit *RateLimitSpec `json:"rateLimit,omitempty"`
}

// RateLimitSpec bounds the web endpoint's request rate.
type RateLimitSpec struct {
	// requestsPerMinute per API key (sympozium: 60).
	// +optional
	RequestsPerMinute int32 `json:"requestsPerMinute,omitempty"`
	// burstSize above the rate (sympozium: 10).
	// +optional
	BurstSize int32 `json:"burstSize,omitempty"`
}

// AgentsSpec holds the instance's agent configurations.
type AgentsSpec struct {
	// default is the configuration of the instance's default agent.
	// +optional
	// +kubebuilder:default={}
	Default AgentConfig `json:"default,omitempty"`
}

// AgentConfig is an agent's defaults and limits.
type AgentConfig struct {
	// model is the default model name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Model string `json:"model,omitempty"`
	// baseURL is the default provider endpoint.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	BaseURL string `json:"baseURL,omitempty"`
	// thinking is the default reasoning effort.
	// +optional
	Thinking ThinkingMode `json:"thinking,omitempty"`
	// nodeSelector is the default node selector of agent pods.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// runTimeout is the default timeout of the instance's runs.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="runTimeout must be a positive duration such as 5m or 1h30m",reason=FieldValueInvalid
	RunTimeout *metav1.Duration `json:"runTimeout,omitempty"`
	// subagents limits the runs that runs of this instance spawn.
	// +optional
	// +kubebuilder:default={}
	Subagents SubagentLimits `json:"subagents,omitempty"`
	// sandbox is sympozium's instance-wide container sandbox default. Kept,
	// not acted on: a run enables its sandbox in its own spec.
	// +optional
	Sandbox *InstanceSandboxSpec `json:"sandbox,omitempty"`
	// agentSandbox is sympozium's instance-wide agent-sandbox default, with
	// a warm pool sympozium's controller manages. Kept, not acted on: a run
	// enables its agent sandbox in its own spec.
	// +optional
	AgentSandbox *InstanceAgentSandboxSpec `json:"agentSandbox,omitempty"`
	// retry is the default retry policy of the instance's task-mode runs
	// (see AgentRun spec.retry).
	// +optional
	Retry *RetryPolicy `json:"retry,omitempty"`
}

// InstanceSandboxSpec is an instance's container sandbox default.
type InstanceSandboxSpec struct {
	// enabled turns the sandbox on for the instance's runs.
	// +optional
	Enabled bool `json:"enabled"`
	// image of the sandbox container.
	// +optional
	Image string `json:"image,omitempty"`
	// resources of the sandbox container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// InstanceAgentSandboxSpec is an instance's agent-sandbox default.
type InstanceAgentSandboxSpec struct {
	// enabled turns the agent sandbox on for the instance's runs.
	// +optional
	Enabled bool `json:"enabled"`
	// runtimeClass is the default RuntimeClass (gvisor, kata, ...).
	// +optional
	RuntimeClass string `json:"runtimeClass,omitempty"`
	// warmPool is a SandboxWarmPool for the instance.
	// +optional
	WarmPool *WarmPoolSpec `json:"warmPool,omitempty"`
}

// WarmPoolSpec is a pool of pre-provisioned sandboxes.
type WarmPoolSpec struct {
	// size is the number of warm sandboxes (sympozium: 2).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Size int32 `json:"size,omitempty"`
	// runtimeClass of the pool's sandboxes.
	// +optional
	RuntimeClass string `json:"runtimeClass,omitempty"`
	// resources of each sandbox, as quantity strings.
	// +optional
	Resources *ResourceMap `json:"resources,omitempty"`
}

// ResourceMap holds resource requests and limits as strings ("500m", "1Gi"),
// the shape sympozium writes them in.
type ResourceMap struct {
	// requests by resource name.
	// +optional
	Requests map[string]string `json:"requests,omitempty"`
	// limits by resource name.
	// +optional
	Limits map[string]string `json:"limits,omitempty"`
}

// SubagentLimits bound the tree of sub-agent runs.
type SubagentLimits struct {
	// maxDepth is the deepest spawnDepth allowed.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	MaxDepth *int32 `json:"maxDepth,omitempty"`
	// maxConcurrent is how many sub-agent runs of the instance may be active
	// at once; more wait in Pending (reason WaitingForCapacity).
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	MaxConcurrent *int32 `json:"maxConcurrent,omitempty"`
	// maxChildrenPerAgent is how many sub-agent runs one parent run may have.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	MaxChildrenPerAgent *int32 `json:"maxChildrenPerAgent,omitempty"`
}

// AuthRef names the Secret with a provider's API key.
type AuthRef struct {
	// provider is the model provider this Secret is for; empty means any.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Provider string `json:"provider,omitempty"`
	// secret is the Secret's name in the instance's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Secret string `json:"secret"`
}

// SympoziumInstanceStatus counts the instance's runs.
type SympoziumInstanceStatus struct {
	// observedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// activeRuns counts runs in Running or Serving.
	// +optional
	ActiveRuns int32 `json:"activeRuns,omitempty"`
	// waitingRuns counts runs in Pending (or not yet admitted).
	// +optional
	WaitingRuns int32 `json:"waitingRuns,omitempty"`
	// succeededRuns counts kept runs that Succeeded.
	// +optional
	SucceededRuns int32 `json:"succeededRuns,omitempty"`
	// failedRuns counts kept runs that Failed.
	// +optional
	FailedRuns int32 `json:"failedRuns,omitempty"`

	// The fields below are the ones sympozium's web UI and TUI read.

	// phase is Serving while a run of the instance serves, else Running
	// (sympozium also writes Error when a channel's Secret is missing; here
	// a channel's problem is in its entry of channels).
	// +optional
	Phase string `json:"phase,omitempty"`
	// activeAgentPods counts runs in Running or Serving.
	// +optional
	ActiveAgentPods int32 `json:"activeAgentPods,omitempty"`
	// channels reports each channel of the spec: Pending, Connected (its
	// gateway has a ready replica), Disconnected or Error, with a message.
	// +optional
	// +listType=atomic
	Channels []ChannelStatus `json:"channels,omitempty"`
	// webEndpoint is written by sympozium's web-endpoint components, kept
	// as found.
	// +optional
	WebEndpoint *WebEndpointStatus `json:"webEndpoint,omitempty"`
	// totalAgentRuns is written by sympozium's components, kept as found.
	// +optional
	TotalAgentRuns int64 `json:"totalAgentRuns,omitempty"`
	// conditions of the instance.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ChannelStatus reports one channel of an instance.
type ChannelStatus struct {
	// type is the channel type.
	// +required
	Type string `json:"type"`
	// status is Connected, Disconnected, Pending or Error.
	// +required
	Status string `json:"status"`
	// lastHealthCheck is the time of the last health check.
	// +optional
	LastHealthCheck *metav1.Time `json:"lastHealthCheck,omitempty"`
	// message says more about the status.
	// +optional
	Message string `json:"message,omitempty"`
}

// WebEndpointStatus reports the web endpoint.
type WebEndpointStatus struct {
	// status is Pending, Ready or Error.
	// +required
	Status string `json:"status"`
	// url is the endpoint's external URL.
	// +optional
	URL string `json:"url,omitempty"`
	// authSecretName is the Secret with the API key.
	// +optional
	AuthSecretName string `json:"authSecretName,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// SympoziumInstanceList is a list of SympoziumInstances.
type SympoziumInstanceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SympoziumInstance `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sp,categories=sympozium
// +kubebuilder:printcolumn:name="Skills",type=integer,JSONPath=`.status.skillCount`
// +kubebuilder:printcolumn:name="ConfigMap",type=string,JSONPath=`.status.configMapName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// SkillPack is a set of markdown instructions (and optionally a sidecar) that
// runs mount. The controller renders it into a ConfigMap of the same name.
type SkillPack struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec lists the skills.
	// +required
	Spec SkillPackSpec `json:"spec"`
	// status reports the rendered ConfigMap.
	// +optional
	Status SkillPackStatus `json:"status,omitempty"`
}

// SkillPackSpec lists the skills of a pack.
type SkillPackSpec struct {
	// skills are rendered one key <name>.md each.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Skills []Skill `json:"skills,omitempty"`
	// sidecar runs next to the agent when the pack is mounted.
	// +optional
	Sidecar *SkillSidecar `json:"sidecar,omitempty"`
	// category classifies the pack (kubernetes, security, devops, ...).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Category string `json:"category,omitempty"`
	// source records where the pack was imported from.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Source string `json:"source,omitempty"`
	// version of the pack.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Version string `json:"version,omitempty"`
	// runtimeRequirements are what the pack needs from the agent's
	// container. Kept, not acted on.
	// +optional
	RuntimeRequirements *RuntimeRequirements `json:"runtimeRequirements,omitempty"`
}

// RuntimeRequirements are a pack's container-level needs.
type RuntimeRequirements struct {
	// image that satisfies the requirements.
	// +optional
	Image string `json:"image,omitempty"`
	// sandbox says the pack needs a sandbox.
	// +optional
	Sandbox bool `json:"sandbox,omitempty"`
	// minMemory is the minimum memory, such as 256Mi.
	// +optional
	MinMemory string `json:"minMemory,omitempty"`
	// minCPU is the minimum CPU, such as 100m.
	// +optional
	MinCPU string `json:"minCPU,omitempty"`
}

// SkillRequirements are what one skill needs at run time.
type SkillRequirements struct {
	// bins are binaries the skill needs.
	// +optional
	// +listType=atomic
	Bins []string `json:"bins,omitempty"`
	// tools are agent tools the skill expects.
	// +optional
	// +listType=atomic
	Tools []string `json:"tools,omitempty"`
}

// Skill is one markdown instruction.
type Skill struct {
	// name is the skill's name; it becomes the ConfigMap key <name>.md.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Name string `json:"name"`
	// description says when to use the skill.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`
	// content is the markdown instruction.
	// +optional
	Content string `json:"content,omitempty"`
	// requires lists the binaries and tools the skill needs. Kept, not
	// acted on.
	// +optional
	Requires *SkillRequirements `json:"requires,omitempty"`
}

// SkillSidecar is a container that runs beside the agent.
type SkillSidecar struct {
	// image of the sidecar.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Image string `json:"image"`
	// command overrides the image's entrypoint.
	// +optional
	// +listType=atomic
	Command []string `json:"command,omitempty"`
	// env of the sidecar.
	// +optional
	// +listType=map
	// +listMapKey=name
	Env []corev1.EnvVar `json:"env,omitempty"`
	// resources of the sidecar: requests and limits as in a container, or
	// sympozium's cpu and memory shorthand (see SidecarResources).
	// +optional
	Resources *SidecarResources `json:"resources,omitempty"`
	// mountWorkspace mounts the agent's /workspace into the sidecar; absent
	// means true, as in sympozium.
	// +optional
	MountWorkspace *bool `json:"mountWorkspace,omitempty"`
	// rbac are namespaced permissions the sidecar needs in the run's
	// namespace (a Role and RoleBinding per run).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	RBAC []PolicyRule `json:"rbac,omitempty"`
	// clusterRBAC are cluster-wide permissions the sidecar needs (a
	// ClusterRole and ClusterRoleBinding per run).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	ClusterRBAC []PolicyRule `json:"clusterRBAC,omitempty"`
	// secretRef names a Secret whose keys are mounted as files in the
	// sidecar at secretMountPath.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretRef string `json:"secretRef,omitempty"`
	// secretMountPath is where secretRef is mounted; by default
	// /secrets/<secretRef>.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	SecretMountPath string `json:"secretMountPath,omitempty"`
	// hostAccess gives the sidecar explicit host-level access (host
	// network, host PID, privileged, host paths). Off by default.
	// +optional
	HostAccess *HostAccessSpec `json:"hostAccess,omitempty"`
	// requiresServer says the pack only works in mode: server.
	// +optional
	RequiresServer bool `json:"requiresServer,omitempty"`
	// ports the sidecar listens on; a server-mode run exposes them through
	// its Service.
	// +optional
	// +listType=atomic
	Ports []corev1.ContainerPort `json:"ports,omitempty"`
}

// SidecarResources are a skill sidecar's resources. requests, limits and
// claims are a container's; cpu and memory are sympozium's shorthand, each
// both the request and the limit of that resource unless requests or limits
// name it.
type SidecarResources struct {
	// cpu request and limit, such as 100m.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isQuantity(self)",message="cpu must be a quantity such as 100m or 1"
	CPU string `json:"cpu,omitempty"`
	// memory request and limit, such as 128Mi.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isQuantity(self)",message="memory must be a quantity such as 128Mi"
	Memory string `json:"memory,omitempty"`

	corev1.ResourceRequirements `json:",inline"`
}

// PolicyRule is one RBAC rule a skill sidecar needs.
type PolicyRule struct {
	// apiGroups of the resources ("" is the core group).
	// +required
	// +listType=atomic
	APIGroups []string `json:"apiGroups"`
	// resources the rule grants access to.
	// +required
	// +listType=atomic
	Resources []string `json:"resources"`
	// verbs allowed on them.
	// +required
	// +listType=atomic
	Verbs []string `json:"verbs"`
}

// HostAccessSpec is a sidecar's opt-in host-level access.
type HostAccessSpec struct {
	// enabled applies the settings below.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// hostNetwork runs the pod in the host's network namespace.
	// +optional
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// hostPID runs the pod in the host's PID namespace.
	// +optional
	HostPID bool `json:"hostPID,omitempty"`
	// privileged runs the sidecar privileged.
	// +optional
	Privileged bool `json:"privileged,omitempty"`
	// runAsRoot runs the sidecar as UID 0.
	// +optional
	RunAsRoot bool `json:"runAsRoot,omitempty"`
	// mounts are hostPath mounts of the sidecar.
	// +optional
	// +listType=atomic
	Mounts []HostPathMount `json:"mounts,omitempty"`
}

// HostPathMount mounts a path of the node into a sidecar.
type HostPathMount struct {
	// hostPath is the absolute path on the node.
	// +required
	// +kubebuilder:validation:MinLength=1
	HostPath string `json:"hostPath"`
	// mountPath is the path in the sidecar.
	// +required
	// +kubebuilder:validation:MinLength=1
	MountPath string `json:"mountPath"`
	// readOnly mounts it read-only; absent means true, as in sympozium.
	// +optional
	ReadOnly *bool `json:"readOnly,omitempty"`
}

// SkillPackStatus reports the rendered ConfigMap.
type SkillPackStatus struct {
	// phase is Ready once the ConfigMap is rendered (sympozium's UI reads
	// it).
	// +optional
	Phase string `json:"phase,omitempty"`
	// observedGeneration is the spec generation rendered.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// configMapName is the ConfigMap holding the rendered skills.
	// +optional
	ConfigMapName string `json:"configMapName,omitempty"`
	// skillCount is the number of skills rendered.
	// +optional
	SkillCount int32 `json:"skillCount,omitempty"`
	// conditions: Ready once the ConfigMap is up to date.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// SkillPackList is a list of SkillPacks.
type SkillPackList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SkillPack `json:"items"`
}
