package workload

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The event-bus bridge and the run's context, as the original sympozium
// controller (25c0bb2) passes them.
const (
	// IPCBridgeContainerName is the sidecar that publishes the agent's
	// /ipc/output/result.json to the event bus (agent.run.completed) and
	// forwards /ipc/messages, /ipc/schedules and /ipc/spawn; it exits once
	// it has published the result.
	IPCBridgeContainerName = "ipc-bridge"

	EnvEventBusURL = "EVENT_BUS_URL"

	// AnnotationReplyChannel and AnnotationReplyChatID, on a run created
	// from a channel message (sympozium's channel router), say where the
	// answer goes; the agent gets them as EnvSourceChannel and
	// EnvSourceChatID.
	AnnotationReplyChannel = "sympozium.ai/reply-channel"
	AnnotationReplyChatID  = "sympozium.ai/reply-chat-id"
	EnvSourceChannel       = "SOURCE_CHANNEL"
	EnvSourceChatID        = "SOURCE_CHAT_ID"

	// AnnotationOTelTraceParent is the traceparent sympozium's channel
	// router puts on the runs it creates; it is honoured like
	// AnnotationTraceParent.
	AnnotationOTelTraceParent = "otel.dev/traceparent"

	// OTelAgentServiceName and OTelBridgeServiceName are the
	// OTEL_SERVICE_NAME of the agent and of the bridge when the instance's
	// observability names no service.
	OTelAgentServiceName  = "sympozium-agent-runner"
	OTelBridgeServiceName = "sympozium-ipc-bridge"
)

// runContextEnv is SOURCE_CHANNEL and SOURCE_CHAT_ID from the run's reply
// annotations, each only when set.
func runContextEnv(run *v1alpha1.AgentRun) []corev1.EnvVar {
	var env []corev1.EnvVar
	if ch := run.Annotations[AnnotationReplyChannel]; ch != "" {
		env = append(env, corev1.EnvVar{Name: EnvSourceChannel, Value: ch})
	}
	if id := run.Annotations[AnnotationReplyChatID]; id != "" {
		env = append(env, corev1.EnvVar{Name: EnvSourceChatID, Value: id})
	}
	return env
}

// otelEnv is the OpenTelemetry configuration of a container of the run when
// its instance enables observability: what the original sets (its
// SYMPOZIUM_OTEL_* and standard OTEL_* variables), each variable once
// with the value that wins in the original's list. defaultService is the
// OTEL_SERVICE_NAME when the instance names none.
func otelEnv(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance, defaultService string) []corev1.EnvVar {
	if inst == nil || inst.Spec.Observability == nil || !inst.Spec.Observability.Enabled {
		return nil
	}
	obs := inst.Spec.Observability
	env := []corev1.EnvVar{{Name: "SYMPOZIUM_OTEL_ENABLED", Value: "true"}}
	if obs.OTLPEndpoint != "" {
		env = append(env,
			corev1.EnvVar{Name: "SYMPOZIUM_OTEL_OTLP_ENDPOINT", Value: obs.OTLPEndpoint},
			corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: obs.OTLPEndpoint})
	}
	if obs.OTLPProtocol != "" {
		env = append(env,
			corev1.EnvVar{Name: "SYMPOZIUM_OTEL_OTLP_PROTOCOL", Value: obs.OTLPProtocol},
			corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: obs.OTLPProtocol})
	}
	switch {
	case obs.ServiceName != "":
		env = append(env,
			corev1.EnvVar{Name: "SYMPOZIUM_OTEL_SERVICE_NAME", Value: obs.ServiceName},
			corev1.EnvVar{Name: "OTEL_SERVICE_NAME", Value: obs.ServiceName})
	case obs.OTLPEndpoint != "":
		env = append(env, corev1.EnvVar{Name: "OTEL_SERVICE_NAME", Value: defaultService})
	}
	attrs := map[string]string{
		"sympozium.instance.name": run.Spec.InstanceRef,
		"sympozium.agent_run.id":  run.Name,
		"k8s.namespace.name":      run.Namespace,
	}
	maps.Copy(attrs, obs.ResourceAttributes)
	var pairs []string
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		if k != "" && attrs[k] != "" {
			pairs = append(pairs, k+"="+attrs[k])
		}
	}
	if len(pairs) > 0 {
		v := strings.Join(pairs, ",")
		env = append(env,
			corev1.EnvVar{Name: "SYMPOZIUM_OTEL_RESOURCE_ATTRIBUTES", Value: v},
			corev1.EnvVar{Name: "OTEL_RESOURCE_ATTRIBUTES", Value: v})
	}
	return env
}

// ipcBridgeContainer is the event-bus bridge sidecar (Config.EventBusURL,
// image Config.IPCBridgeImage): the run's identity, EVENT_BUS_URL, the
// trace and OpenTelemetry configuration, /ipc only, the original's
// resources and the restricted security context.
func ipcBridgeContainer(cfg Config, in Inputs) corev1.Container {
	run := in.Run
	_, traceparent := TraceParent(run)
	env := []corev1.EnvVar{
		{Name: EnvAgentRunID, Value: run.Name},
		{Name: EnvInstanceName, Value: run.Spec.InstanceRef},
		{Name: EnvAgentNamespace, Value: run.Namespace},
		{Name: EnvEventBusURL, Value: cfg.EventBusURL},
		{Name: EnvTraceParent, Value: traceparent},
	}
	env = append(env, otelEnv(run, in.Instance, OTelBridgeServiceName)...)
	return corev1.Container{
		Name:                     IPCBridgeContainerName,
		Image:                    cfg.IPCBridgeImage,
		Env:                      env,
		VolumeMounts:             []corev1.VolumeMount{{Name: IPCVolume, MountPath: IPCPath}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          restrictedContainerSecurityContext(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
	}
}

// validateBridge refuses an event bus without a bridge image.
func validateBridge(cfg Config) error {
	if cfg.EventBusURL != "" && cfg.IPCBridgeImage == "" {
		return fmt.Errorf("an event bus is configured (%s) without an ipc-bridge image (--ipc-bridge-image)", cfg.EventBusURL)
	}
	return nil
}
