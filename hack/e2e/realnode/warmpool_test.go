//go:build linux

package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/sympozium-ai/sympozium-controller/hack/agentsandbox"
	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var (
	sandboxOnce sync.Once
	sandboxErr  error
	sandboxCtrl *agentsandbox.Controller
)

// agentSandbox runs the real agent-sandbox controller (hack/agentsandbox,
// built once and cached) against the cluster, with its module's CRDs; it is
// stopped when the suite ends.
func (e *env) agentSandbox(t *testing.T) {
	t.Helper()
	sandboxOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
		defer cancel()
		bin, err := agentsandbox.EnsureBinary(ctx, os.Stderr)
		if err != nil {
			sandboxErr = err
			return
		}
		dir, err := agentsandbox.ModuleDir(ctx)
		if err != nil {
			sandboxErr = err
			return
		}
		if sandboxErr = agentsandbox.InstallCRDs(ctx, e.cluster.RestConfig(), dir); sandboxErr != nil {
			return
		}
		sandboxCtrl, sandboxErr = agentsandbox.Start(agentsandbox.Options{Binary: bin, Kubeconfig: e.cluster.Kubeconfig,
			LogFile: filepath.Join(e.tmp, "agent-sandbox-controller.log")})
		if sandboxErr != nil {
			return
		}
		// Its four controllers log "Starting workers" once their caches synced.
		sandboxErr = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			data, _ := os.ReadFile(sandboxCtrl.LogPath())
			return strings.Count(string(data), "Starting workers") >= 4, nil
		})
	})
	require.NoError(t, sandboxErr, "the agent-sandbox controller")
}

func stopAgentSandbox() {
	if sandboxCtrl != nil {
		_ = sandboxCtrl.Stop(15 * time.Second)
	}
}

// TestWarmPoolOnRealNode: a warm pool of the real agent-sandbox controller,
// its pod the test agent on the real node, started before the run; the run
// claims it, its task reaches the running agent through the downward-API
// file the kubelet refreshes, and the run Succeeds with the agent's report.
func TestWarmPoolOnRealNode(t *testing.T) {
	e := requireNode(t)
	e.agentSandbox(t)
	ns := e.namespace(t)
	ctx := context.Background()
	// The sample pool of manifests/samples/warm-pool, running the test agent.
	sample, err := os.ReadFile(filepath.Join(e.root, "manifests", "samples", "warm-pool", "pool.yaml"))
	require.NoError(t, err)
	pool := strings.ReplaceAll(string(sample), "ghcr.io/sympozium-ai/sympozium/agent-runner:latest", ociimage.TestAgentImage)
	pool = strings.ReplaceAll(pool, "replicas: 2", "replicas: 1")
	e.apply(t, ns, pool)
	dyn, err := dynamic.NewForConfig(e.cluster.RestConfig())
	require.NoError(t, err)
	pools := dyn.Resource(schema.GroupVersionResource{Group: "extensions.agents.x-k8s.io", Version: "v1beta1", Resource: "sandboxwarmpools"}).Namespace(ns)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		u, err := pools.Get(ctx, "sympozium-agents", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ready, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
		return ready >= 1, nil
	})
	require.NoError(t, err, "the warm pool never had a ready Sandbox")
	warmPods, err := e.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, warmPods.Items, 1)
	warm := warmPods.Items[0]
	require.Equal(t, corev1.PodRunning, warm.Status.Phase)

	created := time.Now()
	run := taskRun("warm", "keep", map[string]string{"SIM_DURATION": "2s", "SIM_MESSAGE": okReport}) +
		"  agentSandbox: {enabled: true, warmPoolRef: sympozium-agents}\n"
	e.apply(t, ns, run)
	r := e.waitFinished(t, ns, "warm", 2*time.Minute)
	t.Logf("created → Succeeded on the warm pod in %s", time.Since(created).Round(time.Millisecond))
	require.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, r.Status.Error)
	assert.Equal(t, warm.Name, r.Status.PodName, "the run ran on the pod started before it")
	assert.True(t, warm.Status.StartTime.Time.Before(created), "the warm pod started before the run")
	assert.Equal(t, "All 3 nodes Ready.", r.Status.Result)
	require.NotNil(t, r.Status.TokenUsage)
	assert.EqualValues(t, 2300, r.Status.TokenUsage.TotalTokens)
	logs := e.kubectl(t, "-n", ns, "logs", warm.Name, "-c", "agent")
	assert.Contains(t, logs, "warm: waiting for a task")
	assert.Contains(t, logs, "warm: got run warm")
	assert.Contains(t, logs, fmt.Sprintf("task: %s", "Check the health of the cluster and summarise it."))
}
