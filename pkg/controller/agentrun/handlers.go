package agentrun

import (
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/index"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
)

func (c *Controller) addHandlers(logger logr.Logger, inf Informers) ([]cache.ResourceEventHandlerRegistration, error) {
	opts := cache.HandlerOptions{Logger: &logger}
	var regs []cache.ResourceEventHandlerRegistration
	add := func(what string, reg cache.ResourceEventHandlerRegistration, err error) error {
		if err != nil {
			return fmt.Errorf("adding %s event handler: %w", what, err)
		}
		regs = append(regs, reg)
		return nil
	}
	reg, err := inf.Runs.TypedInformer().AddTypedEventHandler(sinformers.AgentRunHandlerFuncs{
		AddFunc: func(r *v1alpha1.AgentRun) { c.enqueue(cache.MetaObjectToName(r)) },
		UpdateFunc: func(old, cur *v1alpha1.AgentRun) {
			c.enqueue(cache.MetaObjectToName(cur)) // a resync re-enqueues too: the safety net
			if phase.IsAdmitted(cur) || cur.Status.Phase.IsTerminal() {
				c.admissions.observed(cur)
			}
			if releasesCapacity(old, cur) {
				c.wakeWaiting(cur.Namespace, cur.Spec.InstanceRef)
			}
		},
		DeleteFunc: func(d sinformers.DeletedAgentRun) {
			c.enqueue(d.GetObjectName())
			if r := d.OptionalObj; r != nil {
				c.expectations.forget(r.UID)
				c.writes.forget(r.UID)
				c.admissions.observed(r)
				c.wakeWaiting(r.Namespace, r.Spec.InstanceRef)
			}
		},
	}, opts)
	if err := add("AgentRun", reg, err); err != nil {
		return nil, err
	}
	reg, err = inf.Instances.TypedInformer().AddTypedEventHandler(sinformers.SympoziumInstanceHandlerFuncs{
		AddFunc: func(i *v1alpha1.SympoziumInstance) { c.wakeWaiting(i.Namespace, i.Name) },
		UpdateFunc: func(old, cur *v1alpha1.SympoziumInstance) {
			if old.Generation != cur.Generation {
				c.wakeWaiting(cur.Namespace, cur.Name)
				c.wakeServers(index.RunsByInstance, index.InstanceKey(cur.Namespace, cur.Name))
			}
		},
	}, opts)
	if err := add("SympoziumInstance", reg, err); err != nil {
		return nil, err
	}
	// A server's pod template is built from its skill packs as long as it
	// lives: a changed pack rolls the servers of its namespace that mount
	// it.
	reg, err = inf.SkillPacks.TypedInformer().AddTypedEventHandler(sinformers.SkillPackHandlerFuncs{
		UpdateFunc: func(old, cur *v1alpha1.SkillPack) {
			if old.Generation != cur.Generation {
				c.wakeServers(cache.NamespaceIndex, cur.Namespace)
			}
		},
	}, opts)
	if err := add("SkillPack", reg, err); err != nil {
		return nil, err
	}
	reg, err = inf.Jobs.TypedInformer().AddTypedEventHandler(batchinformers.JobHandlerFuncs{
		AddFunc: func(j *batchv1.Job) { c.jobChanged(j) },
		UpdateFunc: func(old, cur *batchv1.Job) {
			if old.ResourceVersion != cur.ResourceVersion {
				c.jobChanged(cur)
			}
		},
		DeleteFunc: func(d batchinformers.DeletedJob) {
			if d.OptionalObj != nil {
				c.expectations.gone(d.OptionalObj.UID)
				c.enqueueJobOwner(d.OptionalObj)
			}
		},
	}, opts)
	if err := add("Job", reg, err); err != nil {
		return nil, err
	}
	reg, err = inf.Deployments.TypedInformer().AddTypedEventHandler(appsinformers.DeploymentHandlerFuncs{
		AddFunc: func(d *appsv1.Deployment) { c.childChanged(d) },
		UpdateFunc: func(old, cur *appsv1.Deployment) {
			if old.ResourceVersion != cur.ResourceVersion {
				c.childChanged(cur)
			}
		},
		DeleteFunc: func(d appsinformers.DeletedDeployment) {
			if d.OptionalObj != nil {
				c.expectations.gone(d.OptionalObj.UID)
				c.enqueueOwner(d.OptionalObj)
			}
		},
	}, opts)
	if err := add("Deployment", reg, err); err != nil {
		return nil, err
	}
	reg, err = inf.Services.TypedInformer().AddTypedEventHandler(coreinformers.ServiceHandlerFuncs{
		AddFunc: func(s *corev1.Service) { c.enqueueOwner(s) },
		UpdateFunc: func(old, cur *corev1.Service) {
			if old.ResourceVersion != cur.ResourceVersion {
				c.enqueueOwner(cur)
			}
		},
		DeleteFunc: func(d coreinformers.DeletedService) {
			if d.OptionalObj != nil {
				c.expectations.gone(d.OptionalObj.UID)
				c.enqueueOwner(d.OptionalObj)
			}
		},
	}, opts)
	if err := add("Service", reg, err); err != nil {
		return nil, err
	}
	reg, err = inf.Pods.TypedInformer().AddTypedEventHandler(coreinformers.PodHandlerFuncs{
		AddFunc: c.enqueuePodOwner,
		UpdateFunc: func(old, cur *corev1.Pod) {
			if old.ResourceVersion != cur.ResourceVersion {
				c.enqueuePodOwner(cur)
			}
		},
		DeleteFunc: func(d coreinformers.DeletedPod) {
			if d.OptionalObj != nil {
				c.enqueuePodOwner(d.OptionalObj)
			}
		},
	}, opts)
	if err := add("Pod", reg, err); err != nil {
		return nil, err
	}
	reg, err = inf.ConfigMaps.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				c.wakeWaitingInNamespace(m.GetNamespace())
			}
		},
	}, opts)
	if err := add("ConfigMap", reg, err); err != nil {
		return nil, err
	}
	return regs, nil
}

// releasesCapacity reports a run that stopped holding (or waiting for) a
// sub-agent slot of its instance, so that waiting runs may move up.
func releasesCapacity(old, cur *v1alpha1.AgentRun) bool {
	if !old.Status.Phase.IsTerminal() && cur.Status.Phase.IsTerminal() {
		return true
	}
	return phase.IsWaiting(old) && !phase.IsWaiting(cur)
}

// wakeWaiting enqueues the instance's runs that are not admitted yet.
func (c *Controller) wakeWaiting(namespace, instance string) {
	c.wakeWaitingKey(index.InstanceKey(namespace, instance))
}

func (c *Controller) wakeWaitingKey(key string) {
	objs, err := c.runIndex.ByIndex(index.WaitingRunsByInstance, key)
	if err != nil {
		return
	}
	for _, o := range objs {
		if r, ok := o.(*v1alpha1.AgentRun); ok && phase.IsWaiting(r) {
			c.enqueue(cache.MetaObjectToName(r))
		}
	}
}

// wakeServers enqueues the live server-mode runs under key of index.
func (c *Controller) wakeServers(indexName, key string) {
	objs, err := c.runIndex.ByIndex(indexName, key)
	if err != nil {
		return
	}
	for _, o := range objs {
		if r, ok := o.(*v1alpha1.AgentRun); ok && phase.BackendOf(r) == phase.BackendServer && !r.Status.Phase.IsTerminal() {
			c.enqueue(cache.MetaObjectToName(r))
		}
	}
}

// wakeWaitingInNamespace enqueues every run of the namespace that is not
// admitted yet (a ConfigMap it waits for may have appeared).
func (c *Controller) wakeWaitingInNamespace(namespace string) {
	for _, key := range c.runIndex.ListIndexFuncValues(index.WaitingRunsByInstance) {
		if strings.HasPrefix(key, namespace+"/") {
			c.wakeWaitingKey(key)
		}
	}
}

func (c *Controller) jobChanged(j *batchv1.Job) { c.childChanged(j) }

// childChanged handles a workload object (Job, Deployment, Sandbox,
// SandboxClaim) that was added or changed: the create it was expected from
// is observed, and its run enqueued.
func (c *Controller) childChanged(obj metav1.Object) {
	if ref := metav1.GetControllerOf(obj); ref != nil && ref.Kind == "AgentRun" {
		c.expectations.observed(ref.UID)
	}
	c.enqueueOwner(obj)
}

// enqueueJobOwner enqueues the AgentRun that controls the Job, if it is
// still the same run (same UID).
func (c *Controller) enqueueJobOwner(j *batchv1.Job) { c.enqueueOwner(j) }

// enqueueOwner enqueues the AgentRun that controls obj, if it is still the
// same run (same UID).
func (c *Controller) enqueueOwner(obj metav1.Object) {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != "AgentRun" {
		return
	}
	run, err := c.runs.AgentRuns(obj.GetNamespace()).Get(ref.Name)
	if err != nil || run.UID != ref.UID {
		return
	}
	c.enqueue(cache.MetaObjectToName(run))
}

// enqueuePodOwner maps a pod to its run: through its Job (task mode), or,
// for the pod of an agent-sandbox Sandbox, through the run label it carries
// (the Sandbox it belongs to may be a warm pool's, not the run's own).
// Server pods are left to their Deployment, whose status reflects them.
func (c *Controller) enqueuePodOwner(p *corev1.Pod) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return
	}
	switch ref.Kind {
	case "Job":
		job, err := c.jobs.Jobs(p.Namespace).Get(ref.Name)
		if err != nil || job.UID != ref.UID {
			return
		}
		c.enqueueJobOwner(job)
	case workload.SandboxKind:
		label := p.Labels[v1alpha1.LabelAgentRun]
		if label == "" {
			return
		}
		run, err := c.runs.AgentRuns(p.Namespace).Get(label)
		if err != nil || naming.LabelValue(run.Name) != label {
			return
		}
		c.enqueue(cache.MetaObjectToName(run))
	}
}

// sandboxEvent handles an event of the agent-sandbox informers.
func (c *Controller) sandboxEvent(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	if deleted {
		c.expectations.gone(m.GetUID())
		c.enqueueOwner(m)
		return
	}
	c.childChanged(m)
}
