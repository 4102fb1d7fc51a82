package agentrun

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestKeepLogOfFailedRuns: a run that fails now with cleanup: delete keeps
// the end of its agent's log in <run>-log (owned by the run) before its Job
// goes; a successful run, a keep run and a finished run write nothing more.
func TestKeepLogOfFailedRuns(t *testing.T) {
	long := strings.Repeat("x", 2*KeptLogBytes) + "\nlast line: tool failed\n"
	cases := map[string]struct {
		exit     int32
		message  string
		cleanup  v1alpha1.CleanupPolicy
		logs     *fakeLogs
		wantKube []string
		wantTail string
	}{
		"failed, cleanup delete: the log tail is kept, then the Job deleted": {
			exit: 3, message: reportJSON, logs: &fakeLogs{tail: long},
			wantKube: []string{"create configmaps ns/run-log", "delete jobs ns/run"},
			wantTail: long[len(long)-KeptLogBytes:],
		},
		"failed without a report: the tail read for the marker is reused": {
			exit: 3, message: "", logs: &fakeLogs{tail: "agent: boom\n"},
			wantKube: []string{"create configmaps ns/run-log", "delete jobs ns/run"},
			wantTail: "agent: boom\n",
		},
		"failed, the log cannot be read: the outcome is recorded all the same": {
			exit: 3, message: reportJSON, logs: &fakeLogs{err: errors.New("kubelet unreachable")},
			wantKube: []string{"delete jobs ns/run"},
		},
		"failed, cleanup keep: the pod keeps its log": {
			exit: 3, message: reportJSON, cleanup: v1alpha1.CleanupKeep, logs: &fakeLogs{tail: "agent: boom\n"},
			wantKube: []string{"patch jobs ns/run", "patch pods ns/run-pod"}, // retired: they leave the caches
		},
		"succeeded: no read, no write beyond the status and the delete": {
			exit: 0, message: reportJSON, logs: &fakeLogs{tail: "agent: ok\n"},
			wantKube: []string{"delete jobs ns/run"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, withLogs(tc.logs))
			opts := []runOpt{withStatus(runningStatus("run", "run-pod"))}
			if tc.cleanup != "" {
				opts = append(opts, withCleanup(tc.cleanup))
			}
			run := newRun("run", opts...)
			job := jobOf(run, "job-uid")
			f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentExited(tc.exit, tc.message)))

			require.NoError(t, f.sync("run"))

			assert.Equal(t, tc.wantKube, append([]string(nil), describe(f.kubeWrites())...), "in order: the log is kept before the delete")
			if tc.exit == 0 {
				assert.Empty(t, tc.logs.calls, "a successful run's log is not read")
			}
			if tc.wantTail != "" {
				cm, err := f.kube.CoreV1().ConfigMaps(testNS).Get(context.Background(), "run-log", metav1.GetOptions{})
				require.NoError(t, err)
				assert.Equal(t, tc.wantTail, cm.Data[KeptLogKey])
				assert.True(t, metav1.IsControlledBy(cm, f.trackedRun("run")), "owned by the run")
				assert.Equal(t, "run-pod", cm.Annotations["sympozium.ai/pod"])
			}
			// The next pass (status written, Job gone) keeps nothing more.
			f.refresh()
			f.clearActions()
			require.NoError(t, f.sync("run"))
			for _, a := range describe(f.kubeWrites()) {
				assert.NotContains(t, a, "configmaps", "a second pass writes the log again")
			}
		})
	}
}

// TestKeepLogAlreadyExists: a controller killed after keeping the log but
// before the status write decides the same failure again; the existing
// ConfigMap is adopted as it is.
func TestKeepLogAlreadyExists(t *testing.T) {
	f := newFixture(t, withLogs(&fakeLogs{tail: "second read\n"}))
	run := newRun("run", withStatus(runningStatus("run", "run-pod")))
	job := jobOf(run, "job-uid")
	kept := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "run-log", Namespace: testNS}, Data: map[string]string{KeptLogKey: "first read\n"}}
	f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentExited(3, reportJSON)))
	f.addToTracker(kept)
	require.NoError(t, f.sync("run"))
	assert.Equal(t, v1alpha1.PhaseFailed, f.trackedRun("run").Status.Phase)
	cm, err := f.kube.CoreV1().ConfigMaps(testNS).Get(context.Background(), "run-log", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "first read\n", cm.Data[KeptLogKey])
}

// TestPlainSuccessfulRunWrites counts every API write of a plain run from
// creation to Succeeded, with log reading on and the default retry budget:
// Job create, Pending, Running, Succeeded, Job delete. Neither the attempt
// count (written with the transitions) nor the kept log (failures only)
// adds one.
func TestPlainSuccessfulRunWrites(t *testing.T) {
	logs := &fakeLogs{tail: "agent: ok\n"}
	f := newFixture(t, withLogs(logs))
	f.add(newInstance("inst"), newRun("run"))
	var all []string
	step := func() {
		f.clearActions()
		require.NoError(t, f.sync("run"))
		all = append(all, describe(append(f.clientWrites(), f.kubeWrites()...))...)
		f.refresh()
	}
	step() // Job created, Pending written
	job, err := f.trackedJob("run")
	require.NoError(t, err)
	job.UID = "job-uid"
	f.update(job)
	pod := podOf(job, "run-pod", agentRunning(t0.Add(5*time.Second)))
	f.add(pod)
	step() // Running
	f.update(podOf(job, "run-pod", agentExited(0, reportJSON)))
	step() // Succeeded, Job deleted
	step() // nothing more
	assert.Len(t, all, 5, "writes of a plain successful run: %v", all)
	assert.Equal(t, int32(1), f.trackedRun("run").Status.Attempts)
	assert.Equal(t, v1alpha1.PhaseSucceeded, f.trackedRun("run").Status.Phase)
	assert.Empty(t, logs.calls)
}
