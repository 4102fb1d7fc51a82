package agentrun

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

// apply carries out a decision: the legacy finalizer's removal alone when
// asked; else the run's metadata first (its parent as owner, the server
// finalizer), then the children to create or update, the failed agent's log
// to keep, then the status (only when it changed) and the events of the
// transition, then the children to delete (workload, grants), and last the
// release of the finalizer. It decides nothing: when the API server refuses
// a create (Invalid, or Forbidden for a grant), it stops and reports the
// refusal with the run as it now is, for the caller to decide again. So it
// does for a finished run whose status is to change while run is the
// cache's compacted copy (not live, not as the API server has it): the
// refusal then comes with the run read from the API server.
func (c *Controller) apply(ctx context.Context, run *v1alpha1.AgentRun, d phase.Decision, live bool) (refused phase.Refusal, now *v1alpha1.AgentRun, err error) {
	logger := klog.FromContext(ctx)
	if d.RemoveLegacyFinalizer {
		// The patch's own update event brings the run back, without it.
		_, err := legacy.RemoveFinalizer(ctx, run.Finalizers, phase.LegacyFinalizer, func(ctx context.Context, p []byte) error {
			_, err := c.client.SympoziumV1alpha1().AgentRuns(run.Namespace).Patch(ctx, run.Name, types.JSONPatchType, p,
				metav1.PatchOptions{FieldManager: v1alpha1.FieldManager})
			return err
		})
		return phase.Refusal{}, run, err
	}
	if !live && run.Status.Phase.IsTerminal() && !apiequality.Semantic.DeepEqual(run.Status, d.Status) {
		// The cache holds finished runs compacted (runcache.TrimForCache):
		// their status is written only from the run as the API server has
		// it, never from the cached copy.
		fresh, err := c.client.SympoziumV1alpha1().AgentRuns(run.Namespace).Get(ctx, run.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return phase.Refusal{}, run, nil
		}
		if err != nil {
			return phase.Refusal{}, run, err
		}
		return phase.Refusal{Kind: phase.RefusedCompacted, Reason: "the cached copy of a finished run is compacted"}, fresh, nil
	}
	if d.SetOwner != nil || d.AddFinalizer {
		set := map[string]any{}
		if d.SetOwner != nil {
			set["ownerReferences"] = append(slices.Clone(run.OwnerReferences), *d.SetOwner)
		}
		if d.AddFinalizer {
			set["finalizers"] = append(slices.Clone(run.Finalizers), v1alpha1.FinalizerServer)
		}
		updated, err := c.patchMeta(ctx, run, set)
		if err != nil {
			return phase.Refusal{}, run, err
		}
		if d.SetOwner != nil {
			logger.V(2).Info("Parent run set as owner", "parent", d.SetOwner.Name)
		}
		if d.AddFinalizer {
			logger.V(2).Info("Finalizer added", "finalizer", v1alpha1.FinalizerServer)
		}
		run = updated
	}

	stop, refused, err := c.createChildren(ctx, run, d)
	if err != nil || stop || refused.Kind != "" {
		return refused, run, err
	}
	if err := c.updateChildren(ctx, d); err != nil {
		return phase.Refusal{}, run, err
	}
	c.keepLog(ctx, run, d.KeepLog)

	if !apiequality.Semantic.DeepEqual(run.Status, d.Status) {
		cp := run.DeepCopy()
		cp.Status = d.Status
		updated, err := c.client.SympoziumV1alpha1().AgentRuns(run.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager})
		if err != nil {
			// Nothing destructive has happened yet: a decision taken on a
			// stale copy of the run ends here, with a conflict.
			return phase.Refusal{}, run, err
		}
		c.writes.wrote(updated.UID, updated.ResourceVersion)
		if c.opts.OnStatus != nil {
			c.opts.OnStatus(run, &d.Status)
		}
		if run.Status.Phase != d.Status.Phase {
			logger.V(2).Info("Phase changed", "from", run.Status.Phase, "to", d.Status.Phase)
			if c.opts.OnTransition != nil {
				c.opts.OnTransition(run, &d.Status, lastReason(d))
			}
		}
		for _, e := range d.Events {
			if e.Progress && !c.opts.ProgressEvents {
				continue
			}
			c.recorder.Event(run, e.Type, e.Reason, e.Message)
		}
		run = updated
	}
	// The workload goes only once the outcome is recorded: a decision that
	// did not reach the API server must not remove what it was based on.
	if err := c.deleteChildren(ctx, d); err != nil {
		return phase.Refusal{}, run, err
	}
	// And the finalizer last: the run may be gone right after.
	if d.RemoveFinalizer {
		keep := slices.DeleteFunc(slices.Clone(run.Finalizers), func(f string) bool { return f == v1alpha1.FinalizerServer })
		if keep == nil {
			keep = []string{}
		}
		if _, err := c.patchMeta(ctx, run, map[string]any{"finalizers": keep}); err != nil {
			if apierrors.IsNotFound(err) {
				return phase.Refusal{}, run, nil
			}
			return phase.Refusal{}, run, err
		}
		logger.V(2).Info("Finalizer removed", "finalizer", v1alpha1.FinalizerServer)
	}
	if d.RequeueAfter > 0 { // never for a finished run (phase.Next)
		c.wakeAfter(cache.MetaObjectToName(run), d.RequeueAfter)
	}
	return phase.Refusal{}, run, nil
}

// patchMeta sets fields of the run's metadata (ownerReferences,
// finalizers: whole lists) with a merge patch of the metadata alone,
// guarded by the resourceVersion: the spec and status are never written
// back.
func (c *Controller) patchMeta(ctx context.Context, run *v1alpha1.AgentRun, set map[string]any) (*v1alpha1.AgentRun, error) {
	md := map[string]any{"resourceVersion": run.ResourceVersion}
	maps.Copy(md, set)
	patch, err := json.Marshal(map[string]any{"metadata": md})
	if err != nil {
		return nil, err
	}
	updated, err := c.client.SympoziumV1alpha1().AgentRuns(run.Namespace).Patch(ctx, run.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: v1alpha1.FieldManager})
	if err != nil {
		return nil, fmt.Errorf("patching the run's metadata: %w", err)
	}
	c.writes.wrote(updated.UID, updated.ResourceVersion)
	return updated, nil
}

// createChildren creates what the decision asks for. stop means the sync
// ends here without error (the namespace is terminating); refused is the
// API server's refusal of an invalid object or of a grant.
func (c *Controller) createChildren(ctx context.Context, run *v1alpha1.AgentRun, d phase.Decision) (stop bool, refused phase.Refusal, err error) {
	opts := metav1.CreateOptions{FieldManager: v1alpha1.FieldManager}
	logger := klog.FromContext(ctx)
	workload := phase.Children(run)[0].Kind
	for _, a := range d.Actions {
		if a.Verb != phase.Create {
			continue
		}
		kc := c.kinds[a.Kind]
		name := a.Object.GetName()
		// The expectation before the write, as the Job controller does:
		// the informer may deliver the new object before create returns,
		// and an expectation set after its event would never be observed.
		if a.Kind == workload {
			c.expectations.expectWorkload(run.UID)
		}
		err := kc.create(ctx, a.Object, opts)
		if err != nil && !apierrors.IsAlreadyExists(err) && a.Kind == workload {
			c.expectations.forget(run.UID)
		}
		switch {
		case err == nil:
			logger.V(2).Info("Created "+string(a.Kind), "object", klog.KRef(run.Namespace, name))
		case apierrors.IsAlreadyExists(err):
			// The cache was stale: the informer will deliver the object and
			// the next decision checks that it is ours.
			logger.V(2).Info(string(a.Kind)+" already exists", "object", klog.KRef(run.Namespace, name))
		case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			return true, refused, nil
		case apierrors.IsInvalid(err):
			return false, phase.Refusal{Kind: phase.RefusedInvalid, Reason: err.Error()}, nil
		case isIdentityKind(a.Kind) && apierrors.IsForbidden(err):
			// The run asks for more than the controller may grant:
			// retrying does not help.
			return false, phase.Refusal{Kind: phase.RefusedGrant, Reason: grantRefusal(a.Kind, a.Object, err)}, nil
		default:
			if kc.discovered && apierrors.IsNotFound(err) && c.sandboxes != nil {
				// The resource went away since discovery: look again.
				c.sandboxes.invalidate()
			}
			return false, refused, fmt.Errorf("creating %s %s: %w", a.Kind, name, err)
		}
		if a.Kind == workload {
			c.admissions.admitted(runstore.InstanceKey(run.Namespace, run.Spec.InstanceRef), run.UID, run.Spec.Parent != nil)
		}
	}
	return false, refused, nil
}

func (c *Controller) sandboxClient(resource string) dynamic.NamespaceableResourceInterface {
	if c.sandboxes == nil {
		return nil
	}
	return c.sandboxes.client(resource)
}

// updateChildren replaces the children whose spec changed (a server's
// Deployment and Service). The objects carry the cached resourceVersion: a
// conflict means the cache was stale, and the sync is retried.
func (c *Controller) updateChildren(ctx context.Context, d phase.Decision) error {
	opts := metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager}
	logger := klog.FromContext(ctx)
	for _, a := range d.Actions {
		if a.Verb != phase.Update {
			continue
		}
		if err := c.kinds[a.Kind].update(ctx, a.Object, opts); err != nil {
			return fmt.Errorf("updating %s %s: %w", a.Kind, a.Object.GetName(), err)
		}
		logger.V(2).Info("Updated "+string(a.Kind), "object", klog.KRef(a.Object.GetNamespace(), a.Object.GetName()))
	}
	return nil
}

// deleteChildren carries out what follows the status write, in the
// decision's order: the deletes (phase.Delete, the UID as precondition) and
// the retires (phase.Retire: a merge patch of the one label that takes what
// a finished run keeps out of the informers, the UID as precondition).
// Either way the object leaves the controller's view: until the cache
// catches up, observe skips it.
func (c *Controller) deleteChildren(ctx context.Context, d phase.Decision) error {
	policy := metav1.DeletePropagationBackground
	patchOpts := metav1.PatchOptions{FieldManager: v1alpha1.FieldManager}
	for _, a := range d.Actions {
		words, leaves := leaveWords[a.Verb]
		if !leaves {
			continue
		}
		obj := a.Object
		uid := obj.GetUID()
		// Remembered before the write (see createChildren): the informer
		// may deliver the deletion before the call returns.
		c.expectations.deletedChild(uid)
		var err error
		if a.Verb == phase.Delete {
			err = c.kinds[a.Kind].delete(ctx, obj.GetNamespace(), obj.GetName(),
				metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
		} else {
			var patch []byte
			if patch, err = json.Marshal(map[string]any{"metadata": map[string]any{
				"uid":    uid,
				"labels": map[string]string{v1alpha1.LabelRetired: "true"},
			}}); err == nil {
				err = c.kinds[a.Kind].patch(ctx, obj.GetNamespace(), obj.GetName(), patch, patchOpts)
			}
		}
		switch {
		case err == nil:
			klog.FromContext(ctx).V(2).Info(words[0]+" "+string(a.Kind), "object", klog.KRef(obj.GetNamespace(), obj.GetName()))
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone, or another object of that name: the cached one is not
			// there any more either way.
		default:
			c.expectations.gone(uid)
			return fmt.Errorf("%s %s %s: %w", words[1], a.Kind, obj.GetName(), err)
		}
	}
	return nil
}

// leaveWords are the log and error words of deleteChildren's verbs, the
// verbs by which a child leaves the controller's view.
var leaveWords = map[phase.Verb][2]string{phase.Delete: {"Deleted", "deleting"}, phase.Retire: {"Retired", "retiring"}}

func lastReason(d phase.Decision) string {
	if len(d.Events) == 0 {
		return ""
	}
	return d.Events[len(d.Events)-1].Reason
}
