//go:build linux

package realnode

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// serverPack is a SkillPack whose sidecar requires a server: the test
// agent serving /healthz on listen, its declared port 8080, which the
// kubelet probes.
func serverPack(name, listen string) string {
	return fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata: {name: %s}
spec:
  skills: [{name: web, content: "# Web"}]
  sidecar:
    image: %s
    requiresServer: true
    ports: [{name: web, containerPort: 8080}]
    env: [{name: SIM_HTTP_PORT, value: %q}]
`, name, ociimage.TestAgentImage, listen)
}

func serverRun(name, pack, timeout string) string {
	return fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: AgentRun
metadata: {name: %s}
spec:
  instanceRef: my-agent
  agentId: default
  sessionKey: session-%s
  task: Answer questions over HTTP.
  model: {provider: anthropic, model: claude-sonnet-4-20250514}
  mode: server
  timeout: %s
  skills: [{skillPackRef: %s}]
`, name, name, timeout, pack)
}

// TestServerServingByRealProbe: a server run is Serving once the kubelet's
// readiness probe on its server's /healthz passes; one whose server never
// answers there fails ServerNotReady when its timeout passes.
func TestServerServingByRealProbe(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	e.apply(t, ns, serverPack("web", "8080"))
	e.apply(t, ns, serverPack("deaf", "9090"))
	e.kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "--timeout=60s", "skillpack/web", "skillpack/deaf")
	start := time.Now()
	e.apply(t, ns, serverRun("srv", "web", "2m"))
	e.apply(t, ns, serverRun("deaf", "deaf", "25s"))
	r := e.waitRun(t, ns, "srv", 2*time.Minute, "Serving", func(r *v1alpha1.AgentRun) bool { return r.Status.Phase == v1alpha1.PhaseServing })
	t.Logf("created → Serving in %s", time.Since(start).Round(time.Millisecond))
	pods, err := e.kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: v1alpha1.LabelAgentRun + "=srv"})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1)
	p := pods.Items[0]
	assert.True(t, podReady(&p))
	require.NotNil(t, p.Spec.Containers[0].ReadinessProbe)
	assert.Equal(t, "/healthz", p.Spec.Containers[0].ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "ok\n", httpGet(t, fmt.Sprintf("http://%s:8080/healthz", p.Status.PodIP)))
	assert.Equal(t, "srv-server", r.Status.ServiceName)

	d := e.waitFinished(t, ns, "deaf", 2*time.Minute)
	require.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
	c := findCondition(d, "Failed")
	require.NotNil(t, c)
	assert.Equal(t, v1alpha1.ReasonServerNotReady, c.Reason)
	t.Logf("never ready: %s", d.Status.Error)

	// Deleting a serving run records Succeeded and removes its server.
	e.kubectl(t, "-n", ns, "delete", "agentrun", "srv", "--wait=false")
	e.waitGone(t, func(ctx context.Context) error {
		_, err := e.kube.AppsV1().Deployments(ns).Get(ctx, "srv-server", metav1.GetOptions{})
		return err
	})
}

// TestCancelSendsSIGTERM: cancelling a running run deletes its workload;
// the kubelet stops the agent with SIGTERM (the agent says so in its
// termination message and exits 143) and the run ends Cancelled.
func TestCancelSendsSIGTERM(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	w, err := e.kube.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	defer w.Stop()
	e.apply(t, ns, taskRun("stopme", "delete", map[string]string{"SIM_DURATION": "10m", "SIM_MESSAGE": okReport}))
	e.waitRun(t, ns, "stopme", 2*time.Minute, "Running", func(r *v1alpha1.AgentRun) bool { return r.Status.Phase == v1alpha1.PhaseRunning })
	cancelled := time.Now()
	e.kubectl(t, "-n", ns, "patch", "agentrun", "stopme", "--type=merge", "-p", `{"spec":{"cancel":true}}`)
	r := e.waitFinished(t, ns, "stopme", time.Minute)
	require.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase)
	c := findCondition(r, "Failed")
	require.NotNil(t, c)
	assert.Equal(t, v1alpha1.ReasonCancelled, c.Reason)

	// The agent's last status, as the kubelet reported it before the pod went.
	var term *corev1.ContainerStateTerminated
	timeout := time.After(time.Minute)
	for term == nil {
		select {
		case ev, ok := <-w.ResultChan():
			require.True(t, ok, "watch closed")
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Name == "agent" && cs.State.Terminated != nil {
					term = cs.State.Terminated
				}
			}
		case <-timeout:
			t.Fatal("the agent container never showed as terminated")
		}
	}
	t.Logf("cancel → agent exited %d after %s", term.ExitCode, time.Since(cancelled).Round(time.Millisecond))
	assert.EqualValues(t, 143, term.ExitCode, "the agent ended on SIGTERM")
	assert.Contains(t, term.Message, "terminated by SIGTERM")
}

// TestMissingSecretOnRealNode: the instance's API key Secret does not
// exist; the kubelet cannot start the agent (CreateContainerConfigError)
// and the run fails ConfigError after the controller's grace (5s here).
func TestMissingSecretOnRealNode(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	e.kubectl(t, "-n", ns, "delete", "secret", "anthropic-key")
	e.apply(t, ns, taskRun("nokey", "delete", map[string]string{"SIM_MESSAGE": okReport}))
	r := e.waitFinished(t, ns, "nokey", 2*time.Minute)
	require.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase)
	c := findCondition(r, "Failed")
	require.NotNil(t, c)
	assert.Equal(t, v1alpha1.ReasonConfigError, c.Reason)
	assert.Contains(t, r.Status.Error, "anthropic-key")
}
