package phase

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Backend is the kind of workload that carries a run's agent.
type Backend string

const (
	// BackendTask is a Job (spec.mode task, the default).
	BackendTask Backend = "task"
	// BackendServer is a Deployment and a Service (spec.mode server).
	BackendServer Backend = "server"
	// BackendSandbox is an agent-sandbox Sandbox (agentSandbox.enabled).
	BackendSandbox Backend = "sandbox"
	// BackendSandboxClaim is an agent-sandbox SandboxClaim on a warm pool
	// (agentSandbox.enabled with warmPoolRef).
	BackendSandboxClaim Backend = "sandbox-claim"
)

// BackendOf returns the backend of run. The agent sandbox wins over
// mode: server, a combination the CRD refuses.
func BackendOf(run *v1alpha1.AgentRun) Backend {
	if as := run.Spec.AgentSandbox; as != nil && as.Enabled {
		if as.WarmPoolRef != "" {
			return BackendSandboxClaim
		}
		return BackendSandbox
	}
	if run.Spec.Mode == v1alpha1.ModeServer {
		return BackendServer
	}
	return BackendTask
}

// Kind is the kind of an object a backend makes for a run.
type Kind string

// KindPod is the agent pod: never created by the machine (the workload's
// controller makes it), only retired (see retireKept).
const KindPod Kind = "Pod"

// Objects are a run's workload objects as cached, by kind.
type Objects map[Kind]metav1.Object

// Child names one object a run's backend makes for it.
type Child struct {
	Kind Kind
	Name string
}

// backend is what the machine knows of one backend: the objects it makes
// (the first is the workload, whose existence means the run was admitted),
// and its adapter.
type backend struct {
	children func(run string) []Child
	adapter  func(m *machine) adapter
}

// backends is the one list of backends. A new backend is an adapter (one
// file beside this one), its builder in package workload, a line here and
// its registration in the controller (pkg/controller/agentrun, kinds.go).
var backends = map[Backend]backend{
	BackendTask:         {taskChildren, func(m *machine) adapter { return taskAdapter{m} }},
	BackendServer:       {serverChildren, func(m *machine) adapter { return serverAdapter{m} }},
	BackendSandbox:      {sandboxChildren, func(m *machine) adapter { return sandboxAdapter{m} }},
	BackendSandboxClaim: {claimChildren, func(m *machine) adapter { return claimAdapter{m} }},
}

// Children lists the objects run's backend makes for it, by their
// deterministic names; the first is its workload.
func Children(run *v1alpha1.AgentRun) []Child {
	return backends[BackendOf(run)].children(run.Name)
}

// adapter is one execution backend of a run: the objects that carry its
// agent and how its progress is read from them. The lifecycle around it
// (admission, deadlines, terminal phases, conditions, events, the
// finalizer) is the machine's, the same for every backend.
type adapter interface {
	// kind names the object that carries the run, for messages.
	kind() string
	// object is that object as cached; nil when the cache has none.
	object() metav1.Object
	// recorded reports whether the status names it: the run was admitted.
	recorded() bool
	// record names it in the status.
	record()
	// created is the message of the admission (reason JobCreated).
	created() string
	// unavailable says why the cluster cannot run this backend ("" when it
	// can): the run then fails with SandboxUnavailable.
	unavailable() string
	// needsFinalizer reports whether a live run holds the server finalizer.
	needsFinalizer() bool
	// create asks for the objects to create; an error is a spec this
	// backend cannot run (InvalidSpec).
	create() error
	// observe follows an admitted run.
	observe()
	// lost fails a run whose recorded object is gone.
	lost()
	// remove asks to delete what exists of the workload; force ignores
	// spec.cleanup.
	remove(force bool)
}

func newAdapter(m *machine) adapter {
	return backends[BackendOf(m.in.Run)].adapter(m)
}

func (m *machine) inputs() workload.Inputs {
	return workload.Inputs{Run: m.run(), Instance: m.in.Instance, SkillPacks: m.in.SkillPacks, Parent: m.parent(), Now: m.in.Now}
}

// cached returns the cached object of kind as its Go type; nil when the
// cache has none.
func cached[T metav1.Object](m *machine, kind Kind) T {
	obj, _ := m.in.Objects[kind].(T)
	return obj
}

// removeObject asks to delete obj (nil: none) when it is removable.
func removeObject[T interface {
	comparable
	metav1.Object
}](m *machine, kind Kind, obj T, force bool) {
	var none T
	if obj != none && m.removable(obj, force) {
		// Only the identity: the delete's precondition is the UID.
		m.act(Delete, kind, identity(obj))
	}
}
