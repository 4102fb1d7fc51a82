//go:build linux

package realnode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestControllerDeploymentOnRealNode: the manifests' Deployment runs as two
// real pods under the manifests' ServiceAccount and RBAC: both answer the
// kubelet's probes (Ready), they serve metrics, one holds the leader Lease;
// killing the leader's container (SIGKILL through containerd, so it
// releases nothing) hands the Lease to a new holder, and every run, those
// running across the failover and those created while no one led, ends
// Succeeded with one Job and one pod.
func TestControllerDeploymentOnRealNode(t *testing.T) {
	e := requireNode(t)
	ctx := context.Background()
	// The pod that wins the Lease starts its informers and is not Ready
	// until they have synced, which can be after the rollout finished
	// with both pods Ready as standbys: wait for it (a condition).
	e.waitControllerPodsReady(t, "both controller pods Ready")
	pods := e.controllerPods(t)
	require.Len(t, pods, 2)
	for _, p := range pods {
		assert.Equal(t, "sympozium-controller", p.Spec.ServiceAccountName)
		assert.True(t, podReady(&p), "pod %s Ready: its readiness probe (/readyz) answered the kubelet", p.Name)
		// Metrics, served on the pod's own address.
		body := httpGet(t, fmt.Sprintf("http://%s:8080/metrics", p.Status.PodIP))
		assert.Contains(t, body, "sympozium_api_requests_total", "metrics of %s", p.Name)
		assert.Contains(t, body, "go_goroutines", "metrics of %s", p.Name)
		assert.Contains(t, httpGet(t, fmt.Sprintf("http://%s:8081/healthz", p.Status.PodIP)), "ok")
	}
	leader := e.leader(t)
	leaderPod := strings.SplitN(leader, "_", 2)[0]
	t.Logf("leader %s", leader)

	ns := e.namespace(t)
	// Count the pods created per run while the test runs.
	w, err := e.kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	created := map[string]int{}
	var mu sync.Mutex
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				mu.Lock()
				created[p.Labels["job-name"]]++
				mu.Unlock()
			}
		}
	}()

	// Runs that are running when the leader dies.
	var names []string
	for i := range 4 {
		name := fmt.Sprintf("before-%d", i)
		names = append(names, name)
		e.apply(t, ns, taskRun(name, "keep", map[string]string{"SIM_DURATION": "15s", "SIM_MESSAGE": okReport}))
	}
	for _, name := range names {
		e.waitRun(t, ns, name, 2*time.Minute, "Running", func(r *v1alpha1.AgentRun) bool { return r.Status.Phase == v1alpha1.PhaseRunning })
	}

	// Kill the leader's container.
	var containerID string
	for _, p := range pods {
		if p.Name == leaderPod {
			containerID = strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
		}
	}
	require.NotEmpty(t, containerID, "the leader %s is none of the pods", leader)
	killed := time.Now()
	out, err := e.node.Ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", containerID)
	require.NoError(t, err, out)

	// Runs created while nobody leads.
	for i := range 4 {
		name := fmt.Sprintf("during-%d", i)
		names = append(names, name)
		e.apply(t, ns, taskRun(name, "keep", map[string]string{"SIM_DURATION": "2s", "SIM_MESSAGE": okReport}))
	}

	var next string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		next = e.leaderOrEmpty()
		return next != "" && next != leader, nil
	})
	require.NoError(t, err, "no new leader after the leader's container was killed")
	t.Logf("new leader %s, %s after the kill (the Lease lasts 15s)", next, time.Since(killed).Round(time.Millisecond))

	for _, name := range names {
		r := e.waitFinished(t, ns, name, 3*time.Minute)
		assert.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, "run %s: %s", name, r.Status.Error)
		assert.Equal(t, "All 3 nodes Ready.", r.Status.Result, "run %s", name)
		// The Job controller counts the pod a moment after the run read
		// the agent's exit.
		var job *batchv1.Job
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			j, err := e.kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			job = j
			return err == nil && j.Status.Succeeded+j.Status.Failed > 0, nil
		})
		require.NoError(t, err, "run %s: its Job never counted a finished pod", name)
		assert.EqualValues(t, 1, job.Status.Succeeded, "run %s", name)
		assert.EqualValues(t, 0, job.Status.Failed, "run %s", name)
	}
	jobs, err := e.kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, jobs.Items, len(names), "one Job per run")
	w.Stop()
	<-watching
	mu.Lock()
	defer mu.Unlock()
	for _, name := range names {
		assert.Equal(t, 1, created[name], "pods created for run %s", name)
	}

	// The killed container came back (restartPolicy Always) and the
	// Deployment has both pods Ready again.
	e.waitControllerPodsReady(t, "both controller pods Ready again")
	for _, p := range e.controllerPods(t) {
		if p.Name == leaderPod {
			assert.GreaterOrEqual(t, p.Status.ContainerStatuses[0].RestartCount, int32(1), "the killed container restarted")
		}
	}
}

// waitControllerPodsReady waits (2 minutes at most) until both controller
// pods are Ready.
func (e *env) waitControllerPodsReady(t *testing.T, msg string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		ps := e.controllerPods(t)
		ready := 0
		for i := range ps {
			if podReady(&ps[i]) {
				ready++
			}
		}
		return ready == 2, nil
	})
	require.NoError(t, err, msg)
}

func (e *env) controllerPods(t *testing.T) []corev1.Pod {
	t.Helper()
	list, err := e.kube.CoreV1().Pods(controllerNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: controllerSelector})
	require.NoError(t, err)
	return list.Items
}

func (e *env) leaderOrEmpty() string {
	l, err := e.kube.CoordinationV1().Leases(controllerNamespace).Get(context.Background(), controllerName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func (e *env) leader(t *testing.T) string {
	t.Helper()
	var id string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		id = e.leaderOrEmpty()
		return id != "", nil
	})
	require.NoError(t, err, "no leader")
	return id
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// httpGet fetches a pod's endpoint from the host, through the node's bridge.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, b)
	return string(b)
}
