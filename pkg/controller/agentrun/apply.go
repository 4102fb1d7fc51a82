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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/jobspec"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// apply carries out a decision: the run's metadata first (its parent as
// owner, the server finalizer), then the children to create or update,
// then the status (only when it changed) and the events of the transition,
// then the children to delete, and last the release of the finalizer.
func (c *Controller) apply(ctx context.Context, run *v1alpha1.AgentRun, obs phase.Observed, d phase.Decision) error {
	logger := klog.FromContext(ctx)
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
			return err
		}
		if d.SetOwner != nil {
			logger.V(2).Info("Parent run set as owner", "parent", d.SetOwner.Name)
		}
		if d.AddFinalizer {
			logger.V(2).Info("Finalizer added", "finalizer", v1alpha1.FinalizerServer)
		}
		run = updated
	}

	stop, rejected, err := c.createChildren(ctx, run, d)
	if err != nil || stop {
		return err
	}
	if rejected != "" {
		// Decide again on the run as it is now (with the metadata just
		// patched), knowing the API server refuses the workload.
		obs.Run, obs.JobRejected = run, rejected
		return c.apply(ctx, run, obs, phase.Next(obs))
	}
	if err := c.updateChildren(ctx, d); err != nil {
		return err
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
		run = updated
	}
	// The workload goes only once the outcome is recorded: a decision that
	// did not reach the API server must not remove what it was based on.
	if err := c.deleteChildren(ctx, d, obs); err != nil {
		return err
	}
	// And the finalizer last: the run may be gone right after.
	if d.RemoveFinalizer {
		keep := slices.DeleteFunc(slices.Clone(run.Finalizers), func(f string) bool { return f == v1alpha1.FinalizerServer })
		if keep == nil {
			keep = []string{}
		}
		if _, err := c.patchMeta(ctx, run, map[string]any{"finalizers": keep}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		logger.V(2).Info("Finalizer removed", "finalizer", v1alpha1.FinalizerServer)
	}
	if d.RequeueAfter > 0 {
		c.queue.AddAfter(cache.MetaObjectToName(run), d.RequeueAfter)
	}
	return nil
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
		metav1.PatchOptions{FieldManager: ControllerName})
	if err != nil {
		return nil, fmt.Errorf("patching the run's metadata: %w", err)
	}
	c.writes.wrote(updated.UID, updated.ResourceVersion)
	return updated, nil
}

// createChildren creates what the decision asks for. stop means the sync
// ends here without error (the namespace is terminating); rejected is the
// API server's reason for refusing an invalid object.
func (c *Controller) createChildren(ctx context.Context, run *v1alpha1.AgentRun, d phase.Decision) (stop bool, rejected string, err error) {
	opts := metav1.CreateOptions{FieldManager: ControllerName}
	type create struct {
		kind, name string
		workload   bool // the object the run's admission expects
		do         func() error
	}
	var creates []create
	if job := d.CreateJob; job != nil {
		creates = append(creates, create{"Job", job.Name, true, func() error {
			_, err := c.kubeClient.BatchV1().Jobs(job.Namespace).Create(ctx, job, opts)
			return err
		}})
	}
	if dep := d.CreateDeployment; dep != nil {
		creates = append(creates, create{"Deployment", dep.Name, true, func() error {
			_, err := c.kubeClient.AppsV1().Deployments(dep.Namespace).Create(ctx, dep, opts)
			return err
		}})
	}
	if svc := d.CreateService; svc != nil {
		creates = append(creates, create{"Service", svc.Name, false, func() error {
			_, err := c.kubeClient.CoreV1().Services(svc.Namespace).Create(ctx, svc, opts)
			return err
		}})
	}
	for _, u := range []*unstructured.Unstructured{d.CreateSandbox, d.CreateSandboxClaim} {
		if u == nil {
			continue
		}
		resource := jobspec.SandboxResource
		if u.GetKind() == jobspec.SandboxClaimKind {
			resource = jobspec.ClaimResource
		}
		creates = append(creates, create{u.GetKind(), u.GetName(), true, func() error {
			cl := c.sandboxClient(resource)
			if cl == nil {
				return fmt.Errorf("the %s API is not served", resource)
			}
			_, err := cl.Namespace(u.GetNamespace()).Create(ctx, u, opts)
			if apierrors.IsNotFound(err) {
				// The resource went away since discovery: look again.
				c.sandboxes.invalidate()
			}
			return err
		}})
	}
	logger := klog.FromContext(ctx)
	for _, cr := range creates {
		err := cr.do()
		switch {
		case err == nil:
			logger.V(2).Info("Created "+cr.kind, "object", klog.KRef(run.Namespace, cr.name))
		case apierrors.IsAlreadyExists(err):
			// The cache was stale: the informer will deliver the object and
			// the next decision checks that it is ours.
			logger.V(2).Info(cr.kind+" already exists", "object", klog.KRef(run.Namespace, cr.name))
		case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			return true, "", nil
		case apierrors.IsInvalid(err):
			return false, err.Error(), nil
		default:
			return false, "", fmt.Errorf("creating %s %s: %w", cr.kind, cr.name, err)
		}
		if cr.workload {
			c.expectations.expectJob(run.UID)
			if run.Spec.Parent != nil {
				c.admissions.admitted(InstanceKey(run.Namespace, run.Spec.InstanceRef), run.UID)
			}
		}
	}
	return false, "", nil
}

func (c *Controller) sandboxClient(resource string) dynamic.NamespaceableResourceInterface {
	if c.sandboxes == nil {
		return nil
	}
	return c.sandboxes.client(resource)
}

// updateChildren replaces a server's Deployment and Service whose spec
// changed (the objects carry the cached resourceVersion: a conflict means
// the cache was stale, and the sync is retried).
func (c *Controller) updateChildren(ctx context.Context, d phase.Decision) error {
	opts := metav1.UpdateOptions{FieldManager: ControllerName}
	logger := klog.FromContext(ctx)
	if dep := d.UpdateDeployment; dep != nil {
		if _, err := c.kubeClient.AppsV1().Deployments(dep.Namespace).Update(ctx, dep, opts); err != nil {
			return fmt.Errorf("updating Deployment %s: %w", dep.Name, err)
		}
		logger.V(2).Info("Updated Deployment", "deployment", klog.KObj(dep))
	}
	if svc := d.UpdateService; svc != nil {
		if _, err := c.kubeClient.CoreV1().Services(svc.Namespace).Update(ctx, svc, opts); err != nil {
			return fmt.Errorf("updating Service %s: %w", svc.Name, err)
		}
		logger.V(2).Info("Updated Service", "service", klog.KObj(svc))
	}
	return nil
}

// deleteChildren deletes what the decision asks for, each object with its
// UID as precondition.
func (c *Controller) deleteChildren(ctx context.Context, d phase.Decision, obs phase.Observed) error {
	type del struct {
		kind string
		obj  metav1.Object
		do   func(name string, opts metav1.DeleteOptions) error
	}
	var dels []del
	if d.DeleteJob && obs.Job != nil {
		dels = append(dels, del{"Job", obs.Job, func(name string, o metav1.DeleteOptions) error {
			return c.kubeClient.BatchV1().Jobs(obs.Job.Namespace).Delete(ctx, name, o)
		}})
	}
	if d.DeleteDeployment && obs.Deployment != nil {
		dels = append(dels, del{"Deployment", obs.Deployment, func(name string, o metav1.DeleteOptions) error {
			return c.kubeClient.AppsV1().Deployments(obs.Deployment.Namespace).Delete(ctx, name, o)
		}})
	}
	if d.DeleteService && obs.Service != nil {
		dels = append(dels, del{"Service", obs.Service, func(name string, o metav1.DeleteOptions) error {
			return c.kubeClient.CoreV1().Services(obs.Service.Namespace).Delete(ctx, name, o)
		}})
	}
	for _, sb := range []struct {
		want     bool
		obj      *phase.SandboxObject
		resource string
		kind     string
	}{
		{d.DeleteSandbox, obs.Sandbox, jobspec.SandboxResource, jobspec.SandboxKind},
		{d.DeleteSandboxClaim, obs.SandboxClaim, jobspec.ClaimResource, jobspec.SandboxClaimKind},
	} {
		if !sb.want || sb.obj == nil {
			continue
		}
		dels = append(dels, del{sb.kind, sb.obj, func(name string, o metav1.DeleteOptions) error {
			cl := c.sandboxClient(sb.resource)
			if cl == nil {
				return nil // the API is gone, and its objects with it
			}
			return cl.Namespace(sb.obj.Namespace).Delete(ctx, name, o)
		}})
	}
	policy := metav1.DeletePropagationBackground
	for _, dl := range dels {
		uid := dl.obj.GetUID()
		err := dl.do(dl.obj.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
		switch {
		case err == nil:
			klog.FromContext(ctx).V(2).Info("Deleted "+dl.kind, "object", klog.KRef(dl.obj.GetNamespace(), dl.obj.GetName()))
			c.expectations.deletedJob(uid)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			c.expectations.deletedJob(uid)
		default:
			return fmt.Errorf("deleting %s %s: %w", dl.kind, dl.obj.GetName(), err)
		}
	}
	return nil
}

func lastReason(d phase.Decision) string {
	if len(d.Events) == 0 {
		return ""
	}
	return d.Events[len(d.Events)-1].Reason
}
