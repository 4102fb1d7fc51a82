package e2e

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The objects sympozium's SympoziumInstance reconciler creates for an
// instance, written out here as its code builds them (github.com/
// sympozium-ai/sympozium at 25c0bb2, internal/controller/
// sympoziuminstance_controller.go; the line numbers below are that file's
// unless another file is named). None of this package's builders is used:
// a test of adoption must not take our own objects for the original's.
// Each object gets, as in the original, controllerutil.SetControllerReference
// to the instance: apiVersion sympozium.ai/v1alpha1, kind SympoziumInstance,
// controller and blockOwnerDeletion true. Defaults the original leaves to the
// API server (a Service's type, a container's terminationMessagePath, ...)
// are left out here too. The images are those of a controller with neither
// SYMPOZIUM_IMAGE_REGISTRY nor -X main.imageTag: the registry
// ghcr.io/sympozium-ai/sympozium and the tag latest (:216-223, :520-527).

const originalRegistry = "ghcr.io/sympozium-ai/sympozium"

// originalOwner is SetControllerReference's owner reference
// (sigs.k8s.io/controller-runtime controllerutil.SetControllerReference).
func originalOwner(inst *v1alpha1.SympoziumInstance) []metav1.OwnerReference {
	t := true
	return []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "SympoziumInstance", Name: inst.Name, UID: inst.UID,
		Controller: &t, BlockOwnerDeletion: &t}}
}

// originalMemoryConfigMap: reconcileMemoryConfigMap :400-435. The data is
// what agents wrote since (the original's agent-run controller rewrites
// MEMORY.md from the agent's log, agentrun_controller.go:2228-2284).
func originalMemoryConfigMap(inst *v1alpha1.SympoziumInstance, memories string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.Name + "-memory", Namespace: inst.Namespace,
			Labels:          map[string]string{"sympozium.ai/instance": inst.Name, "sympozium.ai/component": "memory"},
			OwnerReferences: originalOwner(inst),
		},
		Data: map[string]string{"MEMORY.md": memories},
	}
}

// originalMemoryPVC: reconcileMemoryPVC :461-496.
func originalMemoryPVC(inst *v1alpha1.SympoziumInstance) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.Name + "-memory-db", Namespace: inst.Namespace,
			Labels:          map[string]string{"sympozium.ai/instance": inst.Name, "sympozium.ai/component": "memory-db"},
			OwnerReferences: originalOwner(inst),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

// originalMemoryDeployment: reconcileMemoryDeployment :517-638.
func originalMemoryDeployment(inst *v1alpha1.SympoziumInstance) *appsv1.Deployment {
	labels := func() map[string]string {
		return map[string]string{"sympozium.ai/component": "memory", "sympozium.ai/instance": inst.Name}
	}
	replicas := int32(1)
	probe := func(delay, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
			InitialDelaySeconds: delay, PeriodSeconds: period,
		}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: inst.Name + "-memory", Namespace: inst.Namespace, Labels: labels(), OwnerReferences: originalOwner(inst)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: labels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels()},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:            "memory-server",
						Image:           originalRegistry + "/skill-memory:latest",
						ImagePullPolicy: corev1.PullIfNotPresent,
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
						Env:             []corev1.EnvVar{{Name: "MEMORY_DB_PATH", Value: "/data/memory.db"}, {Name: "MEMORY_PORT", Value: "8080"}},
						VolumeMounts:    []corev1.VolumeMount{{Name: "memory-db", MountPath: "/data"}},
						ReadinessProbe:  probe(2, 10),
						LivenessProbe:   probe(5, 30),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
					}},
					Volumes: []corev1.Volume{{Name: "memory-db", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: inst.Name + "-memory-db"}}}},
				},
			},
		},
	}
}

// originalMemoryService: :641-666; no type (the API server defaults it to
// ClusterIP).
func originalMemoryService(inst *v1alpha1.SympoziumInstance) *corev1.Service {
	labels := func() map[string]string {
		return map[string]string{"sympozium.ai/component": "memory", "sympozium.ai/instance": inst.Name}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: inst.Name + "-memory", Namespace: inst.Namespace, Labels: labels(), OwnerReferences: originalOwner(inst)},
		Spec: corev1.ServiceSpec{
			Selector: labels(),
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// originalChannelDeployment: reconcileChannels :144 (the name) and
// buildChannelDeployment :210-311. OTEL_EXPORTER_OTLP_ENDPOINT is
// resolveOTelEndpoint (agentrun_controller.go:96-106): "" for an instance
// without observability and a controller without that variable.
func originalChannelDeployment(inst *v1alpha1.SympoziumInstance, typ, secret string) *appsv1.Deployment {
	name := fmt.Sprintf("%s-channel-%s", inst.Name, typ)
	labels := func() map[string]string {
		return map[string]string{"sympozium.ai/component": "channel", "sympozium.ai/channel": typ, "sympozium.ai/instance": inst.Name}
	}
	replicas := int32(1)
	c := corev1.Container{
		Name:            "channel",
		Image:           fmt.Sprintf("%s/channel-%s:latest", originalRegistry, typ),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Env: []corev1.EnvVar{
			{Name: "INSTANCE_NAME", Value: inst.Name},
			{Name: "EVENT_BUS_URL", Value: "nats://nats.sympozium-system.svc:4222"},
			{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: ""},
			{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: "grpc"},
			{Name: "OTEL_SERVICE_NAME", Value: "sympozium-channel-" + typ},
		},
	}
	if secret != "" { // :274-284
		c.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: inst.Namespace, Labels: labels(), OwnerReferences: originalOwner(inst)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels()},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels()}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}},
		},
	}
	if typ == "whatsapp" { // :287-308
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "whatsapp-data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name + "-data"}}}}
		d.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "whatsapp-data", MountPath: "/data"}}
	}
	return d
}

// originalWhatsAppPVC: ensureWhatsAppPVC :314-351.
func originalWhatsAppPVC(inst *v1alpha1.SympoziumInstance) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.Name + "-channel-whatsapp-data", Namespace: inst.Namespace,
			Labels:          map[string]string{"sympozium.ai/component": "channel", "sympozium.ai/channel": "whatsapp", "sympozium.ai/instance": inst.Name},
			OwnerReferences: originalOwner(inst),
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("256Mi")}},
		},
	}
}

// originalWebEndpointRun: ensureWebEndpointAgentRun :725-756 for an
// instance whose model is set, whose first authRef has a secret and no
// provider, without baseURL or node selector: provider resolveProvider
// (channel_router.go:72-98: the secret's name contains "openai"),
// authSecretRef resolveAuthSecret (channel_router.go:101-108).
func originalWebEndpointRun(inst *v1alpha1.SympoziumInstance, skill v1alpha1.SkillRef, provider string) *v1alpha1.AgentRun {
	return &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.Name + "-web-endpoint", Namespace: inst.Namespace,
			Labels:          map[string]string{"sympozium.ai/instance": inst.Name, "sympozium.ai/component": "web-endpoint"},
			OwnerReferences: originalOwner(inst),
		},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: inst.Name, AgentID: "web-endpoint", SessionKey: "web-endpoint",
			Task: "Serve HTTP requests for this instance", Mode: "server",
			Model: v1alpha1.ModelSpec{
				Provider: provider, Model: inst.Spec.Agents.Default.Model, AuthSecretRef: inst.Spec.AuthRefs[0].Secret,
			},
			Skills: []v1alpha1.SkillRef{skill},
		},
	}
}
