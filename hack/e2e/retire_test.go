package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// A finished run's kept children (cleanup: keep) are retired: labelled
// sympozium.ai/retired, which the controller's informers select out, so a
// long history of kept runs costs the controller no memory; they stay in
// the cluster as they were. The controller caches finished runs compacted
// (no result, no messages); a finished run whose status must change is
// written from the API server's copy, so nothing the cache dropped is lost.
func TestKeptChildrenRetired(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.apply(t, instanceYAML(ns, "inst", ""))
	e.apply(t, runYAML(ns, "kept", "inst", map[string]string{"SIM_MESSAGE": successReport}, "  cleanup: keep\n"))
	e.apply(t, runYAML(ns, "gone", "inst", map[string]string{"SIM_MESSAGE": successReport}, ""))
	r := e.waitPhase(t, ns, "kept", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitPhase(t, ns, "gone", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitNoChildren(t, ns, "gone", 60*time.Second)
	require.NotEmpty(t, r.Status.Result)
	ctx := context.Background()

	retired := func() (job, pod string) {
		j, err := e.kube.BatchV1().Jobs(ns).Get(ctx, r.Status.JobName, metav1.GetOptions{})
		require.NoError(t, err, "cleanup: keep keeps the Job")
		p, err := e.kube.CoreV1().Pods(ns).Get(ctx, r.Status.PodName, metav1.GetOptions{})
		require.NoError(t, err, "cleanup: keep keeps the pod")
		return j.Labels[v1alpha1.LabelRetired], p.Labels[v1alpha1.LabelRetired]
	}
	require.Eventually(t, func() bool {
		j, p := retired()
		return j == "true" && p == "true"
	}, 30*time.Second, 200*time.Millisecond, "the kept Job and pod are retired")
	pods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "sympozium.ai/agent-run=kept,!" + v1alpha1.LabelRetired})
	require.NoError(t, err)
	assert.Empty(t, pods.Items, "the controller's selector no longer sees them")

	// spec.cancel on a finished run bumps its generation: the status is
	// rewritten (observedGeneration) from the API server's copy, with the
	// result and conditions the cache does not hold.
	_, err = e.client.SympoziumV1alpha1().AgentRuns(ns).Patch(ctx, "kept", types.MergePatchType, []byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	after := e.waitRun(t, ns, "kept", 30*time.Second, "observedGeneration caught up", func(x *v1alpha1.AgentRun) bool {
		return x.Status.ObservedGeneration == x.Generation
	})
	want := r.Status.DeepCopy()
	want.ObservedGeneration = after.Generation
	assert.Equal(t, *want, after.Status, "nothing of the finished run's status was lost")
}
