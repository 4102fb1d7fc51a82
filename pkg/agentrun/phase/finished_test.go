package phase

import (
	"reflect"
	"testing"
	"time"

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
		"only the common fields (no optional block)": func(r *v1alpha1.AgentRun) {
			*r = v1alpha1.AgentRun{
				TypeMeta:   metav1.TypeMeta{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun"},
				ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "u", ResourceVersion: "9", Generation: 1, CreationTimestamp: full.CreationTimestamp},
				Spec:       v1alpha1.AgentRunSpec{InstanceRef: "inst", Task: "t", Cleanup: v1alpha1.CleanupKeep, Mode: v1alpha1.ModeTask},
				Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded, JobName: "run", ObservedGeneration: 1, CompletedAt: full.Status.CompletedAt,
					Conditions: []metav1.Condition{outcome(v1alpha1.ConditionComplete, v1alpha1.ReasonSucceeded)}},
			}
		},
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
