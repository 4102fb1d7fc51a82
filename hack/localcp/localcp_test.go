package localcp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// testWriter sends progress lines to t.Log.
type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSmoke starts a cluster and checks the simulated agent behaviours. The
// first run builds the binaries (FirstBuildEstimate on 2 cores: use -timeout 40m);
// afterwards it takes well under a minute.
func TestSmoke(t *testing.T) {
	if testing.Short() || os.Getenv("SYMPOZIUM_E2E") != "1" {
		t.Skip("starts a real control plane: runs with SYMPOZIUM_E2E=1 (make test and make verify set it), not with -short")
	}
	log := &testWriter{t: t}
	bin, err := EnsureBinaries(t.Context(), log)
	if err != nil {
		t.Fatal(err)
	}

	// A budget for the whole smoke test, cluster start included (its steps
	// wait up to 60s each): generous, for a loaded 2-core machine; no step
	// measures a promise.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := Start(ctx, Options{Dir: dir, Nodes: 1, AuditLog: true, Log: log, BinDir: bin})
	if err != nil {
		t.Fatal(err)
	}
	pids := c.PIDs()
	stopped := false
	t.Cleanup(func() {
		if t.Failed() {
			for name := range pids {
				t.Logf("--- tail of %s.log ---\n%s", name, (&process{logPath: c.LogPath(name)}).logTail(15))
			}
		}
		if !stopped {
			_ = c.Stop()
		}
	})
	t.Logf("cluster ready in %s", c.StartupDuration)

	client, err := kubernetes.NewForConfig(c.RestConfig())
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version = %q, want v1.37.2", v.GitVersion)
	}

	const ns = "default"
	t.Run("agent exits, sidecar keeps running", func(t *testing.T) {
		job := newJob("agent-fail",
			corev1.Container{Name: "agent", Image: "agent:sim", Env: []corev1.EnvVar{
				{Name: "SIM_EXIT_CODE", Value: "3"},
				{Name: "SIM_MESSAGE", Value: `{"status":"error"}`},
				{Name: "SIM_DURATION", Value: "500ms"},
			}},
			corev1.Container{Name: "sidecar", Image: "sidecar:sim"},
		)
		if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(ctx, t, client, ns, "job-name="+job.Name, func(p *corev1.Pod) bool {
			s := containerStatus(p, "agent")
			return s != nil && s.State.Terminated != nil
		})
		agent := containerStatus(pod, "agent").State.Terminated
		if agent.ExitCode != 3 || agent.Message != `{"status":"error"}` || agent.Reason != "Error" {
			t.Errorf("agent terminated = exitCode %d, reason %q, message %q; want 3, Error, {\"status\":\"error\"}", agent.ExitCode, agent.Reason, agent.Message)
		}
		if s := containerStatus(pod, "sidecar"); s == nil || s.State.Running == nil {
			t.Errorf("sidecar status = %+v, want running", s)
		}
		if pod.Status.Phase != corev1.PodRunning {
			t.Errorf("pod phase = %s, want Running (the sidecar runs)", pod.Status.Phase)
		}
	})

	t.Run("agent alone succeeds", func(t *testing.T) {
		job := newJob("agent-ok", corev1.Container{Name: "agent", Image: "agent:sim", Env: []corev1.EnvVar{
			{Name: "SIM_MESSAGE", Value: `{"status":"ok"}`},
		}})
		if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(ctx, t, client, ns, "job-name="+job.Name, func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		})
		if pod.Status.Phase != corev1.PodSucceeded {
			t.Errorf("pod phase = %s, want Succeeded", pod.Status.Phase)
		}
		if s := containerStatus(pod, "agent"); s == nil || s.State.Terminated == nil || s.State.Terminated.Message != `{"status":"ok"}` {
			t.Errorf("agent status = %+v", s)
		}
		waitJobCondition(ctx, t, client, ns, job.Name, batchv1.JobComplete)
	})

	t.Run("plain job completes", func(t *testing.T) {
		job := newJob("plain", corev1.Container{Name: "main", Image: "main:sim"})
		if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitJobCondition(ctx, t, client, ns, job.Name, batchv1.JobComplete)
	})

	t.Run("waiting and long-running pods stay so", func(t *testing.T) {
		long := newJob("agent-long", corev1.Container{Name: "agent", Image: "agent:sim", Env: []corev1.EnvVar{
			{Name: "SIM_DURATION", Value: "1h"},
		}})
		if _, err := client.BatchV1().Jobs(ns).Create(ctx, long, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pull-error"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "main", Image: "does-not-exist:sim", Env: []corev1.EnvVar{
					{Name: "SIM_WAITING_REASON", Value: "ErrImagePull"},
					{Name: "SIM_WAITING_MESSAGE", Value: "pull access denied"},
				},
			}}},
		}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := waitPod(ctx, t, client, ns, "", func(p *corev1.Pod) bool {
			if p.Name != pod.Name {
				return false
			}
			s := containerStatus(p, "main")
			return s != nil && s.State.Waiting != nil
		})
		waitPod(ctx, t, client, ns, "job-name="+long.Name, func(p *corev1.Pod) bool {
			s := containerStatus(p, "agent")
			return s != nil && s.State.Running != nil
		})
		// They must stay that way. kwok's stages are timers on each pod and
		// nothing marks that one did not fire, so this absence is checked
		// over an explicit window, polled, failing at the first change.
		stays(ctx, t, 2*time.Second, func() (bool, string) {
			l, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + long.Name})
			if err != nil || len(l.Items) != 1 {
				return true, "" // a failed read is not a change: look again
			}
			if s := containerStatus(&l.Items[0], "agent"); s == nil || s.State.Running == nil || l.Items[0].Status.Phase != corev1.PodRunning {
				return false, fmt.Sprintf("agent with SIM_DURATION=1h: phase %s, status %+v", l.Items[0].Status.Phase, s)
			}
			p, err := client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return true, ""
			}
			if s := containerStatus(p, "main"); s == nil || s.State.Waiting == nil || p.Status.Phase != corev1.PodPending {
				return false, fmt.Sprintf("waiting pod: phase %s, status %+v", p.Status.Phase, s)
			}
			return true, ""
		})
		longPod := waitPod(ctx, t, client, ns, "job-name="+long.Name, func(*corev1.Pod) bool { return true })
		if s := containerStatus(longPod, "agent"); s == nil || s.State.Running == nil || longPod.Status.Phase != corev1.PodRunning {
			t.Errorf("agent with SIM_DURATION=1h: phase %s, status %+v; want Running, running", longPod.Status.Phase, s)
		}
		if got, err = client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		w := containerStatus(got, "main").State.Waiting
		if w == nil || w.Reason != "ErrImagePull" || w.Message != "pull access denied" {
			t.Errorf("waiting state = %+v, want ErrImagePull / pull access denied", containerStatus(got, "main").State)
		}
		if got.Status.Phase != corev1.PodPending {
			t.Errorf("pod phase = %s, want Pending", got.Status.Phase)
		}
	})

	t.Run("an evicted pod stays until its Job has counted it", func(t *testing.T) {
		// The Job controller is paused while the pod is evicted: kwok
		// kills the agent (137, Failed) and makes the kubelet's final
		// delete, and the pod must then still be there with the Job's
		// tracking finalizer, as on a real node. Stages that cleared the
		// finalizers let a loaded Job controller miss the failure: the
		// Job replaced the pod without counting it.
		job := newJob("evicted", corev1.Container{Name: "agent", Image: "agent:sim", Env: []corev1.EnvVar{{Name: "SIM_DURATION", Value: "1h"}}})
		job.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
			Action:          batchv1.PodFailurePolicyActionCount,
			OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}},
		}}}
		if _, err := client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := waitPod(ctx, t, client, ns, "job-name=evicted", func(p *corev1.Pod) bool {
			s := containerStatus(p, "agent")
			return s != nil && s.State.Running != nil && slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer)
		})
		kcm := pids["kube-controller-manager"]
		if err := syscall.Kill(kcm, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				if err := syscall.Kill(kcm, syscall.SIGCONT); err != nil {
					t.Error(err)
				}
			}
		}
		defer resume()
		if err := client.CoreV1().Pods(ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
		err := poll(ctx, 30*time.Second, func() (bool, string, error) {
			p, err := client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, "", fmt.Errorf("pod %s was removed before the Job controller counted it", pod.Name)
			}
			if err != nil {
				return false, err.Error(), nil
			}
			final := p.DeletionGracePeriodSeconds != nil && *p.DeletionGracePeriodSeconds == 0
			return p.Status.Phase == corev1.PodFailed && final, fmt.Sprintf("phase %s, grace %v", p.Status.Phase, p.DeletionGracePeriodSeconds), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if p, err := client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || !slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) {
			t.Fatalf("after the final delete, pod = %v, %v; want it kept with the Job's tracking finalizer", p, err)
		}
		resume()
		// The Job counts the disruption against backoffLimit 0 and fails;
		// no second pod.
		waitJobCondition(ctx, t, client, ns, "evicted", batchv1.JobFailed)
		got, err := client.BatchV1().Jobs(ns).Get(ctx, "evicted", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Failed != 1 || got.Status.Succeeded != 0 {
			t.Errorf("Job status failed %d, succeeded %d; want 1, 0", got.Status.Failed, got.Status.Succeeded)
		}
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=evicted"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Name != pod.Name {
				t.Errorf("the Job started a second pod %s", p.Name)
			}
		}
	})

	t.Run("deleting a job removes its pods", func(t *testing.T) {
		bg := metav1.DeletePropagationBackground
		if err := client.BatchV1().Jobs(ns).Delete(ctx, "agent-fail", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
			t.Fatal(err)
		}
		if err := poll(ctx, 30*time.Second, func() (bool, string, error) {
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=agent-fail"})
			if err != nil {
				return false, err.Error(), nil
			}
			return len(pods.Items) == 0, fmt.Sprintf("%d pods left", len(pods.Items)), nil
		}); err != nil {
			t.Error(err)
		}
	})

	audit, err := os.ReadFile(c.AuditLogPath())
	if err != nil || !bytes.Contains(audit, []byte(`"verb":"create"`)) {
		t.Errorf("audit log %s: %v, %d bytes, no create events", c.AuditLogPath(), err, len(audit))
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for name, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	if left := processesMentioning(dir); len(left) > 0 {
		t.Errorf("processes still running with %s on their command line: %v", dir, left)
	}
	if _, err := os.Stat(filepath.Join(dir, pidsFile)); !os.IsNotExist(err) {
		t.Errorf("pids file left after Stop: %v", err)
	}
}

// stays checks cond every 100ms for the window d and fails the test at the
// first violation. It is for absences nothing marks; prefer a condition.
func stays(ctx context.Context, t *testing.T, d time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	start := time.Now()
	for {
		if ok, why := cond(); !ok {
			t.Fatalf("changed after %s of a %s window: %s", time.Since(start).Round(time.Millisecond), d, why)
		}
		if time.Since(start) >= d {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func newJob(name string, containers ...corev1.Container) *batchv1.Job {
	var zero int32
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: containers},
			},
		},
	}
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func waitPod(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, selector string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	err := poll(ctx, 30*time.Second, func() (bool, string, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err.Error(), nil
		}
		var seen []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if cond(p) {
				found = p
				return true, "", nil
			}
			seen = append(seen, fmt.Sprintf("%s: %s %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses))
		}
		return false, fmt.Sprintf("pods %q: %v", selector, seen), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func waitJobCondition(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string, ct batchv1.JobConditionType) {
	t.Helper()
	err := poll(ctx, 30*time.Second, func() (bool, string, error) {
		job, err := client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, c := range job.Status.Conditions {
			if c.Type == ct && c.Status == corev1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("job %s status %+v", name, job.Status), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// processesMentioning lists the live processes whose command line contains s.
func processesMentioning(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if pidAlive(pid) && pidCmdlineContains(pid, s) {
			data, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(data), "\x00", " ")))
		}
	}
	return out
}
