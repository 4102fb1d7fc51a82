package runstore

import (
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Entry is one run as the store holds it and its event handlers deliver
// it: a live run, a finished run's record, or the tombstone of either. Its
// methods read either shape; only Run rebuilds a record.
type Entry struct {
	raw any // as delivered: the key of a tombstone is its own
	obj any // tombstone unwrapped
}

// EntryOf is the entry obj is (a run of the store, or a tombstone of one).
func EntryOf(obj any) Entry {
	e := Entry{raw: obj, obj: obj}
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		e.obj = d.Obj
	}
	return e
}

// Key is the run's namespace and name.
func (e Entry) Key() (cache.ObjectName, bool) {
	name, err := cache.DeletionHandlingObjectToName(e.raw)
	return name, err == nil
}

// Run is the run: a live run as is, a finished run's record rebuilt as the
// compacted run (a new object each call). ok is false for anything else.
func (e Entry) Run() (*v1alpha1.AgentRun, bool) {
	switch o := e.obj.(type) {
	case *v1alpha1.AgentRun:
		return o, true
	case *runcache.FinishedRun:
		return o.AgentRun(), true
	}
	return nil, false
}

// History is what the history policy reads of the run (see
// runcache.HistoryRun), without rebuilding a finished run from its record.
func (e Entry) History() (runcache.HistoryRun, bool) {
	switch o := e.obj.(type) {
	case *v1alpha1.AgentRun:
		return runcache.HistoryOf(o), true
	case *runcache.FinishedRun:
		return o.History(), true
	}
	return runcache.HistoryRun{}, false
}

// Instance is the namespace and spec.instanceRef of the run.
func (e Entry) Instance() (namespace, instance string, ok bool) {
	f, ok := e.facts()
	return f.namespace, f.instance, ok
}

// FinishedAtRest reports whether the run is finished and not being
// deleted: nothing is left to do for it but what its children's and
// grants' own events bring (a restart's list and a deadline that comes due
// after the end do not sync it). It reads either shape without rebuilding
// a record.
func (e Entry) FinishedAtRest() bool {
	f, ok := e.facts()
	return ok && f.phase.IsTerminal() && !f.deleting
}

// FinishedResync reports whether an update event from old to cur is a
// resync of a finished run: finished both times, same resourceVersion. It
// reads either shape without rebuilding a record.
func FinishedResync(old, cur Entry) bool {
	o, ok := old.facts()
	c, ok2 := cur.facts()
	return ok && ok2 && o.phase.IsTerminal() && c.phase.IsTerminal() && o.resourceVersion == c.resourceVersion
}

// facts is what the indexes and the entry's questions read of a run,
// from either shape.
type facts struct {
	namespace, instance, parent string
	phase                       v1alpha1.AgentRunPhase
	waiting                     bool
	resourceVersion             runcache.ResourceVersionKey
	deleting                    bool
}

func (e Entry) facts() (facts, bool) {
	switch o := e.obj.(type) {
	case *v1alpha1.AgentRun:
		f := facts{namespace: o.Namespace, instance: o.Spec.InstanceRef, phase: o.Status.Phase, waiting: phase.IsWaiting(o),
			resourceVersion: runcache.ResourceVersionKeyOf(o.ResourceVersion), deleting: o.DeletionTimestamp != nil}
		if o.Spec.Parent != nil {
			f.parent = o.Spec.Parent.RunName
		}
		return f, true
	case *runcache.FinishedRun:
		return facts{namespace: o.Namespace, instance: o.Instance, parent: o.ParentName(), phase: o.Phase(),
			resourceVersion: o.ResourceVersionKey(), deleting: o.Deleting()}, true
	}
	return facts{}, false
}

// labels are the run's labels (a record keeps this controller's own,
// sympozium.ai/schedule among them), without rebuilding a record.
func (e Entry) labels() map[string]string {
	switch o := e.obj.(type) {
	case *v1alpha1.AgentRun:
		return o.Labels
	case *runcache.FinishedRun:
		return o.Labels()
	}
	return nil
}

// Handlers are run event handlers that get each run as an Entry.
type Handlers struct {
	Add    func(e Entry)
	Update func(old, cur Entry)
	Delete func(e Entry)
}

// Funcs are h as the handlers of the runs informer.
func (h Handlers) Funcs() cache.ResourceEventHandlerFuncs {
	var f cache.ResourceEventHandlerFuncs
	if h.Add != nil {
		f.AddFunc = func(obj any) { h.Add(EntryOf(obj)) }
	}
	if h.Update != nil {
		f.UpdateFunc = func(old, cur any) { h.Update(EntryOf(old), EntryOf(cur)) }
	}
	if h.Delete != nil {
		f.DeleteFunc = func(obj any) { h.Delete(EntryOf(obj)) }
	}
	return f
}
