package phase

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The workloads of agent-sandbox runs: a Sandbox of the run's own, or a
// SandboxClaim on a warm pool whose bound Sandbox carries the agent.
const (
	KindSandbox      Kind = workload.SandboxKind
	KindSandboxClaim Kind = workload.SandboxClaimKind
)

func sandboxChildren(run string) []Child { return []Child{{KindSandbox, naming.SandboxName(run)}} }
func claimChildren(run string) []Child {
	return []Child{{KindSandboxClaim, naming.SandboxClaimName(run)}}
}

// Sandbox condition types and reasons (agents.x-k8s.io); a claim mirrors
// its Sandbox's Ready and Finished.
const (
	SandboxConditionReady    = "Ready"
	SandboxConditionFinished = "Finished"
	SandboxReasonSucceeded   = "PodSucceeded"
)

// SandboxAPI is what the cluster serves of the agent-sandbox API, as
// "<group>/<version>" of the resource the controller would use.
type SandboxAPI struct {
	// Sandbox is the served version of Sandbox (agents.x-k8s.io); "" when
	// the cluster does not serve it.
	Sandbox string
	// Claim is the served version of SandboxClaim
	// (extensions.agents.x-k8s.io/v1beta1); "" when the cluster does not
	// serve it.
	Claim string
	// Why explains, for the run's status, why what is "" is not served.
	Why string
}

// SandboxObject is what the machine reads of an agent-sandbox Sandbox or
// SandboxClaim (which the controller reads as unstructured objects): its
// metadata, its conditions (Ready, Finished, ...) and, for a claim, the
// Sandbox bound to it.
type SandboxObject struct {
	metav1.ObjectMeta
	Conditions []metav1.Condition
	// BoundSandbox is a claim's status.sandbox.name; "" until bound.
	BoundSandbox string
}

// sandboxAdapter is an agent-sandbox Sandbox of the run's own. The
// agent's outcome is read from the pod named like the Sandbox, exactly as
// in task mode; the Sandbox's Finished condition stands in when that pod
// cannot be read.
type sandboxAdapter struct{ m *machine }

func (w sandboxAdapter) kind() string          { return workload.SandboxKind }
func (w sandboxAdapter) obj() *SandboxObject   { return cached[*SandboxObject](w.m, KindSandbox) }
func (w sandboxAdapter) object() metav1.Object { return sandboxObject(w.obj()) }
func (w sandboxAdapter) needsFinalizer() bool  { return false }
func (w sandboxAdapter) recorded() bool        { return w.m.st.SandboxName != "" }
func (w sandboxAdapter) name() string          { return naming.SandboxName(w.m.run().Name) }
func (w sandboxAdapter) record()               { w.m.st.SandboxName = w.name() }
func (w sandboxAdapter) lost()                 { sandboxLost(w.m, w) }

func (w sandboxAdapter) created() string {
	return fmt.Sprintf("Sandbox %s created", w.m.st.SandboxName)
}

func (w sandboxAdapter) unavailable() string {
	if api := w.m.in.SandboxAPI; api.Sandbox == "" {
		return "agentSandbox needs the agent-sandbox Sandbox API (" + workload.SandboxGroup + "), which this cluster does not serve: " + api.Why
	}
	return ""
}

func (w sandboxAdapter) create() error {
	u, err := workload.Sandbox(w.m.in.Config.Workload, w.m.inputs(), w.m.in.SandboxAPI.Sandbox)
	if err != nil {
		return err
	}
	w.m.act(Create, KindSandbox, u)
	return nil
}

func (w sandboxAdapter) remove(force bool) { removeObject(w.m, KindSandbox, w.obj(), force) }

func (w sandboxAdapter) observe() {
	m := w.m
	obj := w.obj()
	pod := m.in.Pod
	agent := agentOf(pod)
	if sandboxEnded(m, obj, w.kind(), w.name()) || sandboxRefused(m, obj, w.kind()) {
		return
	}
	if pod == nil && m.st.PodName != "" && obj != nil && obj.DeletionTimestamp == nil {
		// The run's own sandbox pod carries the run's labels, so the cache
		// would show it: it is gone.
		m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("pod %s disappeared before the agent finished", m.st.PodName), nil)
		return
	}
	m.followPod(pod, agent)
}

// claimAdapter is a SandboxClaim on a warm pool: the pool's Sandbox bound
// to it carries the agent, read as for a Sandbox of the run's own.
type claimAdapter struct{ m *machine }

func (w claimAdapter) kind() string          { return workload.SandboxClaimKind }
func (w claimAdapter) obj() *SandboxObject   { return cached[*SandboxObject](w.m, KindSandboxClaim) }
func (w claimAdapter) object() metav1.Object { return sandboxObject(w.obj()) }
func (w claimAdapter) needsFinalizer() bool  { return false }
func (w claimAdapter) recorded() bool        { return w.m.st.SandboxClaimName != "" }
func (w claimAdapter) name() string          { return naming.SandboxClaimName(w.m.run().Name) }
func (w claimAdapter) record()               { w.m.st.SandboxClaimName = w.name() }
func (w claimAdapter) lost()                 { sandboxLost(w.m, w) }

func (w claimAdapter) created() string {
	return fmt.Sprintf("SandboxClaim %s created on warm pool %s", w.m.st.SandboxClaimName, w.m.run().Spec.AgentSandbox.WarmPoolRef)
}

func (w claimAdapter) unavailable() string {
	if api := w.m.in.SandboxAPI; api.Claim == "" {
		return "agentSandbox.warmPoolRef needs the agent-sandbox SandboxClaim API (" + workload.SandboxClaimGroup + "/v1beta1), which this cluster does not serve: " + api.Why
	}
	return ""
}

func (w claimAdapter) create() error {
	if why := poolMismatch(w.m.run(), w.m.in.PoolTemplate); why != "" {
		return errors.New(why)
	}
	u, err := workload.SandboxClaim(w.m.in.Config.Workload, w.m.inputs(), w.m.in.SandboxAPI.Claim)
	if err != nil {
		return err
	}
	w.m.act(Create, KindSandboxClaim, u)
	return nil
}

func (w claimAdapter) remove(force bool) { removeObject(w.m, KindSandboxClaim, w.obj(), force) }

func (w claimAdapter) observe() {
	m := w.m
	obj := w.obj()
	if obj != nil {
		if b := obj.BoundSandbox; b != "" && m.st.SandboxName != b {
			m.st.SandboxName = b
		}
	}
	pod := m.in.Pod
	agent := agentOf(pod)
	if sandboxEnded(m, obj, w.kind(), w.name()) || sandboxRefused(m, obj, w.kind()) {
		return
	}
	var ready *metav1.Condition
	if obj != nil {
		ready = trueCondition(obj.Conditions, SandboxConditionReady)
	}
	if agent == nil && ready != nil && m.st.Phase == v1alpha1.PhasePending && m.st.SandboxName != "" && m.in.Now.Before(m.deadline()) {
		// A claimed pod need not carry the run's labels (the warm pool
		// made it), so the cache may not show it; the claim says it runs.
		m.st.PodName = m.st.SandboxName
		m.start(ready.LastTransitionTime)
	}
	m.followPod(pod, agent)
}

// sandboxObject is obj as a metav1.Object; nil for none.
func sandboxObject(obj *SandboxObject) metav1.Object {
	if obj == nil {
		return nil
	}
	return obj
}

// sandboxLost fails a run whose Sandbox or SandboxClaim is gone: because
// the cluster no longer serves its API, or because it was deleted.
func sandboxLost(m *machine, w interface {
	adapter
	name() string
}) {
	if why := w.unavailable(); why != "" {
		m.fail(v1alpha1.ReasonSandboxUnavailable, why, nil)
		return
	}
	m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("%s %s was deleted before the run finished", w.kind(), w.name()), nil)
}

// sandboxEnded ends the run on what its agent pod or its Sandbox (or
// claim) obj of kind says, the part both agent-sandbox backends share, and
// reports whether it did: the agent's exit, a lost pod, a finished Sandbox
// whose pod could not be read.
func sandboxEnded(m *machine, obj *SandboxObject, kind, name string) bool {
	pod := m.in.Pod
	agent := agentOf(pod)
	switch {
	case agent != nil && agent.State.Terminated != nil:
		m.agentTerminated(pod, agent.State.Terminated)
		return true
	case pod != nil && podLost(pod):
		m.fail(v1alpha1.ReasonPodLost, podLostMessage(pod), nil)
		return true
	}
	if obj == nil {
		return false
	}
	if c := trueCondition(obj.Conditions, SandboxConditionFinished); c != nil {
		if pod != nil && !m.in.Now.After(c.LastTransitionTime.Add(PodCatchUp)) {
			// The pod's cache lags behind the Sandbox's: its termination
			// (and the agent's report) is on its way.
			m.requeue(c.LastTransitionTime.Add(PodCatchUp).Sub(m.in.Now))
			return true
		}
		finishedUnread(m, c, kind, name)
		return true
	}
	return false
}

// PodCatchUp is how long a finished Sandbox waits for its pod, seen still
// running, to show the agent's termination before the run ends on the
// Sandbox's Finished condition alone.
const PodCatchUp = 10 * time.Second

// finishedUnread ends a run whose Sandbox finished while its pod (and so
// the agent's exit code and report) could not be read.
func finishedUnread(m *machine, c *metav1.Condition, kind, name string) {
	if m.st.PodName == "" && m.st.SandboxName != "" {
		m.st.PodName = m.st.SandboxName
	}
	if c.Reason == SandboxReasonSucceeded {
		m.succeed(0, result.Outcome{Error: fmt.Sprintf("the %s finished (%s) but its agent pod could not be read for a result", kind, c.Reason)})
		return
	}
	m.fail(v1alpha1.ReasonAgentFailed, fmt.Sprintf("%s %s finished: %s: %s (the agent pod could not be read for an exit code)", kind, name, c.Reason, c.Message), nil)
}

func trueCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil && c.Status == metav1.ConditionTrue {
		return c
	}
	return nil
}
