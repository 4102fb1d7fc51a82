package agentrun

import (
	"fmt"
	"testing"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// BenchmarkRunFinishes is the handler work when one run of a busy instance
// finishes: it must wake the runs waiting for a slot, and only read those.
// With an index of every run of the instance this grew with the instance's
// finished runs (quadratic over a burst); go test -bench RunFinishes
// -benchmem ./pkg/controller/agentrun shows the cost per finished run at
// two sizes.
func BenchmarkRunFinishes(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("runs=%d", n), func(b *testing.B) {
			f := newFixture(b)
			for i := range n {
				f.addToCache(newRun(fmt.Sprintf("done-%05d", i), withStatus(v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded})))
			}
			f.addToCache(newRun("waiting"))
			running := newRun("finishing", withStatus(runningStatus("finishing", "finishing-pod")))
			finished := running.DeepCopy()
			finished.Status.Phase = v1alpha1.PhaseSucceeded
			b.ResetTimer()
			for b.Loop() {
				f.handler(kindRun).OnUpdate(running, finished)
				if got := f.queued(); len(got) != 2 {
					b.Fatalf("queued %v, want the finished run and the waiting one", got)
				}
			}
		})
	}
}
