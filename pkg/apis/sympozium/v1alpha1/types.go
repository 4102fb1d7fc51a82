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
// +kubebuilder:validation:Enum=task;server
type AgentRunMode string

// CleanupPolicy says what happens to a finished run's workload.
// +kubebuilder:validation:Enum=delete;keep
type CleanupPolicy string

// ThinkingMode is the model's reasoning effort.
// +kubebuilder:validation:Enum=off;low;medium;high
type ThinkingMode string

// AgentRunSpec describes one invocation of an agent.
// +kubebuilder:validation:XValidation:rule="!(has(self.sandbox) && has(self.sandbox.enabled) && self.sandbox.enabled && has(self.agentSandbox) && has(self.agentSandbox.enabled) && self.agentSandbox.enabled)",message="sandbox.enabled and agentSandbox.enabled are mutually exclusive: choose the container sandbox or the agent sandbox",fieldPath=".agentSandbox.enabled",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="!(has(self.mode) && self.mode == 'server' && has(self.agentSandbox) && has(self.agentSandbox.enabled) && self.agentSandbox.enabled)",message="agentSandbox.enabled is not supported with mode: server",fieldPath=".agentSandbox.enabled",reason=FieldValueForbidden
// The spec of a task-mode run is immutable once created. Fields are compared
// by value (a timeout by its duration), so that a client that writes the
// object back through Go types ("5m" becomes "5m0s") is not refused.
// +kubebuilder:validation:XValidation:rule="has(oldSelf.mode) && oldSelf.mode == 'server' && has(self.mode) && self.mode == 'server' || self.instanceRef == oldSelf.instanceRef && self.agentId == oldSelf.agentId && self.sessionKey == oldSelf.sessionKey && self.task == oldSelf.task && self.model == oldSelf.model && (has(self.systemPrompt) ? has(oldSelf.systemPrompt) && self.systemPrompt == oldSelf.systemPrompt : !has(oldSelf.systemPrompt)) && (has(self.mode) ? has(oldSelf.mode) && self.mode == oldSelf.mode : !has(oldSelf.mode)) && (has(self.parent) ? has(oldSelf.parent) && self.parent == oldSelf.parent : !has(oldSelf.parent)) && (has(self.skills) ? has(oldSelf.skills) && self.skills == oldSelf.skills : !has(oldSelf.skills)) && (has(self.toolPolicy) ? has(oldSelf.toolPolicy) && self.toolPolicy == oldSelf.toolPolicy : !has(oldSelf.toolPolicy)) && (has(self.cleanup) ? has(oldSelf.cleanup) && self.cleanup == oldSelf.cleanup : !has(oldSelf.cleanup)) && (has(self.env) ? has(oldSelf.env) && self.env == oldSelf.env : !has(oldSelf.env)) && (has(self.timeout) ? has(oldSelf.timeout) && duration(self.timeout) == duration(oldSelf.timeout) : !has(oldSelf.timeout)) && (has(self.sandbox) && has(self.sandbox.enabled) && self.sandbox.enabled) == (has(oldSelf.sandbox) && has(oldSelf.sandbox.enabled) && oldSelf.sandbox.enabled) && (has(self.agentSandbox) && has(self.agentSandbox.enabled) && self.agentSandbox.enabled) == (has(oldSelf.agentSandbox) && has(oldSelf.agentSandbox.enabled) && oldSelf.agentSandbox.enabled)",message="spec is immutable once created, except for runs in mode: server"
type AgentRunSpec struct {
	// instanceRef is the name of the SympoziumInstance in the same namespace
	// that this run belongs to. The run waits in Pending (reason
	// InstanceNotFound) until it exists.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	InstanceRef string `json:"instanceRef"`

	// agentId identifies the agent of the instance that runs the task.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	AgentID string `json:"agentId"`

	// sessionKey identifies the conversation this run belongs to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	SessionKey string `json:"sessionKey"`

	// task is the instruction given to the agent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=120000
	Task string `json:"task"`

	// systemPrompt, when set, replaces the agent's default system prompt.
	// +optional
	// +kubebuilder:validation:MaxLength=120000
	SystemPrompt string `json:"systemPrompt,omitempty"`

	// model selects the LLM and how to reach it.
	// +required
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
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeout must be a positive duration such as 5m or 1h30m",reason=FieldValueInvalid
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
	// agent-sandbox Sandbox API (agents.x-k8s.io).
	// +optional
	AgentSandbox *AgentSandboxSpec `json:"agentSandbox,omitempty"`

	// env adds environment variables to the agent container. The variables
	// the controller sets itself (see the agent pod contract) cannot be
	// overridden.
	// +optional
	// +kubebuilder:validation:MaxProperties=128
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[-._a-zA-Z][-._a-zA-Z0-9]*$'))",message="env keys must be valid environment variable names"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['AGENT_RUN_ID','AGENT_ID','SESSION_KEY','INSTANCE_NAME','AGENT_NAMESPACE','TASK','SYSTEM_PROMPT','MODEL_PROVIDER','MODEL_NAME','MODEL_BASE_URL','THINKING_MODE','TOOLS_ENABLED','TOOL_POLICY_ALLOW','TOOL_POLICY_DENY','RUN_TIMEOUT','TRACEPARENT','PARENT_RUN_NAME','PARENT_SESSION_KEY','SPAWN_DEPTH']))",message="env cannot override a variable the controller sets (AGENT_RUN_ID, TASK, MODEL_NAME, RUN_TIMEOUT, ...)"
	Env map[string]string `json:"env,omitempty"`
}

// ModelSpec selects the LLM.
type ModelSpec struct {
	// provider is the model provider: openai, anthropic, azure-openai,
	// ollama, ...
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Provider string `json:"provider"`

	// model is the provider's model name.
	// +required
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
type ParentRef struct {
	// runName is the parent AgentRun in the same namespace; it owns this run.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RunName string `json:"runName"`

	// sessionKey is the parent's session.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	SessionKey string `json:"sessionKey,omitempty"`

	// spawnDepth is this run's depth in the tree of sub-agents, 1 for a
	// direct child.
	// +required
	// +kubebuilder:validation:Minimum=1
	SpawnDepth int32 `json:"spawnDepth"`
}

// SkillRef mounts a SkillPack's instructions into the agent pod.
type SkillRef struct {
	// skillPackRef is the SkillPack in the same namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SkillPackRef string `json:"skillPackRef"`

	// configMapRef overrides the ConfigMap mounted for this skill pack (by
	// default the one the controller renders, named like the SkillPack).
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
	// from it through a SandboxClaim.
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
	// authRefs name the Secret holding each provider's API key.
	// +optional
	// +listType=map
	// +listMapKey=provider
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
	// observability configures OpenTelemetry in the instance's agent pods.
	// +optional
	Observability *ObservabilitySpec `json:"observability,omitempty"`
}

// ObservabilitySpec configures OpenTelemetry for the instance's runs.
type ObservabilitySpec struct {
	// enabled turns OpenTelemetry on for the instance's runs.
	// +optional
	Enabled bool `json:"enabled"`
	// otlpEndpoint is the collector endpoint.
	// +optional
	OTLPEndpoint string `json:"otlpEndpoint,omitempty"`
	// otlpProtocol is "grpc" or "http/protobuf".
	// +optional
	// +kubebuilder:validation:Enum=grpc;http/protobuf
	OTLPProtocol string `json:"otlpProtocol,omitempty"`
	// serviceName overrides the OpenTelemetry service name.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// resourceAttributes are additional OpenTelemetry resource attributes.
	// +optional
	ResourceAttributes map[string]string `json:"resourceAttributes,omitempty"`
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
	// provider is the model provider this Secret is for.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Provider string `json:"provider"`
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
	// mountWorkspace mounts the shared /workspace into the sidecar.
	// +optional
	// +kubebuilder:default=true
	MountWorkspace bool `json:"mountWorkspace,omitempty"`
	// resources of the sidecar: cpu and memory, each both the request and
	// the limit (100m and 128Mi when empty).
	// +optional
	Resources *SidecarResources `json:"resources,omitempty"`
	// rbac are the rules the sidecar needs in the run's namespace; the
	// controller grants them to the run's own ServiceAccount while the run
	// executes.
	// +optional
	// +listType=atomic
	RBAC []RBACRule `json:"rbac,omitempty"`
	// clusterRBAC are cluster-wide rules the sidecar needs, granted like
	// rbac through a ClusterRole and ClusterRoleBinding.
	// +optional
	// +listType=atomic
	ClusterRBAC []RBACRule `json:"clusterRBAC,omitempty"`
	// secretRef is a Secret in the run's namespace whose keys are mounted
	// as files in the sidecar at secretMountPath.
	// +optional
	SecretRef string `json:"secretRef,omitempty"`
	// secretMountPath is where secretRef is mounted; /secrets/<secretRef>
	// when empty.
	// +optional
	SecretMountPath string `json:"secretMountPath,omitempty"`
	// hostAccess gives the sidecar host-level access (host namespaces,
	// root, hostPath mounts). The controller refuses runs using it unless
	// it is started with --allow-host-access.
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

// SidecarResources are a sidecar's CPU and memory, as quantities.
type SidecarResources struct {
	// cpu request and limit (e.g. "100m").
	// +optional
	CPU string `json:"cpu,omitempty"`
	// memory request and limit (e.g. "128Mi").
	// +optional
	Memory string `json:"memory,omitempty"`
}

// RBACRule is one Kubernetes RBAC policy rule.
type RBACRule struct {
	// apiGroups of the rule ("" is the core group).
	// +listType=atomic
	APIGroups []string `json:"apiGroups"`
	// resources of the rule.
	// +listType=atomic
	Resources []string `json:"resources"`
	// verbs of the rule.
	// +listType=atomic
	Verbs []string `json:"verbs"`
}

// HostAccessSpec is opt-in host-level access for a skill sidecar.
type HostAccessSpec struct {
	// enabled applies the settings below.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// hostNetwork puts the pod in the node's network namespace.
	// +optional
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// hostPID puts the pod in the node's PID namespace.
	// +optional
	HostPID bool `json:"hostPID,omitempty"`
	// privileged runs the sidecar privileged.
	// +optional
	Privileged bool `json:"privileged,omitempty"`
	// runAsRoot runs the sidecar as UID 0.
	// +optional
	RunAsRoot bool `json:"runAsRoot,omitempty"`
	// mounts are hostPath mounts in the sidecar.
	// +optional
	// +listType=atomic
	Mounts []HostPathMount `json:"mounts,omitempty"`
}

// HostPathMount is one hostPath mount of a sidecar.
type HostPathMount struct {
	// hostPath is the absolute path on the node.
	HostPath string `json:"hostPath"`
	// mountPath is the path in the sidecar.
	MountPath string `json:"mountPath"`
	// readOnly mounts the path read-only (the default).
	// +optional
	// +kubebuilder:default=true
	ReadOnly *bool `json:"readOnly,omitempty"`
}

// SkillPackStatus reports the rendered ConfigMap.
type SkillPackStatus struct {
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
