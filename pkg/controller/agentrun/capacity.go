package agentrun

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

// allRunsLock is the admission lock key of the controller-wide run limit.
// With that limit set every admission takes it (and no other), so that two
// workers never fill the same free slot of any limit.
const allRunsLock = "*"

// admissionLock returns the admission lock a run that is about to be
// admitted must hold while its limits are counted and its workload
// created; "" when no limit concerns it (it is admitted or finished, its
// instance is missing, or no limit applies).
func (c *Controller) admissionLock(run *v1alpha1.AgentRun, inst *v1alpha1.SympoziumInstance) string {
	if run.Status.Phase.IsTerminal() || phase.IsAdmitted(run) || inst == nil {
		return ""
	}
	if c.opts.Phase.MaxConcurrentRuns > 0 {
		return allRunsLock
	}
	if run.Spec.Parent != nil || phase.MaxConcurrentRuns(inst) > 0 {
		return runstore.InstanceKey(run.Namespace, run.Spec.InstanceRef)
	}
	return ""
}

// observeCapacity counts what the limits that concern run are checked
// against: the sub-agent slots of its instance, the instance's run slots
// and the controller's. The caller holds the run's admission lock.
func (c *Controller) observeCapacity(run *v1alpha1.AgentRun, obs *phase.Observed) {
	if run.Spec.Parent != nil {
		c.observeSubagents(run, obs)
	}
	unseen := c.admissions.all(run.UID)
	own := runstore.InstanceKey(run.Namespace, run.Spec.InstanceRef)
	if phase.MaxConcurrentRuns(obs.Instance) > 0 {
		obs.Runs = c.load(run, c.runs.LiveOfInstance(run.Namespace, run.Spec.InstanceRef), unseen, func(inst string) bool { return inst == own })
	}
	if c.opts.Phase.MaxConcurrentRuns > 0 {
		obs.AllRuns = c.load(run, c.runs.Live(), unseen, func(string) bool { return true })
	}
}

// load counts, by instance, the live runs of a limit (and the admissions
// not seen yet of the instances within it): those holding a slot
// (admitted in the cache, admitted by this controller and not seen yet, or
// whose workload the cache holds although its status does not say so: the
// controller stopped between creating it and recording it), and those
// ahead of run (phase.AheadForRunLimit). Who of them counts for the limit
// is phase.LoadOf's to decide.
func (c *Controller) load(run *v1alpha1.AgentRun, live []*v1alpha1.AgentRun, unseen map[types.UID]string, within func(inst string) bool) phase.Load {
	counts := map[string]phase.InstanceLoad{}
	counted := map[types.UID]bool{}
	for _, r := range live {
		if r.UID == run.UID {
			continue
		}
		key := runstore.InstanceKey(r.Namespace, r.Spec.InstanceRef)
		n := counts[key]
		if _, ok := unseen[r.UID]; ok || phase.IsAdmitted(r) || c.workloadCached(r) {
			counted[r.UID] = true
			n.Active++
			if r.Spec.Parent != nil {
				n.ActiveSubagents++
			}
		} else if phase.AheadForRunLimit(run, r) {
			if r.Spec.Parent != nil {
				n.AheadSubagents++
			} else {
				n.Ahead++
			}
		}
		counts[key] = n
	}
	for uid, inst := range unseen {
		if !counted[uid] && within(inst) {
			n := counts[inst]
			n.Active++
			counts[inst] = n
		}
	}
	for key, n := range counts {
		if n.Ahead+n.AheadSubagents == 0 {
			continue
		}
		ns, name, err := cache.SplitMetaNamespaceKey(key)
		if err != nil {
			continue
		}
		if inst, err := c.instances.SympoziumInstances(ns).Get(name); err == nil {
			n.Instance = inst
			counts[key] = n
		}
	}
	return phase.LoadOf(runstore.InstanceKey(run.Namespace, run.Spec.InstanceRef), counts)
}

// workloadCached reports whether the cache holds the run's workload,
// controlled by the run.
func (c *Controller) workloadCached(r *v1alpha1.AgentRun) bool {
	child := phase.Children(r)[0]
	kc, ok := c.kinds[child.Kind]
	if !ok || kc.get == nil {
		return false
	}
	obj, err := kc.get(r.Namespace, child.Name)
	return err == nil && metav1.IsControlledBy(obj, r)
}

// wakeForCapacity enqueues the runs a slot freed by a run of the instance
// may let start: the instance's waiting runs, and with the controller-wide
// limit every waiting run.
func (c *Controller) wakeForCapacity(namespace, instance string) {
	if c.opts.Phase.MaxConcurrentRuns == 0 {
		c.wakeWaiting(namespace, instance)
		return
	}
	for _, key := range c.runs.WaitingInstances() {
		c.wakeWaitingKey(key)
	}
}

// wakeChildren enqueues the unfinished sub-agent runs of parent: it
// finished, and so do they.
func (c *Controller) wakeChildren(parent *v1alpha1.AgentRun) {
	for _, r := range c.runs.LiveChildren(parent.Namespace, parent.Name) {
		c.enqueue(cache.MetaObjectToName(r))
	}
}
