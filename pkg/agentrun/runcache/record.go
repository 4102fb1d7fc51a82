package runcache

import (
	"encoding/hex"
	"math"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// FinishedRun is what the run cache holds of a finished run: exactly what
// compactFinishedRun keeps of it, in a record of 128 bytes instead of the
// 800 of an AgentRun struct, whose spec and status fields a finished run
// leaves empty. One instance keeps up to 50,000 finished runs (issue 15),
// so every byte of the record counts 50,000 times: the values every run
// has are kept in the form that costs least and gives the value back
// exactly (the UID as 16 bytes, the resourceVersion as a number, the times
// as Unix nanoseconds, the enums and the outcome's reason as codes, the
// Job's name as a flag when it is the run's), and whatever does not fit
// that form, like the fields that are set on few runs (deletion, labels,
// owner references, a sandbox, a parent...), lives in one optional block.
// The history of an instance then costs the cache about 290 bytes a run
// (BenchmarkCachedFinishedRuns; TestFinishedRunRecordSize keeps the record
// in its size class).
//
// AgentRun rebuilds the compacted run, field for field
// (TestFinishedRunRecordRoundTrips): whoever reads the cache sees an
// *v1alpha1.AgentRun, never this record, except the hot paths over a whole
// history (counts, pruning, the handlers of a restart's list), which read
// the record's accessors and allocate nothing per run (History).
type FinishedRun struct {
	Namespace, Name string
	Instance        string

	// uuid is metadata.uid when flagUUID (see parseUUID): the UIDs the API
	// server assigns are UUIDs, whose 36-character string would cost a
	// 48-byte allocation of its own.
	uuid [16]byte
	// rv is metadata.resourceVersion when flagRV (see parseDecimal): the
	// API server's are decimal numbers, whose string would be an
	// allocation of its own.
	rv                 uint64
	Generation         int64
	ObservedGeneration int64
	// created and completed are metadata.creationTimestamp and
	// status.completedAt in Unix nanoseconds, when flagCreated and
	// flagCompleted (see packTime): 8 bytes each instead of the 24 of a
	// time.Time.
	created, completed int64
	TTL                int32 // spec.ttlSecondsAfterFinished, when flagTTL
	Attempts           int32
	more               *finishedMore
	// mode, cleanup and phase are spec.mode, spec.cleanup and status.phase
	// as codes (see enumCode), 1 byte instead of a 16-byte string header
	// each; 0 when the value is in more. reason is likewise the reason of
	// the one outcome condition (ConditionComplete or ConditionFailed,
	// status True, as flagOutcome says) when the run has exactly that one;
	// else the conditions are in more.
	mode, cleanup, phase, reason uint8
	flags                        uint16
}

const (
	flagTTL uint16 = 1 << iota
	flagCancel
	flagResultTruncated
	flagOutcomeComplete // one condition: Complete True with the reason
	flagOutcomeFailed   // one condition: Failed True with the reason
	flagJobName         // status.jobName is the run's name, else more.JobName
	flagUUID            // the UID is uuid, else more.UID
	flagRV              // the resourceVersion is rv, else more.ResourceVersion
	flagCreated         // the creation timestamp is created, else more.Created
	flagCreatedUTC      // ... in UTC, else in time.Local
	flagCompleted       // completedAt is completed, else more.CompletedAt
	flagCompletedUTC    // ... in UTC, else in time.Local
)

// finishedMore holds what compactFinishedRun keeps and few finished runs
// have, and the values the record's compact fields cannot hold exactly.
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

	// The values that did not fit the record's compact form: a UID that is
	// no canonical UUID, a resourceVersion that is no canonical decimal, a
	// zero creation timestamp or one time.Unix cannot give back, an enum
	// value the record has no code for. The fake clientsets of the tests
	// give UIDs like "uid-1" and empty resourceVersions; the CRD admits no
	// other enum values, but the record must never lose a value.
	UID             types.UID
	ResourceVersion string
	Created         metav1.Time
	CompletedAt     *metav1.Time
	Mode            v1alpha1.AgentRunMode
	Cleanup         v1alpha1.CleanupPolicy
	Phase           v1alpha1.AgentRunPhase
	Reason          string
	// JobName is status.jobName when it is not the run's name: the name
	// of a run's Job is the run's, unless that is too long for a label
	// value (naming.JobName); the other backends have none ("").
	JobName string
}

// The enum values the record has codes for: code i+1 is the value at i,
// code 0 says the value is in more. A record holds a finished run, but any
// phase has a code. The outcome's reasons are coded over the catalogue,
// v1alpha1.Reasons. The codes are never stored outside the process, so
// these lists may be reordered or extended freely (up to 255 values).
var (
	modeCodes    = []v1alpha1.AgentRunMode{v1alpha1.ModeTask, v1alpha1.ModeServer}
	cleanupCodes = []v1alpha1.CleanupPolicy{v1alpha1.CleanupDelete, v1alpha1.CleanupKeep}
	phaseCodes   = []v1alpha1.AgentRunPhase{v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed,
		v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseServing}
)

// newFinishedRun records r, a run compactFinishedRun has compacted. r is
// not kept: the record shares only its strings and pointers.
func newFinishedRun(r *v1alpha1.AgentRun) *FinishedRun {
	s, st := &r.Spec, &r.Status
	f := &FinishedRun{
		Namespace: r.Namespace, Name: r.Name, Generation: r.Generation,
		Instance: s.InstanceRef, ObservedGeneration: st.ObservedGeneration, Attempts: st.Attempts,
	}
	var m finishedMore
	if st.JobName == r.Name {
		f.flags |= flagJobName
	} else {
		m.JobName = st.JobName
	}
	if u, ok := parseUUID(string(r.UID)); ok {
		f.uuid, f.flags = u, f.flags|flagUUID
	} else {
		m.UID = r.UID
	}
	if n, ok := parseDecimal(r.ResourceVersion); ok {
		f.rv, f.flags = n, f.flags|flagRV
	} else {
		m.ResourceVersion = r.ResourceVersion
	}
	if n, utc, ok := packTime(r.CreationTimestamp.Time); ok {
		f.created, f.flags = n, f.flags|flagCreated
		if utc {
			f.flags |= flagCreatedUTC
		}
	} else {
		m.Created = r.CreationTimestamp
	}
	if at := st.CompletedAt; at != nil {
		if n, utc, ok := packTime(at.Time); ok {
			f.completed, f.flags = n, f.flags|flagCompleted
			if utc {
				f.flags |= flagCompletedUTC
			}
		} else {
			m.CompletedAt = at
		}
	}
	if f.mode = enumCode(s.Mode, modeCodes); f.mode == 0 {
		m.Mode = s.Mode
	}
	if f.cleanup = enumCode(s.Cleanup, cleanupCodes); f.cleanup == 0 {
		m.Cleanup = s.Cleanup
	}
	if f.phase = enumCode(st.Phase, phaseCodes); f.phase == 0 {
		m.Phase = st.Phase
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
	switch c := st.Conditions; {
	case len(c) == 1 && c[0] == (metav1.Condition{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: c[0].Reason}):
		f.flags |= flagOutcomeComplete
	case len(c) == 1 && c[0] == (metav1.Condition{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: c[0].Reason}):
		f.flags |= flagOutcomeFailed
	default:
		m.Conditions = c
	}
	if f.flags&(flagOutcomeComplete|flagOutcomeFailed) != 0 {
		if f.reason = enumCode(st.Conditions[0].Reason, v1alpha1.Reasons); f.reason == 0 {
			m.Reason = st.Conditions[0].Reason
		}
	}
	m.TypeMeta, m.GenerateName, m.SelfLink = r.TypeMeta, r.GenerateName, r.SelfLink
	m.DeletionTimestamp, m.DeletionGracePeriodSeconds = r.DeletionTimestamp, r.DeletionGracePeriodSeconds
	m.Labels, m.Annotations, m.OwnerReferences = r.Labels, r.Annotations, r.OwnerReferences
	m.Finalizers, m.ManagedFields = r.Finalizers, r.ManagedFields
	m.Parent, m.Timeout, m.Sandbox, m.AgentSandbox, m.Retry = s.Parent, s.Timeout, s.Sandbox, s.AgentSandbox, s.Retry
	m.SandboxName, m.SandboxClaimName, m.DeploymentName, m.ServiceName = st.SandboxName, st.SandboxClaimName, st.DeploymentName, st.ServiceName
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
		m.SandboxName == "" && m.SandboxClaimName == "" && m.DeploymentName == "" && m.ServiceName == "" && m.Conditions == nil &&
		m.UID == "" && m.ResourceVersion == "" && m.Created == (metav1.Time{}) && m.CompletedAt == nil &&
		m.Mode == "" && m.Cleanup == "" && m.Phase == "" && m.Reason == "" && m.JobName == ""
}

// moreOrNone is f.more, or an empty block: the record's values that are
// in more are then the zero values.
func (f *FinishedRun) moreOrNone() *finishedMore {
	if f.more == nil {
		return &noMore
	}
	return f.more
}

var noMore finishedMore

// AgentRun returns the compacted run f records, as a new object the caller
// may keep (its maps, slices and pointers are still shared with the cache:
// read them, do not change them, as with any cached object).
func (f *FinishedRun) AgentRun() *v1alpha1.AgentRun {
	m := f.moreOrNone()
	r := &v1alpha1.AgentRun{
		TypeMeta: m.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: f.Namespace, Name: f.Name, UID: f.UID(), ResourceVersion: f.ResourceVersion(),
			Generation: f.Generation, CreationTimestamp: f.creationTimestamp(),
			GenerateName: m.GenerateName, SelfLink: m.SelfLink,
			DeletionTimestamp: m.DeletionTimestamp, DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
			Labels: m.Labels, Annotations: m.Annotations, OwnerReferences: m.OwnerReferences,
			Finalizers: m.Finalizers, ManagedFields: m.ManagedFields,
		},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: f.Instance, Mode: enumValue(f.mode, modeCodes, m.Mode), Cleanup: enumValue(f.cleanup, cleanupCodes, m.Cleanup),
			Cancel: f.flags&flagCancel != 0,
			Parent: m.Parent, Timeout: m.Timeout, Sandbox: m.Sandbox, AgentSandbox: m.AgentSandbox, Retry: m.Retry,
		},
		Status: v1alpha1.AgentRunStatus{
			ObservedGeneration: f.ObservedGeneration, Phase: f.Phase(), JobName: f.jobName(),
			CompletedAt: f.completedAt(), ResultTruncated: f.flags&flagResultTruncated != 0, Attempts: f.Attempts,
			SandboxName: m.SandboxName, SandboxClaimName: m.SandboxClaimName, DeploymentName: m.DeploymentName, ServiceName: m.ServiceName,
			Conditions: m.Conditions,
		},
	}
	if f.flags&flagTTL != 0 {
		ttl := f.TTL
		r.Spec.TTLSecondsAfterFinished = &ttl
	}
	switch {
	case f.flags&flagOutcomeComplete != 0:
		r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: f.outcomeReason()}}
	case f.flags&flagOutcomeFailed != 0:
		r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: f.outcomeReason()}}
	}
	return r
}

// GetObjectMeta makes the record a metav1.ObjectMetaAccessor, which is what
// the informer's key function and tombstones need of it (namespace, name).
func (f *FinishedRun) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: f.Namespace, Name: f.Name, UID: f.UID(), ResourceVersion: f.ResourceVersion()}
}

// UID is the run's metadata.uid. A UUID's string is built anew each call:
// a loop over a whole history reads History, which builds none.
func (f *FinishedRun) UID() types.UID {
	return f.runUID().value()
}

func (f *FinishedRun) runUID() runUID {
	if f.flags&flagUUID != 0 {
		return runUID{uuid: f.uuid, isUUID: true}
	}
	return runUID{other: f.moreOrNone().UID}
}

// ResourceVersion is the run's metadata.resourceVersion. A decimal's
// string is built anew each call: ResourceVersionKey builds none.
func (f *FinishedRun) ResourceVersion() string {
	return f.ResourceVersionKey().String()
}

// ResourceVersionKey is the run's metadata.resourceVersion as a
// comparable value, without allocating.
func (f *FinishedRun) ResourceVersionKey() ResourceVersionKey {
	if f.flags&flagRV != 0 {
		return ResourceVersionKey{n: f.rv, decimal: true}
	}
	return ResourceVersionKey{other: f.moreOrNone().ResourceVersion}
}

// Phase is the run's status.phase.
func (f *FinishedRun) Phase() v1alpha1.AgentRunPhase {
	return enumValue(f.phase, phaseCodes, f.moreOrNone().Phase)
}

func (f *FinishedRun) creationTimestamp() metav1.Time {
	if f.flags&flagCreated != 0 {
		return unpackTime(f.created, f.flags&flagCreatedUTC != 0)
	}
	return f.moreOrNone().Created
}

// completedAt is status.completedAt, a new pointer when the record holds
// the time itself.
func (f *FinishedRun) completedAt() *metav1.Time {
	if f.flags&flagCompleted != 0 {
		at := unpackTime(f.completed, f.flags&flagCompletedUTC != 0)
		return &at
	}
	return f.moreOrNone().CompletedAt
}

// Labels are the run's labels kept in the record (see compactFinishedRun).
func (f *FinishedRun) Labels() map[string]string { return f.moreOrNone().Labels }

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
		return f.outcomeReason()
	}
	if f.more == nil {
		return ""
	}
	return OutcomeReason(f.more.Conditions)
}

// outcomeReason is the reason of the one outcome condition the flags say
// the run has.
func (f *FinishedRun) outcomeReason() string {
	return enumValue(f.reason, v1alpha1.Reasons, f.moreOrNone().Reason)
}

// jobName is status.jobName.
func (f *FinishedRun) jobName() string {
	if f.flags&flagJobName != 0 {
		return f.Name
	}
	return f.moreOrNone().JobName
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

// runUID is a UID as a value that holds a UUID without a string of its
// own: comparable, and what History gives for each of a history's runs
// without allocating.
type runUID struct {
	uuid   [16]byte
	isUUID bool
	other  types.UID // when !isUUID
}

func uidOf(u types.UID) runUID {
	if b, ok := parseUUID(string(u)); ok {
		return runUID{uuid: b, isUUID: true}
	}
	return runUID{other: u}
}

func (u runUID) value() types.UID {
	if !u.isUUID {
		return u.other
	}
	var b [36]byte
	hex.Encode(b[0:8], u.uuid[0:4])
	hex.Encode(b[9:13], u.uuid[4:6])
	hex.Encode(b[14:18], u.uuid[6:8])
	hex.Encode(b[19:23], u.uuid[8:10])
	hex.Encode(b[24:36], u.uuid[10:16])
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return types.UID(b[:])
}

// A ResourceVersionKey is a resourceVersion as a value that holds a
// decimal one without a string of its own: two keys are equal exactly when
// the versions are, so that the handlers can compare the version of a
// record with another run's without building strings (a resync or a
// restart's list goes over every run of the cache).
type ResourceVersionKey struct {
	n       uint64
	decimal bool
	other   string // when !decimal
}

// ResourceVersionKeyOf is the key of the resourceVersion rv.
func ResourceVersionKeyOf(rv string) ResourceVersionKey {
	if n, ok := parseDecimal(rv); ok {
		return ResourceVersionKey{n: n, decimal: true}
	}
	return ResourceVersionKey{other: rv}
}

// String is the resourceVersion k is the key of.
func (k ResourceVersionKey) String() string {
	if !k.decimal {
		return k.other
	}
	return strconv.FormatUint(k.n, 10)
}

// parseUUID returns the 16 bytes of s when s is a UUID in the form the API
// server gives and runUID.value gives back: 8-4-4-4-12 lowercase
// hexadecimal digits.
func parseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	for i, j := 0, 0; i < len(s); {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, ok1 := lowerHexDigit(s[i])
		lo, ok2 := lowerHexDigit(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		i, j = i+2, j+1
	}
	return u, true
}

func lowerHexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// parseDecimal returns the number s is when s is a decimal in the form
// strconv.FormatUint gives back: digits only, no sign, no leading zero.
func parseDecimal(s string) (uint64, bool) {
	if len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64) // refuses "", signs and n > MaxUint64
	return n, err == nil
}

// packTime returns t in Unix nanoseconds, and whether it is in UTC (else in
// time.Local), when unpackTime gives t back exactly: the API server's times
// decode in time.Local (metav1.Time's JSON, CBOR and protobuf decoders),
// the tests' are mostly in UTC. ok is false for the zero time, a time out
// of the range of int64 nanoseconds (before 1678 or after 2262), in
// another location, or with a monotonic clock reading (time.Now in tests).
func packTime(t time.Time) (n int64, utc, ok bool) {
	n = t.UnixNano()
	// == compares the whole value (wall clock, monotonic reading and
	// location), not just the instant: what the round trip must keep.
	switch t {
	case time.Unix(0, n):
		return n, false, true
	case time.Unix(0, n).UTC():
		return n, true, true
	}
	return 0, false, false
}

func unpackTime(n int64, utc bool) metav1.Time {
	t := time.Unix(0, n)
	if utc {
		t = t.UTC()
	}
	return metav1.Time{Time: t}
}

// enumCode is the code of v in values (its position plus one), or 0 when v
// is none of them.
func enumCode[S ~string](v S, values []S) uint8 {
	for i, known := range values[:min(len(values), math.MaxUint8)] {
		if v == known {
			return uint8(i + 1)
		}
	}
	return 0
}

// enumValue is the value of code in values, or other for code 0.
func enumValue[S ~string](code uint8, values []S, other S) S {
	if code == 0 {
		return other
	}
	return values[code-1]
}
