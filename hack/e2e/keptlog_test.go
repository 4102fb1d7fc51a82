package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestKeptLogAfterCleanup proves the log path on the real control plane and
// the evidence kept after cleanup (issue 14 item 6):
//   - kwok serves an agent container's log through its kubelet API
//     (ClusterLogs in localcp.LogsNamespace): `kubectl logs` goes API server
//     → node's kubelet endpoint → kwok, as on a real node;
//   - a run that fails with cleanup: delete keeps the end of that log in
//     ConfigMap <run>-log, owned by the run, read by the controller through
//     the same pods/log path; its Job and pod are gone;
//   - `kubectl get configmap <run>-log -o jsonpath='{.data.agent\.log}'` and
//     `kubectl agentrun logs <run>` show it; a successful run keeps nothing.
func TestKeptLogAfterCleanup(t *testing.T) {
	e := requireE2E(t)
	ns := localcp.LogsNamespace
	_, err := e.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	e.startController(t, ns, "--read-logs=true")
	e.apply(t, instanceYAML(ns, "inst", ""))
	want := strings.Join(localcp.AgentLogLines, "\n") + "\n"

	// kubectl logs through the kubelet endpoint of a kept pod.
	e.apply(t, runYAML(ns, "kept", "inst", map[string]string{"SIM_EXIT_CODE": "2", "SIM_DURATION": "1s"}, "  cleanup: keep\n"))
	r := e.waitPhase(t, ns, "kept", v1alpha1.PhaseFailed, 60*time.Second)
	out := e.kubectl(t, "logs", "-n", ns, r.Status.PodName, "-c", "agent")
	assert.Equal(t, want, out, "kubectl logs served by kwok's kubelet API")
	_, err = e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "kept-log", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "cleanup: keep keeps the pod (and its log), no ConfigMap")

	// cleanup: delete: the pod goes, the tail stays.
	e.apply(t, runYAML(ns, "gone", "inst", map[string]string{"SIM_EXIT_CODE": "2", "SIM_DURATION": "1s"}, ""))
	e.apply(t, runYAML(ns, "fine", "inst", map[string]string{"SIM_DURATION": "1s"}, ""))
	r = e.waitPhase(t, ns, "gone", v1alpha1.PhaseFailed, 60*time.Second)
	e.waitPhase(t, ns, "fine", v1alpha1.PhaseSucceeded, 60*time.Second)
	e.waitNoChildren(t, ns, "gone", 60*time.Second)
	cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "gone-log", metav1.GetOptions{})
	require.NoError(t, err, "the failed run keeps its log")
	assert.True(t, metav1.IsControlledBy(cm, r), "owned by the run")
	assert.Equal(t, want, cm.Data["agent.log"])
	assert.Equal(t, want, e.kubectl(t, "get", "configmap", "gone-log", "-n", ns, "-o", `jsonpath={.data.agent\.log}`))
	stdout, stderr, code := e.agentrun(t, "logs", "-n", ns, "gone")
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, want, stdout, "kubectl agentrun logs reads the kept tail once the pod is gone")
	_, err = e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "fine-log", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "a successful run keeps nothing")

	// Deleting the run removes its kept log (garbage collection).
	e.kubectl(t, "delete", "agentrun", "gone", "-n", ns, "--wait=true")
	require.Eventually(t, func() bool {
		_, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "gone-log", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 60*time.Second, 200*time.Millisecond, "the kept log goes with its run")
	e.kubectl(t, "delete", "agentruns", "--all", "-n", ns, "--wait=false")
}
