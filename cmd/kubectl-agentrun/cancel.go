package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// cancelPatch sets spec.cancel. A merge patch touches that one field, so
// it never races with other writers of the run.
const cancelPatch = `{"spec":{"cancel":true}}`

// cmdCancel stops a run and keeps its record: it sets spec.cancel, and the
// controller ends the run Failed with reason Cancelled, deletes its
// workload (the agent gets its termination grace period) and cancels its
// unfinished sub-agent runs. A finished run is left as it is. With --wait
// it follows the run until the end is recorded; a run that ended Cancelled
// is what was asked for (exit 0), one that finished otherwise first exits
// like `result`.
func cmdCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("cancel", "NAME", stderr)
	wait := fs.Bool("wait", false, "wait until the controller recorded the run's end")
	client, ns, r, err := oneRun(ctx, fs, c, args)
	if err != nil {
		return err
	}
	name := r.Name
	if r.Status.Phase.IsTerminal() {
		fmt.Fprintf(stderr, "agentrun/%s already finished (%s): nothing to cancel\n", r.Name, describePhase(r))
		return reportCancelled(r, c.output, stdout)
	}
	if !r.Spec.Cancel {
		r, err = client.SympoziumV1alpha1().AgentRuns(ns).Patch(ctx, name, types.MergePatchType, []byte(cancelPatch),
			metav1.PatchOptions{FieldManager: "kubectl-agentrun"})
		if err != nil {
			return fmt.Errorf("cancelling agentrun/%s: %w", name, err)
		}
	}
	if !*wait {
		fmt.Fprintf(stderr, "agentrun/%s cancel requested; see kubectl agentrun result %s\n", name, name)
		if c.output != "" {
			return printObject(stdout, r, c.output)
		}
		return nil
	}
	final, err := follow(ctx, client, r, stderr)
	if err != nil {
		return fmt.Errorf("following agentrun/%s: %w (its cancel is requested)", name, err)
	}
	return reportCancelled(final, c.output, stdout)
}

// reportCancelled reports a finished run: one that ended Cancelled is
// success for this command; any other outcome is reported like `result`.
func reportCancelled(r *v1alpha1.AgentRun, output string, stdout io.Writer) error {
	if c := waitingOrFailed(r); r.Status.Phase == v1alpha1.PhaseFailed && c != nil && c.Reason == v1alpha1.ReasonCancelled {
		if output != "" {
			return printObject(stdout, r, output)
		}
		fmt.Fprintf(stdout, "agentrun/%s cancelled: %s\n", r.Name, strings.TrimPrefix(r.Status.Error, v1alpha1.ReasonCancelled+": "))
		return nil
	}
	return report(r, output, stdout)
}
