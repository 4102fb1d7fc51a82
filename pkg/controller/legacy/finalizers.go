// Package legacy undoes what sympozium's own controller left on the objects
// that this controller now owns, so that switching controllers leaves
// nothing that only the old one could release.
package legacy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
)

// Finalizers sympozium's controller (commit 25c0bb2) puts on its objects and
// removes only when it runs itself.
const (
	// FinalizerInstance is on every SympoziumInstance it reconciled.
	FinalizerInstance = "sympozium.ai/finalizer"
	// FinalizerSkillPack is on every SkillPack it reconciled.
	FinalizerSkillPack = "sympozium.ai/skillpack-finalizer"
	// FinalizerAgentRun is on its unfinished AgentRuns; the run's
	// decision asks for its removal (phase.Decision.RemoveLegacyFinalizer).
	FinalizerAgentRun = phase.LegacyFinalizer
	// FinalizerSchedule is on every SympoziumSchedule it reconciled
	// (sympoziumschedule_controller.go:22, :54-59).
	FinalizerSchedule = "sympozium.ai/schedule-finalizer"
)

type op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value,omitempty"`
}

// FinalizerPatch returns a JSON patch (RFC 6902) that removes each
// occurrence of finalizer from finalizers, or nil when there is none. Each
// removal is guarded by a test of the same index, so a list that changed
// since it was read makes the patch fail (and the caller retry) instead of
// removing another finalizer.
func FinalizerPatch(finalizers []string, finalizer string) []byte {
	if !slices.Contains(finalizers, finalizer) {
		return nil
	}
	var ops []op
	for i := len(finalizers) - 1; i >= 0; i-- {
		if finalizers[i] != finalizer {
			continue
		}
		path := fmt.Sprintf("/metadata/finalizers/%d", i)
		ops = append(ops, op{Op: "test", Path: path, Value: finalizer}, op{Op: "remove", Path: path})
	}
	b, err := json.Marshal(ops)
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return b
}

// PatchFunc sends a JSON patch to one object.
type PatchFunc func(ctx context.Context, patch []byte) error

// RemoveFinalizer removes finalizer from an object whose current list is
// finalizers, through patch. It reports whether it sent a patch: the caller
// then ends its sync, and the patch's own update event brings the object
// back with the list now stored. An object already gone is not an error.
func RemoveFinalizer(ctx context.Context, finalizers []string, finalizer string, patch PatchFunc) (bool, error) {
	p := FinalizerPatch(finalizers, finalizer)
	if p == nil {
		return false, nil
	}
	if err := patch(ctx, p); err != nil && !apierrors.IsNotFound(err) {
		return true, fmt.Errorf("removing finalizer %s: %w", finalizer, err)
	}
	klog.FromContext(ctx).V(2).Info("Removed sympozium's finalizer", "finalizer", finalizer)
	return true, nil
}
