//go:build linux

package realnode

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/hack/ociimage"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestRunIdentityOnRealNode: a skill sidecar uses the run's projected
// token for real, from inside its pod: the API server lets it list
// ConfigMaps (its pack's rule) and forbids reading Secrets; the agent
// container has no token; once the run has ended, the same token is
// refused what it could do before.
func TestRunIdentityOnRealNode(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	allowed := "/api/v1/namespaces/" + ns + "/configmaps"
	forbidden := "/api/v1/namespaces/" + ns + "/secrets"
	e.apply(t, ns, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata: {name: kube}
spec:
  skills: [{name: kube, content: "# kubectl"}]
  sidecar:
    image: %s
    mountWorkspace: false
    env: [{name: SIM_API_PROBE, value: %q}]
    rbac: [{apiGroups: [""], resources: [configmaps], verbs: [list]}]
`, ociimage.TestAgentImage, allowed+" "+forbidden))
	e.kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "--timeout=60s", "skillpack/kube")
	run := taskRun("ident", "keep", map[string]string{"SIM_DURATION": "8s", "SIM_MESSAGE": okReport}) + "  skills: [{skillPackRef: kube}]\n"
	e.apply(t, ns, run)
	r := e.waitRun(t, ns, "ident", 2*time.Minute, "Running", func(r *v1alpha1.AgentRun) bool { return r.Status.Phase == v1alpha1.PhaseRunning })
	pod := r.Status.PodName
	sidecarLog := func() string {
		out, _ := e.kubectlErr("-n", ns, "logs", pod, "-c", "skill-kube")
		return out
	}
	require.Eventually(t, func() bool {
		l := sidecarLog()
		return strings.Contains(l, "api GET "+allowed+" 200") && strings.Contains(l, "api GET "+forbidden+" 403")
	}, time.Minute, 500*time.Millisecond, "the sidecar's token may list ConfigMaps and is Forbidden Secrets; its log:\n%s", sidecarLog())

	r = e.waitFinished(t, ns, "ident", 2*time.Minute)
	require.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, r.Status.Error)
	agentLog := e.kubectl(t, "-n", ns, "logs", pod, "-c", "agent")
	assert.Contains(t, agentLog, "service account token: none", "the agent container has no token")

	// The run ended (its Job and pod kept): the sidecar still runs, with
	// the same token, and is refused now.
	require.Eventually(t, func() bool {
		return strings.Contains(sidecarLog(), "api GET "+allowed+" 403")
	}, time.Minute, 500*time.Millisecond, "after the run, the token is refused; the sidecar's log:\n%s", sidecarLog())
	_, err := e.kube.BatchV1().Jobs(ns).Get(context.Background(), "ident", metav1.GetOptions{})
	assert.NoError(t, err, "the kept Job stays")
	t.Logf("the sidecar's log:\n%s", sidecarLog())
}
