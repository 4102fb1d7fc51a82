package runcache

import (
	"strings"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TrimForCache is the informers' transform: it drops what the controllers
// never read from cached objects, so that the cache stays proportional to
// the number of objects, not to the size of their tasks. It decides what
// the machine may read: managedFields
// everywhere, kubectl's last-applied copy of the spec, the bulk of
// Deployment specs (a Deployment's template is compared through its
// spec-hash annotation), and all but what the machine reads of Jobs and
// Pods (trimJob, trimPod). A finished run is compacted and cached as a
// *FinishedRun record, not as an AgentRun (see FinishedRun).
// TestCachedObjectsDecideAlike (beside the machine, in phase) checks, over
// every backend's lifecycle, that trimmed objects decide as the full ones
// do.
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
	case *v1alpha1.AgentRun:
		if o.Status.Phase.IsTerminal() {
			compactFinishedRun(o)
			return newFinishedRun(o), nil
		}
	}
	return obj, nil
}

// compactFinishedRun reduces a cached finished run to what is read of
// finished runs: by the machine (Next on a finished run only cleans up and
// retires: it reads the backend, spec.cleanup, the failure's reason and
// the workload's names), by the history policy (instance, parent,
// ttlSecondsAfterFinished, completedAt, creation), by the counts and the
// runs-by-phase metric (phase, the outcome condition's reason). Tasks,
// prompts, env, results and messages stay in the API server only: a
// finished run then costs the cache about a third of a live one, which is
// what lets one instance keep tens of thousands of them.
//
// Its status is not the run's whole status: the controller writes the
// status of a finished run only from a copy read from the API server (see
// the sync), never from this one.
func compactFinishedRun(r *v1alpha1.AgentRun) {
	// The kind of a listed run (a watched one has none): nothing reads it,
	// events and owner references name the kind from the scheme.
	r.TypeMeta = metav1.TypeMeta{}
	r.Labels = ownKeys(r.Labels, true)
	r.Annotations = ownKeys(r.Annotations, false)
	r.Namespace = intern(r.Namespace)
	s := &r.Spec
	s.InstanceRef = intern(s.InstanceRef)
	s.Cleanup = v1alpha1.CleanupPolicy(intern(string(s.Cleanup)))
	s.Mode = v1alpha1.AgentRunMode(intern(string(s.Mode)))
	s.Task, s.SystemPrompt, s.AgentID, s.SessionKey = "", "", "", ""
	s.Model, s.Env, s.ToolPolicy, s.Skills = v1alpha1.ModelSpec{}, nil, nil, nil
	st := &r.Status
	st.Phase = v1alpha1.AgentRunPhase(intern(string(st.Phase)))
	st.Result, st.Error, st.TraceID, st.PodName = "", "", "", ""
	st.ExitCode, st.TokenUsage, st.StartedAt = nil, nil, nil
	var outcome []metav1.Condition
	for _, c := range st.Conditions {
		if (c.Type == v1alpha1.ConditionFailed || c.Type == v1alpha1.ConditionComplete) && c.Status == metav1.ConditionTrue {
			outcome = append(outcome, metav1.Condition{Type: c.Type, Status: c.Status, Reason: intern(c.Reason)})
		}
	}
	st.Conditions = outcome
}

// intern returns the canonical copy of s: the namespaces, instances and
// reasons repeated by thousands of cached runs share one string.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
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
// reads its conditions and failure count, including the failed pods the
// Job has seen but not yet added to status.failed) and its backoffLimit
// (the run's retry budget, see retry.go); the rest of the spec is never
// read.
func trimJob(j *batchv1.Job) {
	j.Labels = ownKeys(j.Labels, true)
	j.Annotations = ownKeys(j.Annotations, false)
	j.Finalizers = nil
	j.Spec = batchv1.JobSpec{BackoffLimit: j.Spec.BackoffLimit}
	if u := j.Status.UncountedTerminatedPods; u != nil && len(u.Failed) > 0 {
		j.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Failed: u.Failed}
	} else {
		j.Status.UncountedTerminatedPods = nil
	}
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
