package phase_test

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var trimT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func trimRun() *v1alpha1.AgentRun {
	return &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "run-uid", Generation: 1, CreationTimestamp: metav1.NewTime(trimT0)},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst", AgentID: "a", SessionKey: "s", Task: "t",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}, Timeout: &metav1.Duration{Duration: 10 * time.Minute}},
		Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending, JobName: "r", ObservedGeneration: 1,
			Conditions: []metav1.Condition{{Type: v1alpha1.ConditionAdmitted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonJobCreated,
				Message: "Job r created", ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(trimT0)}}},
	}
}

func trimJobOf(run *v1alpha1.AgentRun, conds ...batchv1.JobCondition) *batchv1.Job {
	yes := true
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "job-uid", ResourceVersion: "7", CreationTimestamp: metav1.NewTime(trimT0),
			Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelAgentRun: "r",
				"batch.kubernetes.io/controller-uid": "job-uid", "controller-uid": "job-uid", "job-name": "r", "batch.kubernetes.io/job-name": "r"},
			Annotations:     map[string]string{"batch.kubernetes.io/job-tracking": "", workload.AnnotationSpecHash: "abc"},
			Finalizers:      []string{"example.com/f"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun", Name: run.Name, UID: run.UID, Controller: &yes}}},
		Spec: batchv1.JobSpec{BackoffLimit: new(int32(0)), ActiveDeadlineSeconds: new(int64(615)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "job-uid"}}},
		Status: batchv1.JobStatus{Active: 1, StartTime: new(metav1.NewTime(trimT0)), Conditions: conds,
			UncountedTerminatedPods: &batchv1.UncountedTerminatedPods{Succeeded: []types.UID{"p"}}},
	}
}

func trimPodOf(job *batchv1.Job, phase corev1.PodPhase, agent corev1.ContainerState, extra ...func(*corev1.Pod)) *corev1.Pod {
	yes := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "r-abcde", GenerateName: "r-", Namespace: "ns", UID: "pod-uid", ResourceVersion: "9",
			CreationTimestamp: metav1.NewTime(trimT0.Add(time.Second)),
			Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelAgentRun: "r",
				v1alpha1.LabelComponent: "agent", "job-name": "r", "controller-uid": "job-uid"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/default-container": "agent"},
			Finalizers:      []string{"batch.kubernetes.io/job-tracking"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "agent", Image: "img"}}},
		Status: corev1.PodStatus{
			Phase: phase, HostIP: "10.0.0.1", PodIP: "10.1.0.1", PodIPs: []corev1.PodIP{{IP: "10.1.0.1"}}, QOSClass: corev1.PodQOSBestEffort,
			StartTime: new(metav1.NewTime(trimT0.Add(time.Second))),
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "skill-sidecar", Image: "side", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(trimT0)}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", Image: "img", ImageID: "sha256:x", ContainerID: "containerd://y",
				Ready: agent.Running != nil, Started: new(agent.Running != nil), State: agent}},
		},
	}
	for _, f := range extra {
		f(p)
	}
	return p
}

// The trimmed Job and pod lead the phase machine to exactly the decisions
// the full objects do.
func TestTrimmedChildrenDecideAlike(t *testing.T) {
	run := trimRun()
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(trimT0.Add(2 * time.Second))}}
	report := `{"status":"success","response":"done","metrics":{"inputTokens":3,"outputTokens":4}}`
	exited := func(code int32, msg string) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed", Message: msg,
			StartedAt: metav1.NewTime(trimT0.Add(2 * time.Second)), FinishedAt: metav1.NewTime(trimT0.Add(5 * time.Second))}}
	}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "back-off pulling"}}
	job := trimJobOf(run)
	cases := map[string]struct {
		job   *batchv1.Job
		pod   *corev1.Pod
		now   time.Time
		phase v1alpha1.AgentRunPhase
	}{
		"running":           {job, trimPodOf(job, corev1.PodRunning, running), trimT0.Add(3 * time.Second), ""},
		"succeeded":         {job, trimPodOf(job, corev1.PodSucceeded, exited(0, report)), trimT0.Add(6 * time.Second), ""},
		"agent failed":      {job, trimPodOf(job, corev1.PodFailed, exited(3, report)), trimT0.Add(6 * time.Second), ""},
		"image pull, grace": {job, trimPodOf(job, corev1.PodPending, waiting), trimT0.Add(10 * time.Second), ""},
		"image pull, late":  {job, trimPodOf(job, corev1.PodPending, waiting), trimT0.Add(5 * time.Minute), ""},
		"unschedulable, timeout": {job, trimPodOf(job, corev1.PodPending, corev1.ContainerState{}, func(p *corev1.Pod) {
			p.Spec.NodeName = ""
			p.Status.ContainerStatuses = nil
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available"}}
		}), trimT0.Add(11 * time.Minute), ""},
		"evicted": {job, trimPodOf(job, corev1.PodFailed, running, func(p *corev1.Pod) {
			p.Status.Reason, p.Status.Message = "Evicted", "low on memory"
		}), trimT0.Add(time.Minute), ""},
		"disrupted": {job, trimPodOf(job, corev1.PodRunning, running, func(p *corev1.Pod) {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget,
				Status: corev1.ConditionTrue, Reason: "PreemptionByScheduler", Message: "preempted"})
		}), trimT0.Add(time.Minute), ""},
		"deleted": {job, trimPodOf(job, corev1.PodRunning, running, func(p *corev1.Pod) {
			p.DeletionTimestamp = new(metav1.NewTime(trimT0.Add(time.Minute)))
		}), trimT0.Add(time.Minute), ""},
		"job deadline exceeded": {trimJobOf(run, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
			Reason: batchv1.JobReasonDeadlineExceeded, Message: "Job was active longer than specified deadline"}),
			trimPodOf(job, corev1.PodRunning, running), trimT0.Add(time.Minute), ""},
		"running, recorded": {job, trimPodOf(job, corev1.PodRunning, running), trimT0.Add(3 * time.Second), v1alpha1.PhaseRunning},
		"succeeded, keep":   {job, trimPodOf(job, corev1.PodSucceeded, exited(0, report)), trimT0.Add(6 * time.Second), v1alpha1.PhaseSucceeded},
	}
	cfg := phase.Config{Workload: workload.Config{AgentImage: "img", DefaultTimeout: 10 * time.Minute}, Grace: time.Minute}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := run.DeepCopy()
			if tc.phase != "" {
				r.Status.Phase = tc.phase
				r.Status.PodName = tc.pod.Name
				r.Status.StartedAt = new(metav1.NewTime(trimT0.Add(2 * time.Second)))
			}
			full := phase.Observed{Run: r, Instance: &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "ns"}},
				Objects: phase.Objects{phase.KindJob: tc.job}, Pod: tc.pod, Config: cfg, Now: tc.now}
			trimmed := full
			trimmed.Objects = phase.Objects{phase.KindJob: asCached(t, tc.job).(*batchv1.Job)}
			trimmed.Pod = asCached(t, tc.pod).(*corev1.Pod)
			assert.Equal(t, phase.Next(full), phase.Next(trimmed))
		})
	}
}

// asCached returns obj as the informer cache holds it.
func asCached(t *testing.T, obj any) any {
	t.Helper()
	var cp any
	switch o := obj.(type) {
	case runtime.Object:
		cp = o.DeepCopyObject()
	case *phase.SandboxObject:
		// Already what the dynamic informers keep (stripUnstructured).
		c := *o
		c.ObjectMeta = *o.ObjectMeta.DeepCopy()
		cp = &c
	default:
		t.Fatalf("cannot copy %T", obj)
	}
	out, err := runcache.TrimForCache(cp)
	require.NoError(t, err)
	if f, ok := out.(*runcache.FinishedRun); ok {
		return f.AgentRun() // what the controllers read of the record
	}
	return out
}

// Every backend's lifecycle decides alike on its objects as the informer
// caches hold them (TrimForCache) and on the full objects.
func TestCachedObjectsDecideAlike(t *testing.T) {
	for _, step := range phase.LifecycleSteps() {
		t.Run(step.Name, func(t *testing.T) {
			full := step.In()
			// The full objects carry what the API server adds and the
			// cache drops.
			full.Objects = maps.Clone(full.Objects)
			for kind, obj := range full.Objects {
				if o, ok := obj.(runtime.Object); ok {
					full.Objects[kind] = withBulk(o.DeepCopyObject().(metav1.Object))
				}
			}
			if full.Pod != nil {
				full.Pod = withBulk(full.Pod.DeepCopy()).(*corev1.Pod)
			}
			trimmed := full
			trimmed.Objects = phase.Objects{}
			for kind, obj := range full.Objects {
				trimmed.Objects[kind] = asCached(t, obj).(metav1.Object)
			}
			if full.Pod != nil {
				trimmed.Pod = asCached(t, full.Pod).(*corev1.Pod)
				require.False(t, apiequality.Semantic.DeepEqual(full.Pod, trimmed.Pod), "nothing was trimmed")
			}
			decideAlike(t, full, trimmed)
			// And the pass after, on what the first one wrote: a
			// finished run is cached compacted.
			d := phase.Next(full)
			decideAlike(t, phase.Applied(full, d), phase.Applied(trimmed, d))
		})
	}
}

// decideAlike checks that the run decides alike on full and on trimmed,
// whose run is taken as the informer cache holds it: a finished run
// compacted. Only the status differs then, and neither decision writes it
// (the controller writes a finished run's status only from a live read).
func decideAlike(t *testing.T, full, trimmed phase.Observed) {
	t.Helper()
	trimmed.Run = asCached(t, trimmed.Run).(*v1alpha1.AgentRun)
	df, dt := phase.Next(full), phase.Next(trimmed)
	if full.Run.Status.Phase.IsTerminal() {
		require.NotEqual(t, full.Run.Status, trimmed.Run.Status, "nothing was compacted")
		assert.Equal(t, full.Run.Status, df.Status, "a finished run's status is written")
		assert.Equal(t, trimmed.Run.Status, dt.Status, "a compacted run's status would be written")
		df.Status, dt.Status = v1alpha1.AgentRunStatus{}, v1alpha1.AgentRunStatus{}
	}
	assert.Equal(t, df, dt)
}

// withBulk adds to obj what the API server and other controllers add and
// the phase machine never reads.
func withBulk(obj metav1.Object) metav1.Object {
	obj.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate}})
	labels := maps.Clone(obj.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	labels["controller-uid"] = "x"
	obj.SetLabels(labels)
	annotations := maps.Clone(obj.GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[corev1.LastAppliedConfigAnnotation] = "{}"
	annotations["example.com/note"] = "bulk"
	obj.SetAnnotations(annotations)
	if p, ok := obj.(*corev1.Pod); ok {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "agent", Image: "img",
			Env: []corev1.EnvVar{{Name: "TASK", Value: "a long task"}}})
		p.Status.HostIP, p.Status.PodIP, p.Status.QOSClass = "10.0.0.1", "10.1.0.1", corev1.PodQOSBestEffort
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodInitialized, Status: corev1.ConditionTrue})
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Image, p.Status.ContainerStatuses[i].ImageID = "img", "sha256:x"
		}
	}
	return obj
}

// Trimming keeps identity, ownership and this controller's keys, and drops
// most of the bytes.
func TestTrimKeepsIdentityAndShrinks(t *testing.T) {
	run := trimRun()
	job := trimJobOf(run, batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue})
	pod := trimPodOf(job, corev1.PodSucceeded, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Message: "{}"}})
	tj, tp := asCached(t, job).(*batchv1.Job), asCached(t, pod).(*corev1.Pod)

	assert.Equal(t, map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelAgentRun: "r"}, tj.Labels)
	assert.Equal(t, map[string]string{workload.AnnotationSpecHash: "abc"}, tj.Annotations)
	assert.Equal(t, job.OwnerReferences, tj.OwnerReferences)
	assert.Equal(t, job.Status.Conditions, tj.Status.Conditions)
	assert.Equal(t, map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelAgentRun: "r", v1alpha1.LabelComponent: "agent"}, tp.Labels)
	assert.Nil(t, tp.Annotations)
	assert.Equal(t, pod.OwnerReferences, tp.OwnerReferences)
	assert.Equal(t, pod.Status.ContainerStatuses[0].State, tp.Status.ContainerStatuses[0].State)
	for _, c := range [][2]any{{job, tj}, {pod, tp}} {
		before, err := json.Marshal(c[0])
		require.NoError(t, err)
		after, err := json.Marshal(c[1])
		require.NoError(t, err)
		assert.Less(t, len(after), len(before)*2/3, "%s", after)
	}
}

// The failed pods a Job has seen but not yet counted in status.failed stay
// in the cached Job: without them, a disrupted pod gone from the cache
// looked lost while the Job was about to replace it.
func TestTrimKeepsUncountedFailures(t *testing.T) {
	run := trimRun()
	job := trimJobOf(run)
	job.Spec.BackoffLimit = new(int32(2))
	job.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Failed: []types.UID{"gone"}, Succeeded: []types.UID{"p"}}
	tj := asCached(t, job).(*batchv1.Job)
	assert.Equal(t, &batchv1.UncountedTerminatedPods{Failed: []types.UID{"gone"}}, tj.Status.UncountedTerminatedPods)

	r := run.DeepCopy()
	r.Status.Phase, r.Status.PodName, r.Status.Attempts = v1alpha1.PhaseRunning, "r-abcde", 1
	r.Status.StartedAt = new(metav1.NewTime(trimT0.Add(2 * time.Second)))
	cfg := phase.Config{Workload: workload.Config{AgentImage: "img", DefaultTimeout: 10 * time.Minute}, Grace: time.Minute}
	for name, j := range map[string]*batchv1.Job{"untrimmed": job, "trimmed": tj} {
		d := phase.Next(phase.Observed{Run: r, Instance: &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "ns"}},
			Objects: phase.Objects{phase.KindJob: j}, Now: trimT0.Add(time.Minute), Config: cfg})
		assert.Equal(t, v1alpha1.PhaseRunning, d.Status.Phase, "%s: %s", name, d.Status.Error)
		assert.Equal(t, int32(2), d.Status.Attempts, name)
	}
	job.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: []types.UID{"p"}}
	assert.Nil(t, asCached(t, job).(*batchv1.Job).Status.UncountedTerminatedPods, "nothing kept when no failure is uncounted")
}
