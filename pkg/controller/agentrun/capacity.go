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
	if phase.MaxConcurrentRuns(obs.Instance) > 0 {
		obs.Runs = c.load(run, c.runs.LiveOfInstance(run.Namespace, run.Spec.InstanceRef), unseen, func(r *v1alpha1.AgentRun) bool {
			return r.Spec.InstanceRef == run.Spec.InstanceRef && r.Namespace == run.Namespace
		})
	}
	if c.opts.Phase.MaxConcurrentRuns > 0 {
		obs.AllRuns = c.load(run, c.runs.Live(), unseen, func(*v1alpha1.AgentRun) bool { return true })
	}
}

// load counts, among the live runs, those holding a slot (admitted in
// the cache, admitted by this controller and not seen yet, or whose
// workload the cache holds although its status does not say so: the
// controller stopped between creating it and recording it), and those
// waiting that are older than run and would take a slot before it. A
// waiting run held back by another limit does not count ahead: a sub-agent
// run beyond its instance's sub-agent maxConcurrent, and (for the runs of
// other instances) a run beyond its own instance's maxConcurrentRuns.
func (c *Controller) load(run *v1alpha1.AgentRun, live []*v1alpha1.AgentRun, unseen map[types.UID]string, within func(*v1alpha1.AgentRun) bool) phase.Load {
	var l phase.Load
	counted := map[types.UID]bool{}
	var waiting []*v1alpha1.AgentRun
	active := map[string]int{}    // by instance key
	activeSub := map[string]int{} // sub-agent runs, by instance key
	for _, r := range live {
		if r.UID == run.UID {
			continue
		}
		if _, ok := unseen[r.UID]; ok || phase.IsAdmitted(r) || c.workloadCached(r) {
			l.Active++
			counted[r.UID] = true
			key := runstore.InstanceKey(r.Namespace, r.Spec.InstanceRef)
			active[key]++
			if r.Spec.Parent != nil {
				activeSub[key]++
			}
			continue
		}
		if r.DeletionTimestamp == nil && !r.Spec.Cancel && phase.Older(r, run) {
			waiting = append(waiting, r)
		}
	}
	for uid, inst := range unseen {
		if !counted[uid] && c.unseenWithin(inst, within) {
			l.Active++
			active[inst]++
		}
	}
	for _, r := range waiting {
		key := runstore.InstanceKey(r.Namespace, r.Spec.InstanceRef)
		inst, err := c.instances.SympoziumInstances(r.Namespace).Get(r.Spec.InstanceRef)
		if err != nil {
			continue // waits for its instance, not for a slot
		}
		if r.Spec.Parent != nil && activeSub[key] >= int(phase.Limits(inst).MaxConcurrent) {
			continue // held back by the instance's sub-agent limit
		}
		sameInstance := r.Spec.InstanceRef == run.Spec.InstanceRef && r.Namespace == run.Namespace
		if n := phase.MaxConcurrentRuns(inst); !sameInstance && n > 0 && active[key] >= n {
			continue // held back by its own instance's limit
		}
		l.WaitingAhead++
	}
	return l
}

// unseenWithin reports whether an admission not seen yet, of the instance
// with key inst, counts for a limit whose runs within selects.
func (c *Controller) unseenWithin(inst string, within func(*v1alpha1.AgentRun) bool) bool {
	ns, name, err := cache.SplitMetaNamespaceKey(inst)
	if err != nil {
		return false
	}
	return within(&v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{Namespace: ns}, Spec: v1alpha1.AgentRunSpec{InstanceRef: name}})
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
