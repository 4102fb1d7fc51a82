package phase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestSandboxRefusals: a Ready=False reason of agent-sandbox that waiting
// does not heal fails the run with SandboxRefused and agent-sandbox's
// reason and message, at once or after the fail-fast grace; transient ones
// are waited out; for a Sandbox of the run's own and for a claim (which
// forwards its bound Sandbox's Ready condition) alike.
func TestSandboxRefusals(t *testing.T) {
	sandbox, claim := kits[2], kits[3]
	type row struct {
		reason, message string
		// since is how long before now the condition last changed; 0: it
		// has been so since the object was created (59s before now, more
		// than the 30s grace).
		since time.Duration
		fails bool
		// requeue is the wake-up asked for while waiting within the grace.
		requeue time.Duration
	}
	rows := map[string]row{
		"InvalidMetadata fails at once":           {reason: "InvalidMetadata", message: `label "sympozium.ai/x" not in the allowlist`, since: time.Second, fails: true},
		"EnvVarsInjectionRejected fails at once":  {reason: "EnvVarsInjectionRejected", message: "env injection is disallowed", since: time.Second, fails: true},
		"VolumeClaimTemplatesError fails at once": {reason: "VolumeClaimTemplatesError", message: "not allowed", since: time.Second, fails: true},
		"ClaimExpired fails at once":              {reason: "ClaimExpired", message: "Claim expired.", since: time.Second, fails: true},
		"SandboxExpired fails at once":            {reason: "SandboxExpired", message: "expired", since: time.Second, fails: true},
		"MultiplePods fails at once":              {reason: "MultiplePods", message: "2 pods", since: time.Second, fails: true},
		"WarmPoolNotFound within the grace waits": {reason: "WarmPoolNotFound", message: `SandboxWarmPool "p" not found`, since: 10 * time.Second, requeue: 20 * time.Second},
		"WarmPoolNotFound past the grace fails":   {reason: "WarmPoolNotFound", message: `SandboxWarmPool "p" not found`, fails: true},
		"TemplateNotFound past the grace fails":   {reason: "TemplateNotFound", message: `SandboxTemplate "t" not found`, fails: true},
		"ReconcilerError within the grace waits":  {reason: "ReconcilerError", message: `pods "run" is forbidden: RuntimeClass "gvisor" not found`, since: 25 * time.Second, requeue: 5 * time.Second},
		"ReconcilerError past the grace fails":    {reason: "ReconcilerError", message: `pods "run" is forbidden: RuntimeClass "gvisor" not found`, fails: true},
		"a conflict is waited out":                {reason: "ReconcilerError", message: "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version"},
		"AdoptionConflict is waited out":          {reason: "AdoptionConflict", message: "lost a race"},
		"SandboxCreatePending is waited out":      {reason: "SandboxCreatePending", message: "Sandbox already created"},
		"SandboxMissing is waited out":            {reason: "SandboxMissing", message: "Sandbox does not exist"},
		"DependenciesNotReady is waited out":      {reason: "DependenciesNotReady", message: "Pod is not ready"},
	}
	for _, k := range []kit{sandbox, claim} {
		for name, r := range rows {
			t.Run(string(k.backend)+"/"+name, func(t *testing.T) {
				in := Observed{Run: k.run(k.admitted), Instance: newInstance(), Now: now, Config: testConfig, SandboxAPI: servedAPI}
				k.workload(&in, nil)
				var obj *SandboxObject
				kind := KindSandbox
				if k.backend == BackendSandboxClaim {
					kind = KindSandboxClaim
				}
				obj = in.Objects[kind].(*SandboxObject)
				cond := metav1.Condition{Type: SandboxConditionReady, Status: metav1.ConditionFalse, Reason: r.reason, Message: r.message}
				if r.since > 0 {
					cond.LastTransitionTime = metav1.NewTime(now.Add(-r.since))
				}
				obj.Conditions = []metav1.Condition{cond}
				before := in.Run.DeepCopy()
				d := Next(in)
				assert.Equal(t, before, in.Run, "Next mutated its input")
				if r.fails {
					assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
					assert.Equal(t, v1alpha1.ReasonSandboxRefused, failedReason(&d.Status))
					assert.Contains(t, d.Status.Error, r.reason)
					assert.Contains(t, d.Status.Error, r.message)
					assert.Contains(t, d.Status.Error, string(kind)+" "+obj.Name)
					require.Len(t, d.Events, 1)
					assert.Equal(t, v1alpha1.ReasonSandboxRefused, d.Events[0].Reason)
					assert.Contains(t, d.Events[0].Message, r.reason)
					assert.True(t, k.deletes(d), "the refused object is deleted")
				} else {
					assert.Equal(t, v1alpha1.PhasePending, d.Status.Phase)
					assert.Empty(t, failedReason(&d.Status))
					assert.Empty(t, d.Events)
					want := r.requeue
					if want == 0 {
						want = k.run().CreationTimestamp.Add(10 * time.Minute).Sub(now) // the deadline
					}
					assert.Equal(t, want, d.RequeueAfter)
				}
				assertIdempotent(t, in, d)
			})
		}
	}
}

// TestSandboxRefusalAfterTheAgentEnded: the agent's own outcome wins over a
// Ready=False its Sandbox reports afterwards.
func TestSandboxRefusalAfterTheAgentEnded(t *testing.T) {
	k := kits[2]
	in := Observed{Run: k.run(k.started), Instance: newInstance(), Now: now, Config: testConfig, SandboxAPI: servedAPI}
	k.workload(&in, newPod(agentExited(0, reportJSON)))
	in.Objects[KindSandbox].(*SandboxObject).Conditions = []metav1.Condition{{Type: SandboxConditionReady, Status: metav1.ConditionFalse, Reason: "SandboxExpired"}}
	d := Next(in)
	assert.Equal(t, v1alpha1.PhaseSucceeded, d.Status.Phase)
}

// TestSandboxFinishedBeforeItsPod: a Sandbox seen Finished while its pod is
// still seen running (the pod's cache lags) waits PodCatchUp for the agent's
// exit code and report; only then does it end on the Sandbox's condition.
func TestSandboxFinishedBeforeItsPod(t *testing.T) {
	k := kits[2]
	finished := []metav1.Condition{{Type: SandboxConditionFinished, Status: metav1.ConditionTrue, Reason: "PodFailed", LastTransitionTime: metav1.NewTime(now.Add(-3 * time.Second))}}
	in := Observed{Run: k.run(k.started), Instance: newInstance(), Now: now, Config: testConfig, SandboxAPI: servedAPI}
	k.workload(&in, newPod(agentRunning(t0)))
	in.Objects[KindSandbox].(*SandboxObject).Conditions = finished
	d := Next(in)
	assert.Equal(t, v1alpha1.PhaseRunning, d.Status.Phase)
	assert.Equal(t, PodCatchUp-3*time.Second, d.RequeueAfter)
	assert.Empty(t, d.Actions)
	assertIdempotent(t, in, d)

	in.Now = now.Add(PodCatchUp)
	d = Next(in)
	assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
	assert.Equal(t, v1alpha1.ReasonAgentFailed, failedReason(&d.Status))
	assert.Contains(t, d.Status.Error, "could not be read")
}
