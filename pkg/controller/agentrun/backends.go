package agentrun

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// backendObserver is the controller's part of one backend, beyond reading
// its children from the caches (see kindClients); registered with its
// backend (registrations).
type backendObserver struct {
	// prepare, when set, fills in what the backend needs before its
	// children can be read; false means they cannot (their API is not
	// served) and the run is decided without them.
	prepare func(ctx context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) (bool, error)
	// pod finds the agent pod once the children are read; nil for none.
	pod func(ctx context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) *corev1.Pod
}

// backendObservers builds the backend → observer table from the
// registrations.
func (c *Controller) backendObservers() map[phase.Backend]backendObserver {
	out := map[phase.Backend]backendObserver{}
	for _, r := range registrations {
		if r.observer != nil {
			out[r.backend] = r.observer(c)
		}
	}
	return out
}

// taskObserver finds a task's agent pod: the newest pod of its Job.
func taskObserver(c *Controller) backendObserver {
	return backendObserver{pod: func(_ context.Context, _ *v1alpha1.AgentRun, obs *phase.Observed) *corev1.Pod {
		if job, ok := obs.Objects[phase.KindJob].(*batchv1.Job); ok {
			return c.agentPod(job)
		}
		return nil
	}}
}

// serverObserver finds a server's agent pod: the newest pod of its
// Deployment.
func serverObserver(c *Controller) backendObserver {
	return backendObserver{pod: func(_ context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) *corev1.Pod {
		if _, ok := obs.Objects[phase.KindDeployment].(*appsv1.Deployment); ok {
			return c.serverPod(run)
		}
		return nil
	}}
}

// sandboxObserver looks up the agent-sandbox API before the run's Sandbox
// (or, claim, SandboxClaim) is read, and the warm pool's template before a
// claim that needs it is made; the agent pod is the Sandbox's.
func sandboxObserver(claim bool) func(c *Controller) backendObserver {
	return func(c *Controller) backendObserver {
		return backendObserver{
			prepare: func(ctx context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) (bool, error) {
				ok, err := c.prepareSandbox(ctx, claim, obs)
				if ok && err == nil && claim && phase.NeedsPoolTemplate(run) && run.Status.SandboxClaimName == "" && run.Status.Phase != v1alpha1.PhaseFailed {
					obs.PoolTemplate, err = c.sandboxes.PoolTemplate(ctx, run.Namespace, run.Spec.AgentSandbox.WarmPoolRef)
				}
				return ok, err
			},
			pod: c.sandboxAgentPod,
		}
	}
}

// prepareSandbox looks up the agent-sandbox API. It returns
// errSandboxNotSynced while the API's informers have not synced.
func (c *Controller) prepareSandbox(ctx context.Context, claim bool, obs *phase.Observed) (bool, error) {
	if c.sandboxes == nil {
		obs.SandboxAPI = phase.SandboxAPI{Why: "this controller was started without agent-sandbox support"}
		return false, nil
	}
	api, err := c.sandboxes.Lookup(ctx, claim)
	if err != nil {
		return false, err
	}
	obs.SandboxAPI = api
	if (claim && api.Claim == "") || (!claim && api.Sandbox == "") {
		return false, nil
	}
	if !c.sandboxes.Synced() {
		return false, errSandboxNotSynced
	}
	return true, nil
}

// sandboxAgentPod returns the pod of the run's own Sandbox or of the
// Sandbox bound to its claim.
func (c *Controller) sandboxAgentPod(ctx context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) *corev1.Pod {
	sb, _ := obs.Objects[phase.KindSandbox].(*phase.SandboxObject)
	claim, _ := obs.Objects[phase.KindSandboxClaim].(*phase.SandboxObject)
	var sandbox string
	var sandboxUID types.UID
	switch {
	case sb != nil:
		sandbox, sandboxUID = sb.Name, sb.UID
	case claim != nil:
		sandbox = claim.BoundSandbox
	}
	if sandbox == "" || run.Status.Phase.IsTerminal() {
		return nil
	}
	return c.sandboxPod(ctx, run, sandbox, sandboxUID, claim)
}
