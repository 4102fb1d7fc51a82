package phase

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// SandboxVerdict is what a run does about a Ready=False reason of its
// Sandbox or SandboxClaim.
type SandboxVerdict int

const (
	// SandboxWait: agent-sandbox is on its way, or retries by itself and
	// usually succeeds (AdoptionConflict, SandboxCreatePending,
	// SandboxMissing, DependenciesNotReady, and any reason not listed):
	// the run waits, within its timeout.
	SandboxWait SandboxVerdict = iota
	// SandboxFailAfterGrace: agent-sandbox looks again (every minute, or
	// with backoff), but only a change of configuration helps (a warm pool
	// or template that does not exist, a pod the API server refuses): the
	// run fails once the reason has lasted for the fail-fast grace.
	SandboxFailAfterGrace
	// SandboxFailNow: agent-sandbox never retries it (a claim it refuses, an
	// expired Sandbox or claim, several pods): the run fails at once.
	SandboxFailNow
)

// sandboxReasons are the Ready=False reasons of agent-sandbox (v0.5.x:
// extensions/controllers/sandboxclaim_controller.go computeReadyCondition,
// controllers/sandbox_controller.go) the run does not wait out. A claim
// forwards its bound Sandbox's Ready condition, so one table serves both.
var sandboxReasons = map[string]SandboxVerdict{
	// SandboxClaim, never retried.
	"InvalidMetadata":           SandboxFailNow,
	"EnvVarsInjectionRejected":  SandboxFailNow,
	"VolumeClaimTemplatesError": SandboxFailNow,
	"ClaimExpired":              SandboxFailNow,
	// Sandbox.
	"SandboxExpired": SandboxFailNow,
	"MultiplePods":   SandboxFailNow,
	// Looked up again every minute: a typo is the likely cause.
	"WarmPoolNotFound": SandboxFailAfterGrace,
	"TemplateNotFound": SandboxFailAfterGrace,
	// The catch-all of both controllers, retried with backoff: a pod the
	// API server refuses (RuntimeClass not found, quota), an env override
	// the template's Allowed policy refuses, ...
	"ReconcilerError": SandboxFailAfterGrace,
}

// SandboxVerdictOf classifies a Ready=False condition of a Sandbox or
// SandboxClaim.
func SandboxVerdictOf(reason, message string) SandboxVerdict {
	v := sandboxReasons[reason]
	if v == SandboxFailAfterGrace && reason == "ReconcilerError" && strings.Contains(message, "the object has been modified") {
		// An optimistic-concurrency conflict: the next pass heals it.
		return SandboxWait
	}
	return v
}

// sandboxRefused fails the run when obj (its Sandbox or SandboxClaim, of
// kind) reports Ready=False for a reason that waiting does not heal, at once
// or once it has lasted for the fail-fast grace (counted from the later of
// the object's creation and the condition's last transition), and reports
// whether it did. Within the grace it asks to be woken when it ends.
func sandboxRefused(m *machine, obj *SandboxObject, kind string) bool {
	if obj == nil {
		return false
	}
	c := meta.FindStatusCondition(obj.Conditions, SandboxConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse {
		return false
	}
	switch SandboxVerdictOf(c.Reason, c.Message) {
	case SandboxWait:
		return false
	case SandboxFailAfterGrace:
		since := obj.CreationTimestamp
		if c.LastTransitionTime.After(since.Time) {
			since = c.LastTransitionTime
		}
		if left := m.graceLeft(since); left > 0 {
			m.requeue(left)
			return false
		}
	}
	m.fail(v1alpha1.ReasonSandboxRefused, fmt.Sprintf("%s %s: %s: %s", kind, obj.Name, c.Reason, c.Message), nil)
	return true
}
