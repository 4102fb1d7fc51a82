package runcache

import (
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// fill sets every settable field under v to a value that is not its zero
// value: a field added to AgentRun later is filled too, so the round trip
// below fails until the record keeps it (or compaction drops it).
func fill(t *testing.T, v reflect.Value, depth int) {
	t.Helper()
	if depth > 12 {
		return
	}
	switch v.Interface().(type) {
	case metav1.Time:
		v.Set(reflect.ValueOf(metav1.NewTime(time.Date(2026, 11, 28, 10, 0, depth, 0, time.UTC))))
		return
	case resource.Quantity:
		v.Set(reflect.ValueOf(resource.MustParse("1")))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x" + v.Type().Name())
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(7 + depth))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(7 + depth))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(t, s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k, depth+1)
		fill(t, e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), depth+1)
			}
		}
	case reflect.Interface:
		// none in AgentRun today; a new one stays nil
	default:
		t.Fatalf("fill: unhandled kind %s at %s", v.Kind(), v.Type())
	}
}

// A finished run's record gives back, field for field, the compacted run
// it was made from: whatever compactFinishedRun keeps, the record keeps.
func TestFinishedRunRecordRoundTrips(t *testing.T) {
	full := &v1alpha1.AgentRun{}
	fill(t, reflect.ValueOf(full).Elem(), 0)
	outcome := func(typ string, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: "m",
			LastTransitionTime: metav1.NewTime(time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC))}
	}
	cases := map[string]func(r *v1alpha1.AgentRun){
		"every field set, succeeded": func(r *v1alpha1.AgentRun) {
			r.Status.Phase = v1alpha1.PhaseSucceeded
			r.Status.Conditions = append(r.Status.Conditions, outcome(v1alpha1.ConditionComplete, v1alpha1.ReasonSucceeded))
		},
		"every field set, failed": func(r *v1alpha1.AgentRun) {
			r.Status.Phase = v1alpha1.PhaseFailed
			r.Status.Conditions = append(r.Status.Conditions, outcome(v1alpha1.ConditionFailed, v1alpha1.ReasonJobLost))
		},
		"two outcome conditions": func(r *v1alpha1.AgentRun) {
			r.Status.Phase = v1alpha1.PhaseFailed
			r.Status.Conditions = []metav1.Condition{outcome(v1alpha1.ConditionComplete, "a"), outcome(v1alpha1.ConditionFailed, "b")}
		},
		"no outcome condition": func(r *v1alpha1.AgentRun) {
			r.Status.Phase = v1alpha1.PhaseSucceeded
			r.Status.Conditions = nil
		},
		"only the common fields (no optional block)": func(r *v1alpha1.AgentRun) { *r = *plainFinishedRun() },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			r := full.DeepCopy()
			edit(r)
			want := r.DeepCopy()
			want.ManagedFields = nil // TrimForCache drops them from every object
			compactFinishedRun(want)
			out, err := TrimForCache(r)
			require.NoError(t, err)
			rec, ok := out.(*FinishedRun)
			require.True(t, ok, "a finished run is cached as a record, not %T", out)
			assert.Equal(t, want, rec.AgentRun())
			if name == "only the common fields (no optional block)" {
				assert.Nil(t, rec.more, "a plain finished run needs no optional block")
			}
			// The accessors the history and the handlers read agree with
			// the run.
			assert.Equal(t, HistoryOf(want), rec.History())
			assert.Equal(t, OutcomeReason(want.Status.Conditions), rec.OutcomeReason())
			assert.Equal(t, want.DeletionTimestamp != nil, rec.Deleting())
			m := rec.GetObjectMeta()
			assert.Equal(t, [2]string{want.Namespace, want.Name}, [2]string{m.GetNamespace(), m.GetName()})
			// A record passes the transform again unchanged (a resync, a
			// Replace).
			again, err := TrimForCache(rec)
			require.NoError(t, err)
			assert.Same(t, rec, again)
		})
	}
}

// plainFinishedRun is a finished run as the API server serves it: a UUID,
// a decimal resourceVersion, times in time.Local (as metav1.Time decodes
// them), the CRD's enum values. Its record needs no optional block.
func plainFinishedRun() *v1alpha1.AgentRun {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC).Local()
	return &v1alpha1.AgentRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "6f1c2a44-3b0e-4c1e-9d2a-00000000002a", ResourceVersion: "1234567",
			Generation: 1, CreationTimestamp: metav1.NewTime(at)},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst", Task: "t", Cleanup: v1alpha1.CleanupKeep, Mode: v1alpha1.ModeTask},
		Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded, JobName: "run", ObservedGeneration: 1, CompletedAt: new(metav1.NewTime(at.Add(time.Minute))),
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded}}},
	}
}

// The record keeps the UID, the resourceVersion, the times and the enums
// in a compact form (see FinishedRun): every value gives back exactly
// what it was, whether it fits that form (no optional block) or not (kept
// in the optional block).
func TestFinishedRunRecordKeepsEveryValue(t *testing.T) {
	local := func(t time.Time) metav1.Time { return metav1.NewTime(t.Local()) }
	t1 := time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC)
	cases := []struct {
		name     string
		edit     func(r *v1alpha1.AgentRun)
		wantMore bool
	}{
		{"as served", func(*v1alpha1.AgentRun) {}, false},
		{"UUID of every hex digit", func(r *v1alpha1.AgentRun) { r.UID = "01234567-89ab-cdef-0123-456789abcdef" }, false},
		{"nil UUID", func(r *v1alpha1.AgentRun) { r.UID = "00000000-0000-0000-0000-000000000000" }, false},
		{"UID no UUID", func(r *v1alpha1.AgentRun) { r.UID = "uid-1" }, true},
		{"UUID in upper case", func(r *v1alpha1.AgentRun) { r.UID = "6F1C2A44-3B0E-4C1E-9D2A-00000000002A" }, true},
		{"UUID without hyphens", func(r *v1alpha1.AgentRun) { r.UID = "6f1c2a443b0e4c1e9d2a00000000002a0000" }, true},
		{"UUID with a non-hex digit", func(r *v1alpha1.AgentRun) { r.UID = "6f1c2a44-3b0e-4c1e-9d2a-00000000002g" }, true},
		{"empty UID", func(r *v1alpha1.AgentRun) { r.UID = "" }, false},
		{"resourceVersion 0", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "0" }, false},
		{"largest resourceVersion", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "18446744073709551615" }, false},
		{"resourceVersion beyond uint64", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "18446744073709551616" }, true},
		{"resourceVersion with a leading zero", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "0123" }, true},
		{"resourceVersion with a sign", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "+123" }, true},
		{"resourceVersion no number", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "abc" }, true},
		{"empty resourceVersion", func(r *v1alpha1.AgentRun) { r.ResourceVersion = "" }, false},
		{"times with nanoseconds", func(r *v1alpha1.AgentRun) {
			r.CreationTimestamp, r.Status.CompletedAt = local(t1), new(local(t1.Add(time.Nanosecond)))
		}, false},
		{"times in UTC", func(r *v1alpha1.AgentRun) {
			r.CreationTimestamp, r.Status.CompletedAt = metav1.NewTime(t1), new(metav1.NewTime(t1.Add(time.Hour)))
		}, false},
		{"the Unix epoch and before", func(r *v1alpha1.AgentRun) {
			r.CreationTimestamp, r.Status.CompletedAt = metav1.Unix(0, 0), new(metav1.Unix(-1, 999999999))
		}, false},
		{"zero creation timestamp", func(r *v1alpha1.AgentRun) { r.CreationTimestamp = metav1.Time{} }, false},
		{"completedAt absent", func(r *v1alpha1.AgentRun) { r.Status.CompletedAt = nil }, false},
		{"completedAt zero", func(r *v1alpha1.AgentRun) { r.Status.CompletedAt = &metav1.Time{} }, true},
		{"times in another location", func(r *v1alpha1.AgentRun) {
			r.CreationTimestamp = metav1.NewTime(t1.In(time.FixedZone("CET", 3600)))
		}, true},
		{"times with a monotonic clock reading", func(r *v1alpha1.AgentRun) {
			r.Status.CompletedAt = new(metav1.Now())
		}, true},
		{"times out of the range of int64 nanoseconds", func(r *v1alpha1.AgentRun) {
			r.CreationTimestamp = metav1.NewTime(time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC))
			r.Status.CompletedAt = new(local(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)))
		}, true},
		{"failed, cleanup delete, server mode", func(r *v1alpha1.AgentRun) {
			r.Status.Phase, r.Spec.Cleanup, r.Spec.Mode = v1alpha1.PhaseFailed, v1alpha1.CleanupDelete, v1alpha1.ModeServer
		}, false},
		{"no mode, no cleanup", func(r *v1alpha1.AgentRun) { r.Spec.Mode, r.Spec.Cleanup = "", "" }, false},
		{"unknown mode", func(r *v1alpha1.AgentRun) { r.Spec.Mode = "batch" }, true},
		{"unknown cleanup", func(r *v1alpha1.AgentRun) { r.Spec.Cleanup = "archive" }, true},
		// TrimForCache records only finished runs, but the record must not
		// depend on it.
		{"live phases", func(r *v1alpha1.AgentRun) { r.Status.Phase = v1alpha1.PhaseServing }, false},
		{"no phase", func(r *v1alpha1.AgentRun) { r.Status.Phase = "" }, false},
		{"unknown phase", func(r *v1alpha1.AgentRun) { r.Status.Phase = "Exploded" }, true},
		{"Job name not the run's", func(r *v1alpha1.AgentRun) { r.Status.JobName = "run-1a2b3c4d" }, true},
		{"no Job name", func(r *v1alpha1.AgentRun) { r.Status.JobName = "" }, false},
		{"failed with a catalogue reason", func(r *v1alpha1.AgentRun) {
			r.Status.Phase = v1alpha1.PhaseFailed
			r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionFailed, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSandboxRefused}}
		}, false},
		{"reason not in the catalogue", func(r *v1alpha1.AgentRun) {
			r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: "Done"}}
		}, true},
		{"empty reason", func(r *v1alpha1.AgentRun) {
			r.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue}}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := plainFinishedRun()
			tc.edit(want)
			compactFinishedRun(want)
			rec := newFinishedRun(want.DeepCopy())
			assert.Equal(t, want, rec.AgentRun())
			assert.Equal(t, tc.wantMore, rec.more != nil, "optional block")
			assert.Equal(t, want.UID, rec.UID())
			assert.Equal(t, want.ResourceVersion, rec.ResourceVersion())
			assert.Equal(t, ResourceVersionKeyOf(want.ResourceVersion), rec.ResourceVersionKey())
			assert.Equal(t, want.Status.Phase, rec.Phase())
			assert.Equal(t, OutcomeReason(want.Status.Conditions), rec.OutcomeReason())
			h := HistoryOf(want)
			assert.Equal(t, h, rec.History())
			assert.Equal(t, want.UID, h.UID())
			m := rec.GetObjectMeta()
			assert.Equal(t, [4]string{want.Namespace, want.Name, string(want.UID), want.ResourceVersion},
				[4]string{m.GetNamespace(), m.GetName(), string(m.GetUID()), m.GetResourceVersion()})
		})
	}
}

// The loops over a whole history read the record without allocating:
// 50,000 runs per pass (issue 15).
func TestFinishedRunHistoryAllocatesNothing(t *testing.T) {
	r := plainFinishedRun()
	compactFinishedRun(r)
	rec := newFinishedRun(r)
	require.Nil(t, rec.more)
	other := ResourceVersionKeyOf("1234567")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		h := rec.History()
		if h.Phase != v1alpha1.PhaseSucceeded || rec.ResourceVersionKey() != other || rec.OutcomeReason() != v1alpha1.ReasonSucceeded {
			t.Fatal("the record lost its values")
		}
	}))
}

// Resource versions compare through their keys as they do as strings.
func TestResourceVersionKeysCompareAsStrings(t *testing.T) {
	rvs := []string{"", "0", "00", "1", "01", "123", "+123", "-1", "abc", "18446744073709551615", "18446744073709551616"}
	for _, a := range rvs {
		assert.Equal(t, a, ResourceVersionKeyOf(a).String())
		for _, b := range rvs {
			assert.Equal(t, a == b, ResourceVersionKeyOf(a) == ResourceVersionKeyOf(b), "%q and %q", a, b)
		}
	}
}

// The record fits the 128-byte size class: one instance keeps 50,000 of
// them (issue 15), so a field that pushes it to the next class (144)
// costs 800 KB. Keep a new rare field in the optional block.
func TestFinishedRunRecordSize(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(FinishedRun{}), uintptr(128))
}
