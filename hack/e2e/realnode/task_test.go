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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/hack/realnode"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

const okReport = `{"status":"success","response":"All 3 nodes Ready.","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":2000}}`

// TestTaskSucceedsOnRealNode: the agent is a real container on the real
// node; its exit code and its report come from the kubelet (the
// termination message it wrote to /dev/termination-log), read by the
// controller running as a pod.
func TestTaskSucceedsOnRealNode(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	start := time.Now()
	e.apply(t, ns, taskRun("hello", "keep", map[string]string{"SIM_DURATION": "2s", "SIM_MESSAGE": okReport}))
	r := e.waitFinished(t, ns, "hello", 2*time.Minute)
	t.Logf("created → Succeeded in %s", time.Since(start).Round(time.Millisecond))
	require.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, "error: %s", r.Status.Error)
	assert.Equal(t, "All 3 nodes Ready.", r.Status.Result)
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 0, *r.Status.ExitCode)
	require.NotNil(t, r.Status.TokenUsage)
	assert.EqualValues(t, 1500, r.Status.TokenUsage.InputTokens)
	assert.EqualValues(t, 800, r.Status.TokenUsage.OutputTokens)
	assert.EqualValues(t, 2300, r.Status.TokenUsage.TotalTokens)
	assert.EqualValues(t, 5, r.Status.TokenUsage.ToolCalls)

	// It ran for real: on the real node, and the kubelet has its log and
	// the message it wrote.
	pod, err := e.kube.CoreV1().Pods(ns).Get(context.Background(), r.Status.PodName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, realnode.NodeName, pod.Spec.NodeName)
	var msg string
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "agent" && cs.State.Terminated != nil {
			msg = cs.State.Terminated.Message
			assert.Contains(t, cs.ContainerID, "containerd://")
		}
	}
	assert.Equal(t, okReport, msg, "the termination message the kubelet read")
	logs := e.kubectl(t, "-n", ns, "logs", r.Status.PodName, "-c", "agent")
	assert.Contains(t, logs, "agent: working for 2s")
	assert.Contains(t, logs, "__SYMPOZIUM_RESULT__"+okReport+"__SYMPOZIUM_END__")
}

// TestTaskFailsOnRealNodeKeepsLog: a failing agent's real exit code and
// error, and the end of its real log kept in ConfigMap <run>-log after its
// Job and pod are deleted (cleanup: delete), read by the controller through
// pods/log → kubelet.
func TestTaskFailsOnRealNodeKeepsLog(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	report := `{"status":"error","error":"the model endpoint answered 503"}`
	e.apply(t, ns, taskRun("broken", "delete", map[string]string{"SIM_DURATION": "1s", "SIM_EXIT_CODE": "3", "SIM_MESSAGE": report}))
	r := e.waitFinished(t, ns, "broken", 2*time.Minute)
	require.Equal(t, v1alpha1.PhaseFailed, r.Status.Phase)
	require.NotNil(t, r.Status.ExitCode)
	assert.EqualValues(t, 3, *r.Status.ExitCode)
	assert.Contains(t, r.Status.Error, "the model endpoint answered 503")
	cond := findCondition(r, "Failed")
	require.NotNil(t, cond)
	assert.Equal(t, "AgentFailed", cond.Reason)

	// The Job and its pod go; the log's end stays.
	e.waitGone(t, func(ctx context.Context) error {
		_, err := e.kube.BatchV1().Jobs(ns).Get(ctx, "broken", metav1.GetOptions{})
		return err
	})
	cm, err := e.kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "broken-log", metav1.GetOptions{})
	require.NoError(t, err, "the kept log")
	log := cm.Data["agent.log"]
	assert.Contains(t, log, "agent: working for 1s")
	assert.Contains(t, log, "agent: error: exiting with code 3")
	assert.Contains(t, log, report)
}

// TestReportOverTerminationLimitOnRealNode: the kubelet keeps at most 4096
// bytes of a termination message; a longer report is cut, and the
// controller finds it whole on the result line of the agent's real log.
func TestReportOverTerminationLimitOnRealNode(t *testing.T) {
	e := requireNode(t)
	ns := e.namespace(t)
	long := strings.Repeat("All nodes Ready. ", 400) // 6800 bytes
	report := fmt.Sprintf(`{"status":"success","response":%q,"metrics":{"inputTokens":7,"outputTokens":9}}`, long)
	e.apply(t, ns, taskRun("long", "keep", map[string]string{"SIM_DURATION": "1s", "SIM_MESSAGE": report}))
	r := e.waitFinished(t, ns, "long", 2*time.Minute)
	require.Equal(t, v1alpha1.PhaseSucceeded, r.Status.Phase, "error: %s", r.Status.Error)
	assert.Equal(t, long, r.Status.Result)
	require.NotNil(t, r.Status.TokenUsage)
	assert.EqualValues(t, 16, r.Status.TokenUsage.TotalTokens)
	pod, err := e.kube.CoreV1().Pods(ns).Get(context.Background(), r.Status.PodName, metav1.GetOptions{})
	require.NoError(t, err)
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "agent" {
			require.NotNil(t, cs.State.Terminated)
			assert.Less(t, len(cs.State.Terminated.Message), len(report), "the kubelet cut the message")
		}
	}
}

func findCondition(r *v1alpha1.AgentRun, typ string) *metav1.Condition {
	for i := range r.Status.Conditions {
		if r.Status.Conditions[i].Type == typ {
			return &r.Status.Conditions[i]
		}
	}
	return nil
}

// waitGone waits until get returns NotFound.
func (e *env) waitGone(t *testing.T, get func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := get(context.Background())
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still there after 1m (last error %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
