package phase

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// FinishedRun is what the run cache holds of a finished run: exactly what
// compactFinishedRun keeps of it, in a record of about 240 bytes instead of
// the 800 of an AgentRun struct, whose spec and status fields a finished
// run leaves empty. The fields that are set on few runs (deletion,
// labels, owner references, a sandbox, a parent...) live in one optional
// block, so that the history of an instance costs the cache a few hundred
// bytes a run (BenchmarkCachedFinishedRuns).
//
// AgentRun rebuilds the compacted run, field for field
// (TestFinishedRunRecordRoundTrips): whoever reads the cache sees an
// *v1alpha1.AgentRun, never this record, except the hot paths over a whole
// history (counts, pruning, the handlers of a restart's list), which read
// the record's accessors and allocate nothing per run.
type FinishedRun struct {
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
	Generation      int64
	Created         metav1.Time

	Instance string
	Mode     v1alpha1.AgentRunMode // set on every run: the CRD defaults it
	Cleanup  v1alpha1.CleanupPolicy
	Phase    v1alpha1.AgentRunPhase
	JobName  string
	// Reason is the reason of the one outcome condition (ConditionComplete
	// or ConditionFailed, status True, as flagOutcome says), when the run
	// has exactly that one; else the conditions are in more.
	Reason             string
	Completed          metav1.Time // status.completedAt, when flagCompleted
	ObservedGeneration int64
	TTL                int32 // spec.ttlSecondsAfterFinished, when flagTTL
	Attempts           int32
	flags              uint8
	more               *finishedMore
}

const (
	flagCompleted uint8 = 1 << iota
	flagTTL
	flagCancel
	flagResultTruncated
	flagOutcomeComplete // one condition: Complete True with Reason
	flagOutcomeFailed   // one condition: Failed True with Reason
)

// finishedMore holds what compactFinishedRun keeps and few finished runs
// have.
type finishedMore struct {
	TypeMeta                   metav1.TypeMeta
	GenerateName, SelfLink     string
	DeletionTimestamp          *metav1.Time
	DeletionGracePeriodSeconds *int64
	Labels, Annotations        map[string]string
	OwnerReferences            []metav1.OwnerReference
	Finalizers                 []string
	ManagedFields              []metav1.ManagedFieldsEntry

	Parent       *v1alpha1.ParentRef
	Timeout      *metav1.Duration
	Sandbox      *v1alpha1.SandboxSpec
	AgentSandbox *v1alpha1.AgentSandboxSpec
	Retry        *v1alpha1.RetryPolicy

	SandboxName, SandboxClaimName, DeploymentName, ServiceName string
	Conditions                                                 []metav1.Condition
}

// newFinishedRun records r, a run compactFinishedRun has compacted. r is
// not kept: the record shares only its strings and pointers.
func newFinishedRun(r *v1alpha1.AgentRun) *FinishedRun {
	s, st := &r.Spec, &r.Status
	f := &FinishedRun{
		Namespace: r.Namespace, Name: r.Name, UID: r.UID, ResourceVersion: r.ResourceVersion,
		Generation: r.Generation, Created: r.CreationTimestamp,
		Instance: s.InstanceRef, Mode: s.Mode, Cleanup: s.Cleanup, Phase: st.Phase, JobName: st.JobName,
		ObservedGeneration: st.ObservedGeneration, Attempts: st.Attempts,
	}
	if f.JobName == f.Name {
		f.JobName = f.Name // one string, not two
	}
	if st.CompletedAt != nil {
		f.flags |= flagCompleted
		f.Completed = *st.CompletedAt
	}
	if s.TTLSecondsAfterFinished != nil {
		f.flags |= flagTTL
		f.TTL = *s.TTLSecondsAfterFinished
	}
	if s.Cancel {
		f.flags |= flagCancel
	}
	if st.ResultTruncated {
		f.flags |= flagResultTruncated
	}
	var conditions []metav1.Condition
	switch c := st.Conditions; {
	case len(c) == 1 && c[0] == (metav1.Condition{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: c[0].Reason}):
		f.flags |= flagOutcomeComplete
		f.Reason = c[0].Reason
	case len(c) == 1 && c[0] == (metav1.Condition{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: c[0].Reason}):
		f.flags |= flagOutcomeFailed
		f.Reason = c[0].Reason
	default:
		conditions = c
	}
	m := finishedMore{
		TypeMeta: r.TypeMeta, GenerateName: r.GenerateName, SelfLink: r.SelfLink,
		DeletionTimestamp: r.DeletionTimestamp, DeletionGracePeriodSeconds: r.DeletionGracePeriodSeconds,
		Labels: r.Labels, Annotations: r.Annotations, OwnerReferences: r.OwnerReferences,
		Finalizers: r.Finalizers, ManagedFields: r.ManagedFields,
		Parent: s.Parent, Timeout: s.Timeout, Sandbox: s.Sandbox, AgentSandbox: s.AgentSandbox, Retry: s.Retry,
		SandboxName: st.SandboxName, SandboxClaimName: st.SandboxClaimName,
		DeploymentName: st.DeploymentName, ServiceName: st.ServiceName, Conditions: conditions,
	}
	if !m.empty() {
		f.more = &m
	}
	return f
}

func (m *finishedMore) empty() bool {
	return m.TypeMeta == (metav1.TypeMeta{}) && m.GenerateName == "" && m.SelfLink == "" &&
		m.DeletionTimestamp == nil && m.DeletionGracePeriodSeconds == nil &&
		m.Labels == nil && m.Annotations == nil && m.OwnerReferences == nil && m.Finalizers == nil && m.ManagedFields == nil &&
		m.Parent == nil && m.Timeout == nil && m.Sandbox == nil && m.AgentSandbox == nil && m.Retry == nil &&
		m.SandboxName == "" && m.SandboxClaimName == "" && m.DeploymentName == "" && m.ServiceName == "" && m.Conditions == nil
}

// AgentRun returns the compacted run f records, as a new object the caller
// may keep (its maps, slices and pointers are still shared with the cache:
// read them, do not change them, as with any cached object).
func (f *FinishedRun) AgentRun() *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: f.Namespace, Name: f.Name, UID: f.UID, ResourceVersion: f.ResourceVersion,
			Generation: f.Generation, CreationTimestamp: f.Created,
		},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: f.Instance, Mode: f.Mode, Cleanup: f.Cleanup, Cancel: f.flags&flagCancel != 0},
		Status: v1alpha1.AgentRunStatus{
			ObservedGeneration: f.ObservedGeneration, Phase: f.Phase, JobName: f.JobName,
			ResultTruncated: f.flags&flagResultTruncated != 0, Attempts: f.Attempts,
		},
	}
	if f.flags&flagCompleted != 0 {
		at := f.Completed
		r.Status.CompletedAt = &at
	}
	if f.flags&flagTTL != 0 {
		ttl := f.TTL
		r.Spec.TTLSecondsAfterFinished = &ttl
	}
	switch {
	case f.flags&flagOutcomeComplete != 0:
		r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: f.Reason}}
	case f.flags&flagOutcomeFailed != 0:
		r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: f.Reason}}
	}
	if m := f.more; m != nil {
		r.TypeMeta = m.TypeMeta
		r.GenerateName, r.SelfLink = m.GenerateName, m.SelfLink
		r.DeletionTimestamp, r.DeletionGracePeriodSeconds = m.DeletionTimestamp, m.DeletionGracePeriodSeconds
		r.Labels, r.Annotations, r.OwnerReferences = m.Labels, m.Annotations, m.OwnerReferences
		r.Finalizers, r.ManagedFields = m.Finalizers, m.ManagedFields
		s := &r.Spec
		s.Parent, s.Timeout, s.Sandbox, s.AgentSandbox, s.Retry = m.Parent, m.Timeout, m.Sandbox, m.AgentSandbox, m.Retry
		st := &r.Status
		st.SandboxName, st.SandboxClaimName, st.DeploymentName, st.ServiceName = m.SandboxName, m.SandboxClaimName, m.DeploymentName, m.ServiceName
		if m.Conditions != nil {
			st.Conditions = m.Conditions
		}
	}
	return r
}

// GetObjectMeta makes the record a metav1.ObjectMetaAccessor, which is what
// the informer's key function and tombstones need of it (namespace, name).
func (f *FinishedRun) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: f.Namespace, Name: f.Name, UID: f.UID, ResourceVersion: f.ResourceVersion}
}

// Deleting reports whether the run has a deletion timestamp.
func (f *FinishedRun) Deleting() bool { return f.more != nil && f.more.DeletionTimestamp != nil }

// ParentName is spec.parent.runName, or "" for a run that is no sub-agent.
func (f *FinishedRun) ParentName() string {
	if f.more == nil || f.more.Parent == nil {
		return ""
	}
	return f.more.Parent.RunName
}

// OutcomeReason is the reason of the run's true Complete or Failed
// condition (the last one, as the runs-by-phase metric reads it), or "".
func (f *FinishedRun) OutcomeReason() string {
	if f.flags&(flagOutcomeComplete|flagOutcomeFailed) != 0 {
		return f.Reason
	}
	if f.more == nil {
		return ""
	}
	return OutcomeReason(f.more.Conditions)
}

// OutcomeReason is the reason of the last true Complete or Failed
// condition of conditions, or "".
func OutcomeReason(conditions []metav1.Condition) string {
	reason := ""
	for _, c := range conditions {
		if (c.Type == v1alpha1.ConditionFailed || c.Type == v1alpha1.ConditionComplete) && c.Status == metav1.ConditionTrue {
			reason = c.Reason
		}
	}
	return reason
}
