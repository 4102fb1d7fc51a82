package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Server mode (spec.mode server): a Deployment and a Service, both named
// naming.ServerName(run).
const (
	// AnnotationSpecHash, on a server's Deployment and Service, is the hash
	// of the part of their spec the controller owns (the pod template; the
	// Service's selector and ports). The controller updates the object when
	// the hash of what it would build now differs: a spec update rolls the
	// Deployment.
	AnnotationSpecHash = "sympozium.ai/spec-hash"

	// DefaultServerPortName and DefaultServerPort are what a server-mode
	// run exposes when none of its SkillPack sidecars declares a port: port
	// 8080, named "http", on the agent container.
	DefaultServerPortName       = "http"
	DefaultServerPort     int32 = 8080

	// ServerRevisionHistoryLimit bounds the old ReplicaSets a server keeps.
	ServerRevisionHistoryLimit int32 = 2
)

// The agent-sandbox API (kubernetes-sigs/agent-sandbox).
const (
	SandboxGroup      = "agents.x-k8s.io"
	SandboxClaimGroup = "extensions.agents.x-k8s.io"
	SandboxKind       = "Sandbox"
	SandboxClaimKind  = "SandboxClaim"
	SandboxResource   = "sandboxes"
	ClaimResource     = "sandboxclaims"
)

// ServerSelector is the selector of a server-mode run's Deployment and
// Service: the labels of its pods that never change (a Deployment's
// selector is immutable, while the instance label follows spec.instanceRef).
func ServerSelector(run *v1alpha1.AgentRun) map[string]string {
	return map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelAgentRun:  naming.LabelValue(run.Name),
		v1alpha1.LabelComponent: ComponentAgent,
	}
}

// SpecHash is a short, stable hash of v's JSON form (maps are sorted by
// encoding/json, so it does not depend on map order).
func SpecHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only unsupported values (channels, functions) fail; the API types
		// hashed here have none.
		panic(fmt.Sprintf("hashing %T: %v", v, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// serverInputs fixes the clock of a server's pod template at the run's
// creation, so that the template (RUN_TIMEOUT is computed from the clock)
// is a function of the run's spec alone and does not roll on every sync. A
// server's agent gets the whole timeout as RUN_TIMEOUT.
func serverInputs(in Inputs) Inputs {
	if in.Run != nil && !in.Run.CreationTimestamp.IsZero() {
		in.Now = in.Run.CreationTimestamp.Time
	}
	return in
}

// ServerPorts returns the ports a server-mode run exposes through its
// Service, sorted by port and protocol: when a mounted SkillPack's sidecar
// requires a server (ServerSidecar), its ports (DefaultServerPort when it
// declares none); else every port declared by the (task) sidecar of a
// mounted SkillPack, or, when there is none, DefaultServerPort named
// DefaultServerPortName on the agent container. Ports declared twice (same
// number and protocol) are exposed once.
func ServerPorts(in Inputs) []corev1.ServicePort {
	var out []corev1.ServicePort
	if s, ok := ServerSidecar(in); ok {
		for _, p := range serverSidecarPorts(s) {
			out = append(out, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.ContainerPort,
				TargetPort: intstr.FromInt32(p.ContainerPort)})
		}
		return uniqueServicePorts(out)
	}
	seen := map[string]bool{}
	for _, sc := range TaskSidecars(in) {
		for _, p := range sc.Spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			key := fmt.Sprintf("%d/%s", p.ContainerPort, proto)
			if p.ContainerPort <= 0 || seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, corev1.ServicePort{Name: p.Name, Protocol: proto, Port: p.ContainerPort,
				TargetPort: intstr.FromInt32(p.ContainerPort)})
		}
	}
	if len(out) == 0 {
		return []corev1.ServicePort{{Name: DefaultServerPortName, Protocol: corev1.ProtocolTCP, Port: DefaultServerPort,
			TargetPort: intstr.FromString(DefaultServerPortName)}}
	}
	return uniqueServicePorts(out)
}

// uniqueServicePorts sorts ports by number and protocol and names each
// uniquely, as a Service with several ports needs.
func uniqueServicePorts(out []corev1.ServicePort) []corev1.ServicePort {
	names := map[string]bool{}
	slices.SortFunc(out, func(a, b corev1.ServicePort) int {
		if a.Port != b.Port {
			return int(a.Port - b.Port)
		}
		return strings.Compare(string(a.Protocol), string(b.Protocol))
	})
	// A Service with several ports needs a unique name on each.
	for i := range out {
		if out[i].Name == "" || names[out[i].Name] {
			out[i].Name = fmt.Sprintf("%s-%d", strings.ToLower(string(out[i].Protocol)), out[i].Port)
		}
		names[out[i].Name] = true
	}
	return out
}

// ServerTemplate is the pod template of a server-mode run, built at the
// run's creation time. When a mounted SkillPack's sidecar requires a server
// (web-endpoint's web proxy), it is that server alone (see
// serverSidecarTemplate), as in the original: the agent's one-shot task is
// never restarted. Otherwise it is PodTemplate (restartPolicy Always), with
// the default port declared on the agent container when no sidecar
// declares one.
func ServerTemplate(cfg Config, in Inputs) (corev1.PodTemplateSpec, error) {
	in = serverInputs(in)
	if s, ok := ServerSidecar(in); ok {
		if err := validate(cfg, in); err != nil {
			return corev1.PodTemplateSpec{}, err
		}
		return serverSidecarTemplate(cfg, in, s)
	}
	tmpl, err := PodTemplate(cfg, in)
	if err != nil {
		return tmpl, err
	}
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
	if ports := ServerPorts(in); len(ports) == 1 && ports[0].Name == DefaultServerPortName && ports[0].TargetPort.Type == intstr.String {
		for i := range tmpl.Spec.Containers {
			c := &tmpl.Spec.Containers[i]
			if c.Name == v1alpha1.AgentContainerName {
				c.Ports = append(c.Ports, corev1.ContainerPort{Name: DefaultServerPortName, ContainerPort: DefaultServerPort, Protocol: corev1.ProtocolTCP})
			}
		}
	}
	return tmpl, nil
}

func controllerRef(run *v1alpha1.AgentRun) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}
}

// Deployment builds the Deployment of a server-mode run: one replica of
// ServerTemplate, named naming.ServerName, controlled by the run, with the
// template's hash in AnnotationSpecHash.
func Deployment(cfg Config, in Inputs) (*appsv1.Deployment, error) {
	tmpl, err := ServerTemplate(cfg, in)
	if err != nil {
		return nil, err
	}
	run := in.Run
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.ServerName(run.Name),
			Namespace:       run.Namespace,
			Labels:          Labels(run),
			Annotations:     map[string]string{AnnotationSpecHash: SpecHash(tmpl)},
			OwnerReferences: controllerRef(run),
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:             new(int32(1)),
			Selector:             &metav1.LabelSelector{MatchLabels: ServerSelector(run)},
			Template:             tmpl,
			RevisionHistoryLimit: new(ServerRevisionHistoryLimit),
		},
	}, nil
}

// Service builds the ClusterIP Service of a server-mode run, named
// naming.ServerName, selecting its pods on ServerPorts, with the hash of
// its selector and ports in AnnotationSpecHash.
func Service(in Inputs) *corev1.Service {
	run := in.Run
	spec := corev1.ServiceSpec{
		Type:     corev1.ServiceTypeClusterIP,
		Selector: ServerSelector(run),
		Ports:    ServerPorts(in),
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.ServerName(run.Name),
			Namespace:       run.Namespace,
			Labels:          Labels(run),
			Annotations:     map[string]string{AnnotationSpecHash: SpecHash(spec)},
			OwnerReferences: controllerRef(run),
		},
		Spec: spec,
	}
}

// Sandbox builds the agent-sandbox Sandbox of a run with agentSandbox
// enabled, in apiVersion (agents.x-k8s.io/v1beta1 or v1alpha1): named
// naming.SandboxName, controlled by the run, carrying the same pod
// template as the run's Job would (restartPolicy Never, the runtime class
// and resources of spec.agentSandbox). v1alpha1 Sandboxes have
// spec.replicas (1) where v1beta1 has spec.operatingMode (left to its
// default, Running). The sandbox controller creates the pod, named like
// the Sandbox, from spec.podTemplate.
func Sandbox(cfg Config, in Inputs, apiVersion string) (*unstructured.Unstructured, error) {
	tmpl, err := PodTemplate(cfg, in)
	if err != nil {
		return nil, err
	}
	podSpec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tmpl.Spec)
	if err != nil {
		return nil, fmt.Errorf("converting the pod template: %w", err)
	}
	spec := map[string]any{
		"podTemplate": map[string]any{
			"metadata": map[string]any{"labels": stringMap(tmpl.Labels)},
			"spec":     podSpec,
		},
	}
	if strings.HasSuffix(apiVersion, "/v1alpha1") {
		spec["replicas"] = int64(1)
	}
	return runObject(in.Run, apiVersion, SandboxKind, naming.SandboxName(in.Run.Name), spec), nil
}

// runObject is an object of the agent-sandbox API for run: named name in
// the run's namespace, labelled as the run's plus LabelAgentSandbox=true
// (as sympozium's controller labels its Sandboxes and SandboxClaims) and
// controlled by it.
func runObject(run *v1alpha1.AgentRun, apiVersion, kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
	u.SetName(name)
	u.SetNamespace(run.Namespace)
	labels := Labels(run)
	labels[v1alpha1.LabelAgentSandbox] = "true"
	u.SetLabels(labels)
	u.SetOwnerReferences(controllerRef(run))
	return u
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
