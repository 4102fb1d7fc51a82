package agentrun

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// BenchmarkSync is one sync of a run (observe, decide, apply) against the
// fake clientsets, without the fixture's cache-snapshot check:
//   - "running": a running task run with its Job and agent pod, nothing to
//     write (the common sync: a child changed);
//   - "admit": a new run, its Job created and Pending written (a new run
//     each iteration; the fake API server grows with b.N on every side);
//   - "finished": a finished run at rest, nothing to write.
//
// go test -bench Sync -benchmem -run '^$' ./pkg/controller/agentrun
func BenchmarkSync(b *testing.B) {
	quiet := klog.NewContext(context.Background(), logr.Discard())
	b.Run("running", func(b *testing.B) {
		f := newFixture(b)
		run := newRun("run", withStatus(runningStatus("run", "run-pod")))
		job := jobOf(run, "job-uid")
		f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentRunning(t0.Add(5e9))))
		f.converge("run", 5)
		key := f.key("run")
		b.ResetTimer()
		for b.Loop() {
			if err := f.c.sync(quiet, key); err != nil {
				b.Fatal(err)
			}
		}
		if w := append(f.clientWrites(), f.kubeWrites()...); len(w) > 0 {
			b.Fatalf("wrote %v", describe(w))
		}
	})
	b.Run("admit", func(b *testing.B) {
		f := newFixture(b)
		f.add(newInstance("inst"))
		i := 0
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			name := fmt.Sprintf("run-%07d", i)
			i++
			f.add(newRun(name))
			f.clearActions()
			b.StartTimer()
			if err := f.c.sync(quiet, f.key(name)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("finished", func(b *testing.B) {
		f := newFixture(b)
		st := runningStatus("run", "run-pod")
		st.Phase = v1alpha1.PhaseSucceeded
		st.CompletedAt = st.StartedAt
		run := newRun("run", withStatus(st))
		f.add(newInstance("inst"), run)
		f.converge("run", 5)
		key := f.key("run")
		b.ResetTimer()
		for b.Loop() {
			if err := f.c.sync(quiet, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
