package agentrun

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// apply carries out a decision: ownership first, then the Job to create,
// then the status (only when it changed) and the events of the transition,
// and last the Job to delete.
func (c *Controller) apply(ctx context.Context, run *v1alpha1.AgentRun, obs phase.Observed, d phase.Decision) error {
	logger := klog.FromContext(ctx)
	if d.SetOwner != nil {
		// A merge patch of the metadata alone, guarded by the resourceVersion:
		// the spec is never written back.
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": run.ResourceVersion,
			"ownerReferences": append(append([]metav1.OwnerReference(nil), run.OwnerReferences...), *d.SetOwner),
		}})
		if err != nil {
			return err
		}
		updated, err := c.client.SympoziumV1alpha1().AgentRuns(run.Namespace).Patch(ctx, run.Name, types.MergePatchType, patch,
			metav1.PatchOptions{FieldManager: ControllerName})
		if err != nil {
			return fmt.Errorf("setting the parent run as owner: %w", err)
		}
		logger.V(2).Info("Parent run set as owner", "parent", d.SetOwner.Name)
		c.writes.wrote(updated.UID, updated.ResourceVersion)
		run = updated
	}

	if job := d.CreateJob; job != nil {
		_, err := c.kubeClient.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{FieldManager: ControllerName})
		switch {
		case err == nil:
			logger.V(2).Info("Created Job", "job", klog.KObj(job))
		case apierrors.IsAlreadyExists(err):
			// The cache was stale: the informer will deliver the Job and the
			// next decision checks that it is ours.
			logger.V(2).Info("Job already exists", "job", klog.KObj(job))
		case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			return nil
		case apierrors.IsInvalid(err):
			obs.JobRejected = err.Error()
			return c.apply(ctx, run, obs, phase.Next(obs))
		default:
			return fmt.Errorf("creating Job %s: %w", job.Name, err)
		}
		c.expectations.expectJob(run.UID)
		if run.Spec.Parent != nil {
			c.admissions.admitted(InstanceKey(run.Namespace, run.Spec.InstanceRef), run.UID)
		}
	}

	if !apiequality.Semantic.DeepEqual(run.Status, d.Status) {
		cp := run.DeepCopy()
		cp.Status = d.Status
		updated, err := c.client.SympoziumV1alpha1().AgentRuns(run.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: ControllerName})
		if err != nil {
			// Nothing destructive has happened yet: a decision taken on a
			// stale copy of the run ends here, with a conflict.
			return err
		}
		c.writes.wrote(updated.UID, updated.ResourceVersion)
		if run.Status.Phase != d.Status.Phase {
			logger.V(2).Info("Phase changed", "from", run.Status.Phase, "to", d.Status.Phase)
			if c.opts.OnTransition != nil {
				c.opts.OnTransition(run, &d.Status, lastReason(d))
			}
		}
		for _, e := range d.Events {
			c.recorder.Event(run, e.Type, e.Reason, e.Message)
		}
	}
	// The Job goes only once the outcome is recorded: a decision that did
	// not reach the API server must not remove what it was based on.
	if err := c.deleteJob(ctx, d, obs); err != nil {
		return err
	}
	if d.RequeueAfter > 0 {
		c.queue.AddAfter(cache.MetaObjectToName(run), d.RequeueAfter)
	}
	return nil
}

func (c *Controller) deleteJob(ctx context.Context, d phase.Decision, obs phase.Observed) error {
	if !d.DeleteJob || obs.Job == nil {
		return nil
	}
	uid := obs.Job.UID
	policy := metav1.DeletePropagationBackground
	err := c.kubeClient.BatchV1().Jobs(obs.Job.Namespace).Delete(ctx, obs.Job.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy,
	})
	switch {
	case err == nil:
		klog.FromContext(ctx).V(2).Info("Deleted Job", "job", klog.KObj(obs.Job))
		c.expectations.deletedJob(uid)
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		c.expectations.deletedJob(uid)
	default:
		return fmt.Errorf("deleting Job %s: %w", obs.Job.Name, err)
	}
	return nil
}

func lastReason(d phase.Decision) string {
	if len(d.Events) == 0 {
		return ""
	}
	return d.Events[len(d.Events)-1].Reason
}
