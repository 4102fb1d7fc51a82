package phase

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var fuzzPhases = []v1alpha1.AgentRunPhase{"", v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseServing, v1alpha1.PhaseSucceeded, v1alpha1.PhaseFailed}

// FuzzNext builds observations from arbitrary bytes and checks the machine's
// invariants: no panic, terminal phases absorb, the decision is internally
// consistent, a run's admission is decided by its first decision and the
// inputs are never mutated.
func FuzzNext(f *testing.F) {
	f.Add(uint8(0), uint8(0), int32(0), uint16(60), "", uint8(0), uint8(0))
	f.Add(uint8(2), uint8(3), int32(3), uint16(700), `{"status":"error"}`, uint8(255), uint8(7))
	f.Add(uint8(4), uint8(1), int32(0), uint16(5), reportJSON, uint8(17), uint8(1))
	f.Add(uint8(5), uint8(5), int32(-1), uint16(0), "__SYMPOZIUM_RESULT__{}__SYMPOZIUM_END__", uint8(128), uint8(64))
	f.Fuzz(func(t *testing.T, phaseIdx, podState uint8, exit int32, elapsedSec uint16, msg string, flags, sub uint8) {
		run := newRun(withPhase(fuzzPhases[int(phaseIdx)%len(fuzzPhases)]))
		if flags&1 != 0 {
			withJobName()(run)
		}
		if flags&2 != 0 {
			withPodName("run-pod")(run)
		}
		if flags&4 != 0 {
			withCleanup(v1alpha1.CleanupKeep)(run)
		}
		if flags&8 != 0 {
			withParent("parent", int32(sub%4))(run)
		}
		if flags&16 != 0 {
			withTimeout(time.Duration(sub%5+1) * time.Minute)(run)
		}
		if flags&128 != 0 {
			withStarted(t0)(run)
		}
		in := Observed{Run: run, Config: testConfig, Now: t0.Add(time.Duration(elapsedSec) * time.Second),
			ChildRank: int(sub % 5), ActiveSubagents: int(sub % 7), WaitingAhead: int(sub % 3), LogTail: msg}
		if flags&32 != 0 {
			in.Instance = newInstance(withLimits(int32(sub%3), int32(sub%4+1), int32(sub%4)))
		}
		if flags&64 != 0 {
			job := jobFor(run)
			switch sub % 4 {
			case 1:
				job.OwnerReferences = nil
			case 2:
				jobCond("Failed", "DeadlineExceeded")(job)
			case 3:
				jobCond("Complete", "")(job)
			}
			in.Objects = Objects{KindJob: job}
		} else {
			in.WorkloadExpected = sub&1 != 0
		}
		if flags&8 != 0 && sub&16 != 0 {
			in.Parent = newRun(func(r *v1alpha1.AgentRun) { r.Name, r.UID = "parent", "parent-uid" })
		}
		if sub&32 != 0 {
			in.MissingConfigMaps = []string{"cm"}
		}
		switch podState % 7 {
		case 1:
			in.Pod = newPod(agentRunning(t0))
		case 2:
			in.Pod = newPod(agentExited(exit, msg))
		case 3:
			in.Pod = newPod(agentWaiting("ErrImagePull"))
		case 4:
			in.Pod = newPod(agentExited(exit, msg), sidecarRunning(), func(p *corev1.Pod) { p.Status.Reason = "Evicted" })
		case 5:
			in.Pod = newPod(agentRunning(t0), func(p *corev1.Pod) { p.DeletionTimestamp = new(metav1.NewTime(t0)) })
		case 6:
			in.Pod = newPod()
		}
		before := run.DeepCopy()
		d := Next(in)
		if !apiequality.Semantic.DeepEqual(before, run) {
			t.Fatalf("Next mutated the run")
		}
		if run.Status.Phase.IsTerminal() {
			if !apiequality.Semantic.DeepEqual(withGeneration(run.Status, run.Generation), d.Status) {
				t.Fatalf("terminal phase %s changed: %+v -> %+v", run.Status.Phase, run.Status, d.Status)
			}
			if verbs(d, Create) || len(d.Events) > 0 || d.SetOwner != nil {
				t.Fatalf("terminal phase acted: %+v", d)
			}
		}
		if d.Status.Phase == "" {
			t.Fatalf("empty phase written")
		}
		// A run whose admission is undecided goes in front of the queue;
		// one decision takes it out, or it would stay there.
		decided := run.DeepCopy()
		decided.Status = d.Status
		if AdmissionUndecided(run) && AdmissionUndecided(decided) {
			t.Fatalf("the admission is still undecided after a decision: %+v", d.Status)
		}
		if d.RequeueAfter < 0 || (d.RequeueAfter > 0 && d.RequeueAfter < MinRequeue) {
			t.Fatalf("requeue %s", d.RequeueAfter)
		}
		if d.Status.Phase.IsTerminal() && (verbs(d, Create) || verbs(d, Update) || d.RequeueAfter != 0) {
			t.Fatalf("finished run still creates or requeues: %+v", d)
		}
		assertActionsMatchCache(t, in, d)
		assertProgressEvents(t, d)
		if d.Status.ObservedGeneration != run.Generation {
			t.Fatalf("observedGeneration not kept")
		}
		if d.Status.TokenUsage != nil && d.Status.TokenUsage.TotalTokens != d.Status.TokenUsage.InputTokens+d.Status.TokenUsage.OutputTokens {
			t.Fatalf("totalTokens is not input + output: %+v", d.Status.TokenUsage)
		}
	})
}

func withGeneration(st v1alpha1.AgentRunStatus, gen int64) v1alpha1.AgentRunStatus {
	st = *st.DeepCopy()
	st.ObservedGeneration = gen
	return st
}
