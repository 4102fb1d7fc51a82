package phase

import (
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// t0 is every run's creation time; now is t0 + 1m unless a case says so.
var (
	t0  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(time.Minute)
)

var testConfig = Config{
	Workload: workload.Config{AgentImage: "agent:test", SandboxImage: "sandbox:test", DefaultTimeout: 10 * time.Minute, DeadlineSlack: 15 * time.Second},
	Grace:    30 * time.Second,
}

type runOpt func(*v1alpha1.AgentRun)

func newRun(opts ...runOpt) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "run-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst", AgentID: "default", SessionKey: "s", Task: "do it",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt"}, Mode: v1alpha1.ModeTask, Cleanup: v1alpha1.CleanupDelete},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withPhase(p v1alpha1.AgentRunPhase) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Status.Phase = p }
}
func withJobName() runOpt {
	return func(r *v1alpha1.AgentRun) { r.Status.JobName = naming.JobName(r.Name) }
}
func withPodName(n string) runOpt { return func(r *v1alpha1.AgentRun) { r.Status.PodName = n } }
func withStarted(t time.Time) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Status.StartedAt = new(metav1.NewTime(t)) }
}
func withCleanup(c v1alpha1.CleanupPolicy) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.Cleanup = c }
}
func withTimeout(d time.Duration) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.Timeout = &metav1.Duration{Duration: d} }
}
func withParent(name string, depth int32) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.Parent = &v1alpha1.ParentRef{RunName: name, SessionKey: "ps", SpawnDepth: depth}
	}
}
func withOwner(p *v1alpha1.AgentRun) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.OwnerReferences = append(r.OwnerReferences, metav1.OwnerReference{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun", Name: p.Name, UID: p.UID})
	}
}
func withMode(m v1alpha1.AgentRunMode) runOpt { return func(r *v1alpha1.AgentRun) { r.Spec.Mode = m } }
func withCondition(typ string, st metav1.ConditionStatus, reason string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason,
			Message: "m", ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(t0)})
	}
}

// admitted is the status the first sync writes.
func admitted() runOpt {
	return func(r *v1alpha1.AgentRun) {
		withPhase(v1alpha1.PhasePending)(r)
		withJobName()(r)
		r.Status.ObservedGeneration = r.Generation
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionAdmitted,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonJobCreated, Message: "Job run created",
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(t0)})
	}
}

// running is the status after the agent started.
func running() runOpt {
	return func(r *v1alpha1.AgentRun) {
		admitted()(r)
		r.Status.Phase = v1alpha1.PhaseRunning
		r.Status.PodName = "run-pod"
		r.Status.StartedAt = new(metav1.NewTime(t0.Add(5 * time.Second)))
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionRunning,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonStarted, Message: "agent container started in pod run-pod",
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(t0.Add(5 * time.Second))})
	}
}

func newInstance(opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
	i := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "ns", UID: "inst-uid"}}
	for _, o := range opts {
		o(i)
	}
	return i
}

func withLimits(depth, concurrent, children int32) func(*v1alpha1.SympoziumInstance) {
	return func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Agents.Default.Subagents = v1alpha1.SubagentLimits{MaxDepth: &depth, MaxConcurrent: &concurrent, MaxChildrenPerAgent: &children}
	}
}

// jobFor is the Job the machine creates for run, as the cache returns it.
func jobFor(run *v1alpha1.AgentRun, opts ...func(*batchv1.Job)) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: naming.JobName(run.Name), Namespace: run.Namespace, UID: "job-uid",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}}}
	for _, o := range opts {
		o(j)
	}
	return j
}

func jobCond(typ batchv1.JobConditionType, reason string) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: "m"})
	}
}

type podOpt func(*corev1.Pod)

func newPod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "run-pod", Namespace: "ns", UID: types.UID("pod-uid"),
		CreationTimestamp: metav1.NewTime(t0.Add(2 * time.Second)),
		// As the workload labels its pods (workload.Labels).
		Labels:          map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelAgentRun: "run"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "run", UID: "job-uid", Controller: new(true)}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func containerState(name string, s corev1.ContainerState) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: name, State: s})
	}
}

func agentRunning(at time.Time) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		containerState(v1alpha1.AgentContainerName, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}})(p)
	}
}

func agentExited(code int32, msg string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodSucceeded
		reason := "Completed"
		if code != 0 {
			p.Status.Phase = corev1.PodFailed
			reason = "Error"
		}
		containerState(v1alpha1.AgentContainerName, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, Message: msg,
			StartedAt: metav1.NewTime(t0.Add(5 * time.Second)), FinishedAt: metav1.NewTime(t0.Add(50 * time.Second))}})(p)
	}
}

func agentWaiting(reason string) podOpt {
	return containerState(v1alpha1.AgentContainerName, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "details"}})
}

func sidecarRunning() podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		containerState("sandbox", corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}})(p)
	}
}

func podCond(typ corev1.PodConditionType, st corev1.ConditionStatus, reason, msg string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: typ, Status: st, Reason: reason, Message: msg})
	}
}

type batchJob = batchv1.Job
