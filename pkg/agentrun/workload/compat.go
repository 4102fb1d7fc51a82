package workload

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// What sympozium's own clients leave empty or combine, and what the agent
// then receives (see the README's pod contract and "Switching from the
// sympozium controller").

// DefaultAgentID is the AGENT_ID of a run whose spec.agentId is empty
// (sympozium's TUI writes none): the name sympozium's own clients give the
// instance's one agent, agents.default, when they address it (its channel
// router and its web proxy write "primary").
const DefaultAgentID = "primary"

// AgentID is the AGENT_ID the agent receives: spec.agentId, or
// DefaultAgentID when it is empty.
func AgentID(run *v1alpha1.AgentRun) string {
	if run.Spec.AgentID != "" {
		return run.Spec.AgentID
	}
	return DefaultAgentID
}

// SessionKey is the SESSION_KEY the agent receives: spec.sessionKey, or,
// when it is empty (sympozium's schedule controller and TUI write none), a
// session of the run's own, "agentrun:<namespace>/<name>:<uid>".
//
// The default is a new session per run, as sympozium's own clients do
// when they have no conversation to continue (its API server writes
// "session-<nanoseconds>", its channel router "channel-…-<nanoseconds>"),
// but derived from the run instead of a clock, so that every build of the
// run's workload (every sync, every controller restart, a server
// Deployment compared with what it should be) agrees. The UID makes a run
// recreated under the same name (a schedule's "<schedule>-<n>" after the
// schedule is recreated) a new session.
func SessionKey(run *v1alpha1.AgentRun) string {
	if run.Spec.SessionKey != "" {
		return run.Spec.SessionKey
	}
	key := "agentrun:" + run.Namespace + "/" + run.Name
	if run.UID != "" {
		key += ":" + string(run.UID)
	}
	return key
}

// ParentSessionKey is the PARENT_SESSION_KEY of a sub-agent run:
// spec.parent.sessionKey, or, when it is empty (sympozium's spawner
// writes none), the session its parent's agent received. "" when the run
// has no parent or the parent is unknown.
func ParentSessionKey(run, parent *v1alpha1.AgentRun) string {
	p := run.Spec.Parent
	switch {
	case p == nil:
		return ""
	case p.SessionKey != "":
		return p.SessionKey
	case parent != nil && parent.Name == p.RunName && parent.Namespace == run.Namespace:
		return SessionKey(parent)
	}
	return ""
}

// ContainerSandboxIgnored reports whether the run enables both sandboxes.
// sympozium's controller admits that combination and runs the agent in
// the agent sandbox; so does this one, without the container sandbox's
// sidecar (a process that only sleeps beside the agent, which the agent
// sandbox's kernel-level isolation already contains), and says so when it
// admits the run (see IgnoredSandboxNote).
func ContainerSandboxIgnored(run *v1alpha1.AgentRun) bool {
	sb, as := run.Spec.Sandbox, run.Spec.AgentSandbox
	return sb != nil && sb.Enabled && as != nil && as.Enabled
}

// IgnoredSandboxNote is what the run's admission says about spec.sandbox
// when ContainerSandboxIgnored; "" otherwise.
func IgnoredSandboxNote(run *v1alpha1.AgentRun) string {
	if !ContainerSandboxIgnored(run) {
		return ""
	}
	return "spec.sandbox ignored: agentSandbox is enabled too and replaces the container sandbox"
}

// The v1alpha1.LabelComponent values sympozium's own controller (commit
// 25c0bb2) puts on what it creates for a run: its Job (and pod template)
// and its Sandbox, and its server Deployment and Service.
const (
	ComponentOriginal       = "agent-run"
	ComponentOriginalServer = "agent-server"
)

// CreatedByOriginal reports whether obj, a workload object of a run, was
// created by sympozium's own controller. Its Job and its server Deployment
// and Service carry this controller's managed-by label too and are named
// and owned like the ones this controller would create, so they are
// followed like them (adopted).
func CreatedByOriginal(obj metav1.Object) bool {
	switch obj.GetLabels()[v1alpha1.LabelComponent] {
	case ComponentOriginal, ComponentOriginalServer:
		return true
	}
	return false
}

// AdoptedNote is what the admission of a run says about a workload object
// sympozium's own controller created.
func AdoptedNote(kind string, obj metav1.Object) string {
	how := "its agent container decides the run"
	if obj.GetLabels()[v1alpha1.LabelComponent] == ComponentOriginalServer {
		// Its selector (immutable) and its Service's select sympozium's
		// pods: rebuilding it would take the server down.
		how = "kept as it is, its availability decides while the run serves"
	}
	return fmt.Sprintf("%s %s was created by sympozium's own controller; adopted: %s", kind, obj.GetName(), how)
}
