package phase

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TrimForCache is the informers' transform: it drops what the controllers
// never read from cached objects, so that the cache stays proportional to
// the number of objects, not to the size of their tasks. It lives beside
// the machine because it decides what the machine may read: managedFields
// everywhere, kubectl's last-applied copy of the spec, the bulk of
// Deployment specs (a Deployment's template is compared through its
// spec-hash annotation), and all but what the machine reads of Jobs and
// Pods (trimJob, trimPod). TestCachedObjectsDecideAlike checks, over every
// backend's lifecycle, that trimmed objects decide as the full ones do.
func TrimForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if a := m.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				m.SetAnnotations(a)
			}
		}
	}
	switch o := obj.(type) {
	case *batchv1.Job:
		trimJob(o)
	case *appsv1.Deployment:
		o.Spec.Template = corev1.PodTemplateSpec{}
	case *corev1.Pod:
		trimPod(o)
	}
	return obj, nil
}

// ownKeyPrefix marks the labels and annotations this controller sets and
// reads; trimmed children keep those (and v1alpha1.LabelManagedBy).
const ownKeyPrefix = "sympozium.ai/"

// trimPod reduces a cached pod to what the controllers read: identity,
// ownership, deletion, this controller's labels, and the status the phase
// machine looks at (phase, reason and message, the DisruptionTarget and
// PodScheduled conditions, each container's name, state, readiness and
// restarts). A finished run's pod is kept as long as the run (cleanup:
// keep), so its size multiplies by the history: with 10,000 such runs this
// is about a third of the controller's heap.
func trimPod(p *corev1.Pod) {
	p.Labels = ownKeys(p.Labels, true)
	p.Annotations = ownKeys(p.Annotations, false)
	p.Finalizers = nil
	p.GenerateName = ""
	p.Spec = corev1.PodSpec{NodeName: p.Spec.NodeName}
	st := corev1.PodStatus{Phase: p.Status.Phase, Reason: p.Status.Reason, Message: p.Status.Message}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.DisruptionTarget || c.Type == corev1.PodScheduled {
			st.Conditions = append(st.Conditions, c)
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: s.Name, State: s.State, Ready: s.Ready, Started: s.Started, RestartCount: s.RestartCount,
		})
	}
	p.Status = st
}

// trimJob reduces a cached Job to its identity, ownership, deletion, this
// controller's labels and annotations, its status (the phase machine
// reads its conditions and failure count) and its backoffLimit (the run's
// retry budget, see retry.go); the rest of the spec is never read.
func trimJob(j *batchv1.Job) {
	j.Labels = ownKeys(j.Labels, true)
	j.Annotations = ownKeys(j.Annotations, false)
	j.Finalizers = nil
	j.Spec = batchv1.JobSpec{BackoffLimit: j.Spec.BackoffLimit}
	j.Status.UncountedTerminatedPods = nil
}

// ownKeys returns the entries of m whose key starts with ownKeyPrefix (and,
// for labels, v1alpha1.LabelManagedBy), or nil when there are none.
func ownKeys(m map[string]string, labels bool) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, ownKeyPrefix) || (labels && k == v1alpha1.LabelManagedBy) {
			if out == nil {
				out = make(map[string]string, 4)
			}
			out[k] = v
		}
	}
	return out
}
