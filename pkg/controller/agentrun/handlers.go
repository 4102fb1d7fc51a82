package agentrun

import (
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
)

// addHandlers registers the handlers of every kind the controller reads;
// each kind's are one small method below.
func (c *Controller) addHandlers(logger logr.Logger, inf Informers) ([]cache.ResourceEventHandlerRegistration, error) {
	opts := cache.HandlerOptions{Logger: &logger}
	adds := []struct {
		what string
		add  func() (cache.ResourceEventHandlerRegistration, error)
	}{
		{"AgentRun", func() (cache.ResourceEventHandlerRegistration, error) {
			return inf.Runs.Informer().AddEventHandlerWithOptions(c.runHandlers(), opts)
		}},
		{"SympoziumInstance", func() (cache.ResourceEventHandlerRegistration, error) {
			return inf.Instances.TypedInformer().AddTypedEventHandler(c.instanceHandlers(), opts)
		}},
		{"SkillPack", func() (cache.ResourceEventHandlerRegistration, error) {
			return inf.SkillPacks.TypedInformer().AddTypedEventHandler(c.skillPackHandlers(), opts)
		}},
		{"ConfigMap", func() (cache.ResourceEventHandlerRegistration, error) {
			return inf.ConfigMaps.Informer().AddEventHandlerWithOptions(c.configMapHandlers(), opts)
		}},
	}
	for _, r := range registrations {
		for _, k := range r.kinds {
			if k.cache == childCache {
				inf, h := c.children[k.kind], c.childHandlers(k.events)
				adds = append(adds, struct {
					what string
					add  func() (cache.ResourceEventHandlerRegistration, error)
				}{string(k.kind), func() (cache.ResourceEventHandlerRegistration, error) { return inf.AddEventHandlerWithOptions(h, opts) }})
			}
		}
	}
	var regs []cache.ResourceEventHandlerRegistration
	for _, a := range adds {
		reg, err := a.add()
		if err != nil {
			return nil, fmt.Errorf("adding %s event handler: %w", a.what, err)
		}
		regs = append(regs, reg)
	}
	return regs, nil
}

// childEvents says what an event of a cached kind of child means
// (childKind.events).
type childEvents struct {
	// changed: the object was added, or updated to a new
	// resourceVersion (a resync delivers the same one: nothing changed).
	changed func(c *Controller, obj metav1.Object)
	// deleted: the cache delivered its deletion (with its last state
	// known; a tombstone without one is ignored).
	deleted func(c *Controller, obj metav1.Object)
}

var (
	// workloadEvents: a workload (Job, Deployment) observes the create it
	// was expected from, and enqueues its run.
	workloadEvents = childEvents{changed: (*Controller).workloadChanged, deleted: (*Controller).childDeleted}
	// ownedEvents: another child (a server's Service) enqueues its run.
	ownedEvents = childEvents{changed: (*Controller).enqueueOwner, deleted: (*Controller).childDeleted}
	// podEvents: an agent pod enqueues its run through its workload
	// (enqueuePodOwner).
	podEvents = childEvents{changed: (*Controller).podChanged, deleted: (*Controller).podDeleted}
)

// childHandlers are the handlers of a cached kind of child.
func (c *Controller) childHandlers(ev childEvents) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				ev.changed(c, m)
			}
		},
		UpdateFunc: func(oldObj, curObj any) {
			old, ok := oldObj.(metav1.Object)
			cur, ok2 := curObj.(metav1.Object)
			if ok && ok2 && old.GetResourceVersion() != cur.GetResourceVersion() {
				ev.changed(c, cur)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if m, ok := obj.(metav1.Object); ok {
				ev.deleted(c, m)
			}
		},
	}
}

// runHandlers enqueue the run itself (a resync re-enqueues too: the safety
// net), keep the in-memory stores in step with it (a run that finished or
// is gone has its deadline wake cancelled), and wake the runs waiting for
// a sub-agent slot it frees.
//
// A finished run is not enqueued when it is listed (a restart) or resynced:
// what may remain to do for it is done to its children and grants, whose
// own informers enqueue it. So a restart or a resync costs one sync per
// run that has something to do, not one per run of the history.
//
// The store holds a finished run as a record (read as a runstore.Entry): a
// restart's list of a long history is handled on the records, without
// rebuilding a run from each.
func (c *Controller) runHandlers() cache.ResourceEventHandlerFuncs {
	return runstore.Handlers{
		Add: func(e runstore.Entry) {
			if e.FinishedAtRest() {
				return
			}
			if name, ok := e.Key(); ok {
				c.enqueue(name)
			}
		},
		Update: func(oldEntry, curEntry runstore.Entry) {
			if runstore.FinishedResync(oldEntry, curEntry) {
				return // a resync of a finished run
			}
			if curEntry.FinishedAtRest() {
				c.cancelWake(curEntry) // a finished run has no deadline
			}
			old, ok := oldEntry.Run()
			cur, ok2 := curEntry.Run()
			if !ok || !ok2 {
				return
			}
			c.enqueue(cache.MetaObjectToName(cur))
			if phase.IsAdmitted(cur) || cur.Status.Phase.IsTerminal() {
				c.admissions.observed(cur)
			}
			if releasesCapacity(old, cur) {
				c.wakeForCapacity(cur.Namespace, cur.Spec.InstanceRef)
			}
			if !old.Status.Phase.IsTerminal() && cur.Status.Phase.IsTerminal() {
				c.wakeChildren(cur)
			}
		},
		Delete: func(e runstore.Entry) {
			if name, ok := e.Key(); ok {
				c.wakes.Cancel(name) // enqueued now: its sync sweeps what is left
				c.enqueue(name)
			}
			if r, ok := e.Run(); ok {
				c.expectations.forget(r.UID)
				c.writes.forget(r.UID)
				c.admissions.observed(r)
				c.wakeForCapacity(r.Namespace, r.Spec.InstanceRef)
			}
		},
	}.Funcs()
}

// instanceHandlers wake the runs an instance's appearance or change
// concerns: those waiting for it, and its servers (their spec is built
// from it).
func (c *Controller) instanceHandlers() sinformers.SympoziumInstanceHandlerFuncs {
	return sinformers.SympoziumInstanceHandlerFuncs{
		AddFunc: func(i *v1alpha1.SympoziumInstance) { c.wakeWaiting(i.Namespace, i.Name) },
		UpdateFunc: func(old, cur *v1alpha1.SympoziumInstance) {
			if old.Generation != cur.Generation {
				c.wakeWaiting(cur.Namespace, cur.Name)
				c.wakeServers(c.runs.LiveOfInstance(cur.Namespace, cur.Name), "")
			}
		},
	}
}

// skillPackHandlers: a server's pod template is built from its skill packs
// as long as it lives, so a changed pack rolls the servers of its
// namespace that mount it.
func (c *Controller) skillPackHandlers() sinformers.SkillPackHandlerFuncs {
	return sinformers.SkillPackHandlerFuncs{
		UpdateFunc: func(old, cur *v1alpha1.SkillPack) {
			if old.Generation != cur.Generation {
				c.wakeServers(c.runs.Live(), cur.Namespace)
			}
		},
	}
}

// configMapHandlers: a ConfigMap that appears may be the one a waiting run
// of its namespace needs.
func (c *Controller) configMapHandlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				c.wakeWaitingInNamespace(m.GetNamespace())
			}
		},
	}
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
	c.wakeWaitingKey(runstore.InstanceKey(namespace, instance))
}

func (c *Controller) wakeWaitingKey(key string) {
	for _, r := range c.runs.Waiting(key) {
		c.enqueue(cache.MetaObjectToName(r))
	}
}

// wakeServers enqueues the server-mode runs among the live runs (of
// namespace, when not empty). It reads live runs only (an index of
// unfinished runs): finished ones, however many are kept, cost nothing.
func (c *Controller) wakeServers(live []*v1alpha1.AgentRun, namespace string) {
	for _, r := range live {
		if phase.BackendOf(r) == phase.BackendServer && (namespace == "" || r.Namespace == namespace) {
			c.enqueue(cache.MetaObjectToName(r))
		}
	}
}

// wakeWaitingInNamespace enqueues every run of the namespace that is not
// admitted yet (a ConfigMap it waits for may have appeared).
func (c *Controller) wakeWaitingInNamespace(namespace string) {
	for _, key := range c.runs.WaitingInstances() {
		if strings.HasPrefix(key, namespace+"/") {
			c.wakeWaitingKey(key)
		}
	}
}

// workloadChanged handles a workload object (Job, Deployment, Sandbox,
// SandboxClaim) that was added or changed: the create it was expected from
// is observed, and its run enqueued.
func (c *Controller) workloadChanged(obj metav1.Object) {
	if ref := metav1.GetControllerOf(obj); ref != nil && ref.Kind == "AgentRun" {
		c.expectations.observed(ref.UID)
	}
	c.enqueueOwner(obj)
}

// childDeleted handles a child whose deletion the cache delivered: the
// delete this controller may have made is observed, and its run enqueued.
func (c *Controller) childDeleted(obj metav1.Object) {
	c.expectations.gone(obj.GetUID())
	c.enqueueOwner(obj)
}

// podChanged enqueues the run of a pod that was added or changed.
func (c *Controller) podChanged(obj metav1.Object) {
	if p, ok := obj.(*corev1.Pod); ok {
		c.enqueuePodOwner(p)
	}
}

// podDeleted handles a pod whose deletion the cache delivered: a pod this
// controller retired or deleted has left the cache, and is forgotten, as
// childDeleted does for the others (else each kept run's pod stays
// remembered for good); its run is enqueued.
func (c *Controller) podDeleted(obj metav1.Object) {
	c.expectations.gone(obj.GetUID())
	c.podChanged(obj)
}

// enqueueOwner enqueues the AgentRun that controls obj, unless the cache
// holds another run of that name (another UID). A run the cache does not
// hold is enqueued all the same: at a start the children's informers may
// deliver their objects before the runs' informer has listed the run, and
// a finished run is woken only by its children (runHandlers); the sync
// handles a run that is gone.
func (c *Controller) enqueueOwner(obj metav1.Object) {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != "AgentRun" {
		return
	}
	run, err := c.runs.Get(obj.GetNamespace(), ref.Name)
	if err == nil && run.UID != ref.UID {
		return
	}
	c.enqueue(cache.ObjectName{Namespace: obj.GetNamespace(), Name: ref.Name})
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
	case string(phase.KindJob):
		job, err := c.kinds[phase.KindJob].get(p.Namespace, ref.Name)
		if err != nil || job.GetUID() != ref.UID {
			return
		}
		c.enqueueOwner(job)
	case workload.SandboxKind:
		label := p.Labels[v1alpha1.LabelAgentRun]
		if label == "" {
			return
		}
		run, err := c.runs.Get(p.Namespace, label)
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
	c.workloadChanged(m)
}
