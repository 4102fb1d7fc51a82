package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// evict evicts the run's first running agent pod through the Eviction API
// and returns its name. (The kwok Stages pod-terminate and pod-remove do
// what a kubelet does next: Failed with 137, then its final delete, which
// waits for the Job controller to remove its tracking finalizer.)
func (e *env) evict(t *testing.T, ns, run string) string {
	t.Helper()
	return e.onLiveAgentPod(t, ns, run, "evict", func(ctx context.Context, p *corev1.Pod) error {
		return e.kube.CoreV1().Pods(ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: ns}})
	})
}

// TestEvictionAPIRetried evicts the agent's pod through the Eviction API
// (what kubectl drain does): the API server marks it DisruptionTarget and
// deletes it; the Job replaces it and the run finishes on attempt 2.
func TestEvictionAPIRetried(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "drained", "inst", map[string]string{"SIM_DURATION": "6s"}, "  timeout: 3m\n"))
	e.waitPhase(t, ns, "drained", v1alpha1.PhaseRunning, 60*time.Second)
	first := e.evict(t, ns, "drained")
	r := e.waitRun(t, ns, "drained", 90*time.Second, "finished", func(r *v1alpha1.AgentRun) bool { return r.Status.Phase.IsTerminal() })
	assert.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, r.Status.Error)
	assert.Equal(t, int32(2), r.Status.Attempts)
	assert.NotEqual(t, first, r.Status.PodName)
}
