package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Requirements returns the container resources the sidecar asks for:
// requests, limits and claims as written, and sympozium's cpu and memory
// shorthand as both the request and the limit of that resource where
// requests or limits do not name it. A shorthand that is not a quantity
// (the schema refuses those) is ignored.
func (r *SidecarResources) Requirements() corev1.ResourceRequirements {
	if r == nil {
		return corev1.ResourceRequirements{}
	}
	out := *r.ResourceRequirements.DeepCopy()
	for name, value := range map[corev1.ResourceName]string{corev1.ResourceCPU: r.CPU, corev1.ResourceMemory: r.Memory} {
		if value == "" {
			continue
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			continue
		}
		if _, ok := out.Requests[name]; !ok {
			if out.Requests == nil {
				out.Requests = corev1.ResourceList{}
			}
			out.Requests[name] = q
		}
		if _, ok := out.Limits[name]; !ok {
			if out.Limits == nil {
				out.Limits = corev1.ResourceList{}
			}
			out.Limits[name] = q.DeepCopy()
		}
	}
	return out
}
