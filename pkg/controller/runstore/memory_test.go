package runstore

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// finishedRun is a run as the API server serves it once this controller
// recorded its success (the bench's runs: a short task, the simulated
// agent's env and report).
func finishedRun(i int) []byte {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	code := int32(0)
	r := &v1alpha1.AgentRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("run-%05d", i), Namespace: "bench-memory-keep", UID: types.UID(fmt.Sprintf("6f1c2a44-3b0e-4c1e-9d2a-%012d", i)),
			ResourceVersion: fmt.Sprint(100000 + i), Generation: 1, CreationTimestamp: metav1.NewTime(t0),
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "bench", Operation: metav1.ManagedFieldsOperationUpdate}, {Manager: "sympozium-controller", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status"}}},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "bench", AgentID: "default", SessionKey: fmt.Sprintf("s-%05d", i), Task: "summarise the state of the cluster",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}, Cleanup: v1alpha1.CleanupKeep, Mode: v1alpha1.ModeTask, // the CRD's default
			Env: map[string]string{"SIM_DURATION": "0s", "SIM_MESSAGE": `{"status":"success","response":"the cluster is healthy","metrics":{"inputTokens":1500,"outputTokens":800}}`}},
		Status: v1alpha1.AgentRunStatus{ObservedGeneration: 1, Phase: v1alpha1.PhaseSucceeded, JobName: fmt.Sprintf("run-%05d", i), PodName: fmt.Sprintf("run-%05d-x7k2p", i),
			StartedAt: new(metav1.NewTime(t0)), CompletedAt: new(metav1.NewTime(t0.Add(time.Second))), Result: "the cluster is healthy", ExitCode: &code,
			TokenUsage: &v1alpha1.TokenUsage{InputTokens: 1500, OutputTokens: 800, TotalTokens: 2300}, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionAdmitted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonJobCreated, Message: "Job run created", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0)},
				{Type: v1alpha1.ConditionRunning, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSucceeded, Message: "agent exited 0", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0)},
				{Type: v1alpha1.ConditionComplete, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded, Message: "agent exited 0", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0)},
			}},
	}
	b, _ := json.Marshal(r)
	return b
}

// BenchmarkCachedFinishedRuns reports what one finished run costs the
// controller's run cache (the informer's store and the indexes of New), as
// the API server serves it and as TrimForCache keeps it:
//
//	go test -run XXX -bench CachedFinishedRuns -benchtime 20000x ./pkg/controller/runstore
func BenchmarkCachedFinishedRuns(b *testing.B) {
	for _, trim := range []bool{false, true} {
		b.Run(fmt.Sprintf("trimmed=%v", trim), func(b *testing.B) {
			runs := cache.NewSharedIndexInformer(&cache.ListWatch{}, &v1alpha1.AgentRun{}, 0, cache.Indexers{})
			if _, err := New(runs); err != nil {
				b.Fatal(err)
			}
			idx := runs.GetIndexer()
			raw := make([][]byte, b.N)
			for i := range raw {
				raw[i] = finishedRun(i)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := range b.N {
				r := &v1alpha1.AgentRun{}
				if err := json.Unmarshal(raw[i], r); err != nil {
					b.Fatal(err)
				}
				var obj any = r
				if trim {
					obj, _ = runcache.TrimForCache(r)
				}
				if err := idx.Add(obj); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(b.N), "B/run-cached")
			runtime.KeepAlive(idx)
			runtime.KeepAlive(raw)
		})
	}
}
