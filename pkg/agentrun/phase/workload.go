package phase

import (
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/jobspec"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Backend is the kind of workload that carries a run's agent.
type Backend string

const (
	// BackendTask is a Job (spec.mode task, the default).
	BackendTask Backend = "task"
	// BackendServer is a Deployment and a Service (spec.mode server).
	BackendServer Backend = "server"
	// BackendSandbox is an agent-sandbox Sandbox (agentSandbox.enabled).
	BackendSandbox Backend = "sandbox"
	// BackendSandboxClaim is an agent-sandbox SandboxClaim on a warm pool
	// (agentSandbox.enabled with warmPoolRef).
	BackendSandboxClaim Backend = "sandbox-claim"
)

// BackendOf returns the backend of run. The agent sandbox wins over
// mode: server, a combination the CRD refuses.
func BackendOf(run *v1alpha1.AgentRun) Backend {
	if as := run.Spec.AgentSandbox; as != nil && as.Enabled {
		if as.WarmPoolRef != "" {
			return BackendSandboxClaim
		}
		return BackendSandbox
	}
	if run.Spec.Mode == v1alpha1.ModeServer {
		return BackendServer
	}
	return BackendTask
}

// Sandbox condition types and reasons (agents.x-k8s.io); a claim mirrors
// its Sandbox's Ready and Finished.
const (
	SandboxConditionReady    = "Ready"
	SandboxConditionFinished = "Finished"
	SandboxReasonSucceeded   = "PodSucceeded"
)

// claimRefusals are the Ready=False reasons of a SandboxClaim that waiting
// does not heal: the run's configuration (its warm pool, the pool's
// template) is wrong.
var claimRefusals = []string{"WarmPoolNotFound", "TemplateNotFound", "EnvVarsInjectionRejected"}

// workload is one execution backend of a run: the objects that carry its
// agent and how its progress is read from them. The lifecycle around it
// (admission, deadlines, terminal phases, conditions, events, the
// finalizer) is the machine's, the same for every backend.
type workload interface {
	// kind names the object that carries the run, for messages.
	kind() string
	// object is that object as cached; nil when the cache has none.
	object() metav1.Object
	// expected reports that this controller created it and the cache has
	// not shown it yet.
	expected() bool
	// recorded reports whether the status names it: the run was admitted.
	recorded() bool
	// record names it in the status.
	record()
	// created is the message of the admission (reason JobCreated).
	created() string
	// unavailable says why the cluster cannot run this backend ("" when it
	// can): the run then fails with SandboxUnavailable.
	unavailable() string
	// needsFinalizer reports whether a live run holds the server finalizer.
	needsFinalizer() bool
	// create puts the objects to create into the decision; an error is a
	// spec this backend cannot run (InvalidSpec).
	create() error
	// observe follows an admitted run.
	observe()
	// lost fails a run whose recorded object is gone.
	lost()
	// remove asks to delete what exists of the workload; force ignores
	// spec.cleanup.
	remove(force bool)
}

func newWorkload(m *machine) workload {
	switch BackendOf(m.in.Run) {
	case BackendServer:
		return serverWorkload{m}
	case BackendSandbox:
		return sandboxWorkload{m: m}
	case BackendSandboxClaim:
		return sandboxWorkload{m: m, claim: true}
	}
	return taskWorkload{m}
}

func (m *machine) inputs() jobspec.Inputs {
	return jobspec.Inputs{Run: m.run(), Instance: m.in.Instance, SkillPacks: m.in.SkillPacks, Now: m.in.Now}
}

// taskWorkload is a Job running the agent pod once.
type taskWorkload struct{ m *machine }

func (w taskWorkload) kind() string { return "Job" }

func (w taskWorkload) object() metav1.Object {
	if w.m.in.Job == nil {
		return nil
	}
	return w.m.in.Job
}

func (w taskWorkload) expected() bool       { return w.m.in.JobExpected }
func (w taskWorkload) recorded() bool       { return w.m.st.JobName != "" }
func (w taskWorkload) unavailable() string  { return "" }
func (w taskWorkload) needsFinalizer() bool { return false }
func (w taskWorkload) created() string      { return fmt.Sprintf("Job %s created", w.m.st.JobName) }

func (w taskWorkload) record() {
	name := naming.JobName(w.m.run().Name)
	if w.m.in.Job != nil {
		name = w.m.in.Job.Name
	}
	w.m.st.JobName = name
}

func (w taskWorkload) create() error {
	job, err := jobspec.Job(w.m.in.Config.Job, w.m.inputs())
	if err != nil {
		return err
	}
	w.m.d.CreateJob = job
	return nil
}

func (w taskWorkload) lost() {
	w.m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("Job %s was deleted before the run finished", w.m.st.JobName), nil)
}

func (w taskWorkload) remove(force bool) {
	if job := w.m.in.Job; job != nil && w.m.removable(job, force) {
		w.m.d.DeleteJob = true
	}
}

// observe follows the Job and its agent pod: the agent container's exit
// decides; the Job's own failure (its deadline), a lost pod or Job end the
// run otherwise.
func (w taskWorkload) observe() {
	m := w.m
	job, pod := m.in.Job, m.in.Pod
	agent := agentOf(pod)
	switch {
	case agent != nil && agent.State.Terminated != nil:
		m.agentTerminated(pod, agent.State.Terminated)
		return
	case pod != nil && podLost(pod):
		m.fail(v1alpha1.ReasonPodLost, podLostMessage(pod), nil)
		return
	case job != nil && jobFailed(job) != nil:
		c := jobFailed(job)
		if c.Reason == batchv1.JobReasonDeadlineExceeded {
			m.fail(v1alpha1.ReasonTimeout, fmt.Sprintf("Job %s exceeded its active deadline: %s", job.Name, c.Message), nil)
		} else {
			m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("Job %s failed without an agent result: %s: %s", job.Name, c.Reason, c.Message), nil)
		}
		return
	case pod == nil && m.st.PodName != "" && job != nil && job.DeletionTimestamp == nil:
		m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("pod %s disappeared before the agent finished", m.st.PodName), nil)
		return
	case job != nil && pod == nil && jobComplete(job):
		// The pod succeeded (exit 0) but is gone: no report to read.
		m.succeed(0, result.Outcome{Error: "the agent pod was removed before its result could be read"})
		return
	}
	m.followPod(pod, agent)
}

// serverWorkload is the Deployment (one replica, restartPolicy Always) and
// the Service of a long-lived server-mode run. It reaches Serving once the
// Deployment is available and has no deadline from then on; the run ends
// only when it is deleted (Succeeded, through the finalizer) or its
// Deployment is (JobLost).
type serverWorkload struct{ m *machine }

func (w serverWorkload) kind() string { return "Deployment" }

func (w serverWorkload) object() metav1.Object {
	if w.m.in.Deployment == nil {
		return nil
	}
	return w.m.in.Deployment
}

func (w serverWorkload) expected() bool       { return w.m.in.ServerExpected }
func (w serverWorkload) recorded() bool       { return w.m.st.DeploymentName != "" }
func (w serverWorkload) unavailable() string  { return "" }
func (w serverWorkload) needsFinalizer() bool { return true }

func (w serverWorkload) record() {
	name := naming.ServerName(w.m.run().Name)
	w.m.st.DeploymentName, w.m.st.ServiceName = name, name
}

func (w serverWorkload) created() string {
	return fmt.Sprintf("Deployment %s and Service %s created", w.m.st.DeploymentName, w.m.st.ServiceName)
}

func (w serverWorkload) create() error {
	dep, err := jobspec.Deployment(w.m.in.Config.Job, w.m.inputs())
	if err != nil {
		return err
	}
	w.m.d.CreateDeployment = dep
	if w.m.in.Service == nil {
		w.m.d.CreateService = jobspec.Service(w.m.inputs())
	}
	return nil
}

func (w serverWorkload) lost() {
	w.m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("Deployment %s was deleted before the run finished", w.m.st.DeploymentName), nil)
}

func (w serverWorkload) remove(force bool) {
	m := w.m
	if dep := m.in.Deployment; dep != nil && m.removable(dep, force) {
		m.d.DeleteDeployment = true
	}
	if svc := m.in.Service; svc != nil && m.removable(svc, force) {
		m.d.DeleteService = true
	}
}

func (w serverWorkload) observe() {
	m := w.m
	dep, svc := m.in.Deployment, m.in.Service
	if svc != nil && !metav1.IsControlledBy(svc, m.run()) {
		m.fail(v1alpha1.ReasonChildNameConflict, fmt.Sprintf("Service %s exists and is not controlled by this run", svc.Name), nil)
		return
	}
	if dep != nil && dep.DeletionTimestamp != nil {
		w.lost()
		return
	}
	w.converge()
	available := dep != nil && deploymentAvailable(dep)
	if m.st.Phase == v1alpha1.PhaseServing {
		w.serving(available)
		return
	}
	if available {
		w.serve()
		return
	}
	if !m.in.Now.Before(m.deadline()) {
		m.fail(v1alpha1.ReasonServerNotReady, fmt.Sprintf("timeout of %s expired before Deployment %s became available: %s",
			m.timeout(), m.st.DeploymentName, w.why()), nil)
		return
	}
	if m.waitingTooLong(m.in.Pod, agentOf(m.in.Pod)) {
		return
	}
	m.requeueAt(m.deadline())
}

// complete reports whether everything the server's spec is built from is
// known (the instance, every mounted SkillPack), so that rebuilding it
// cannot drop a part that is only missing from the cache.
func (w serverWorkload) complete() bool {
	m := w.m
	if m.in.Instance == nil {
		return false
	}
	for _, name := range jobspec.SkillPackNames(m.inputs()) {
		if m.in.SkillPacks[name] == nil {
			return false
		}
	}
	return true
}

// converge recreates a missing Service and updates the Deployment and the
// Service whose spec hash differs from what the run's spec builds now: a
// spec update rolls the Deployment.
func (w serverWorkload) converge() {
	m := w.m
	dep, svc := m.in.Deployment, m.in.Service
	if !w.complete() {
		return
	}
	in := m.inputs()
	if dep != nil {
		want, err := jobspec.Deployment(m.in.Config.Job, in)
		if err == nil && dep.Annotations[jobspec.AnnotationSpecHash] != want.Annotations[jobspec.AnnotationSpecHash] {
			want.ResourceVersion, want.UID = dep.ResourceVersion, dep.UID
			m.d.UpdateDeployment = want
		}
	}
	want := jobspec.Service(in)
	switch {
	case svc == nil && !m.in.ServerExpected:
		m.d.CreateService = want
	case svc != nil && svc.Annotations[jobspec.AnnotationSpecHash] != want.Annotations[jobspec.AnnotationSpecHash]:
		want.ResourceVersion, want.UID = svc.ResourceVersion, svc.UID
		// The cluster IPs are the API server's and cannot change.
		want.Spec.ClusterIP, want.Spec.ClusterIPs = svc.Spec.ClusterIP, svc.Spec.ClusterIPs
		want.Spec.IPFamilies, want.Spec.IPFamilyPolicy = svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy
		m.d.UpdateService = want
	}
}

func (w serverWorkload) servingMessage() string {
	return fmt.Sprintf("Deployment %s is available behind Service %s", w.m.st.DeploymentName, w.m.st.ServiceName)
}

// serve moves a run whose Deployment became available to Serving.
func (w serverWorkload) serve() {
	m := w.m
	m.st.Phase = v1alpha1.PhaseServing
	if m.st.StartedAt == nil {
		now := metav1.NewTime(m.in.Now)
		m.st.StartedAt = &now
	}
	msg := w.servingMessage()
	m.setCondition(v1alpha1.ConditionServing, metav1.ConditionTrue, v1alpha1.ReasonStarted, msg)
	m.event(corev1.EventTypeNormal, v1alpha1.ReasonStarted, msg)
}

// serving keeps the Serving condition in step with the Deployment's
// availability. The phase stays Serving: a server that is down for a while
// is still the same long-lived run. Events are emitted only when the
// availability flips.
func (w serverWorkload) serving(available bool) {
	m := w.m
	prev := findCondition(m.st.Conditions, v1alpha1.ConditionServing)
	wasUp := prev != nil && prev.Status == metav1.ConditionTrue
	if available {
		msg := w.servingMessage()
		if m.setCondition(v1alpha1.ConditionServing, metav1.ConditionTrue, v1alpha1.ReasonStarted, msg) && !wasUp {
			m.event(corev1.EventTypeNormal, v1alpha1.ReasonStarted, msg)
		}
		return
	}
	msg := fmt.Sprintf("Deployment %s is not available: %s", m.st.DeploymentName, w.why())
	if m.setCondition(v1alpha1.ConditionServing, metav1.ConditionFalse, v1alpha1.ReasonServerNotReady, msg) && wasUp {
		m.event(corev1.EventTypeWarning, v1alpha1.ReasonServerNotReady, msg)
	}
}

// why says why the Deployment is not available, from its conditions and
// its newest pod.
func (w serverWorkload) why() string {
	dep, pod := w.m.in.Deployment, w.m.in.Pod
	if dep == nil {
		return "its Deployment is not in the cache yet"
	}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			return fmt.Sprintf("ReplicaFailure: %s: %s", c.Reason, c.Message)
		}
	}
	if pod == nil {
		return "no pod was created"
	}
	if u := unschedulable(pod); u != "" {
		return fmt.Sprintf("pod %s never started: %s: %s", pod.Name, v1alpha1.ReasonUnschedulable, u)
	}
	agent := agentOf(pod)
	switch {
	case agent == nil:
		return fmt.Sprintf("pod %s: the agent container has not started", pod.Name)
	case agent.State.Waiting != nil:
		return fmt.Sprintf("pod %s: agent container waiting: %s", pod.Name, agent.State.Waiting.Reason)
	case agent.State.Terminated != nil:
		return fmt.Sprintf("pod %s: agent container exited with code %d", pod.Name, agent.State.Terminated.ExitCode)
	case !agent.Ready:
		return fmt.Sprintf("pod %s: the agent container is not ready", pod.Name)
	}
	return fmt.Sprintf("%d of %d replicas available", dep.Status.AvailableReplicas, dep.Status.Replicas)
}

// deploymentAvailable reports a Deployment with an available replica whose
// Available condition (when the deployment controller has set it) is
// True.
func deploymentAvailable(d *appsv1.Deployment) bool {
	if d.Status.AvailableReplicas < 1 {
		return false
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return true
}

// sandboxWorkload is an agent-sandbox Sandbox of the run's own, or (claim)
// a SandboxClaim on a warm pool whose bound Sandbox carries the agent. The
// agent's outcome is read from the pod named like the Sandbox, exactly as
// in task mode; the Sandbox's (or claim's) Finished condition stands in
// when that pod cannot be read.
type sandboxWorkload struct {
	m     *machine
	claim bool
}

func (w sandboxWorkload) kind() string {
	if w.claim {
		return jobspec.SandboxClaimKind
	}
	return jobspec.SandboxKind
}

func (w sandboxWorkload) obj() *SandboxObject {
	if w.claim {
		return w.m.in.SandboxClaim
	}
	return w.m.in.Sandbox
}

func (w sandboxWorkload) object() metav1.Object {
	if o := w.obj(); o != nil {
		return o
	}
	return nil
}

func (w sandboxWorkload) expected() bool       { return w.m.in.SandboxExpected }
func (w sandboxWorkload) needsFinalizer() bool { return false }

func (w sandboxWorkload) recorded() bool {
	if w.claim {
		return w.m.st.SandboxClaimName != ""
	}
	return w.m.st.SandboxName != ""
}

func (w sandboxWorkload) name() string {
	if w.claim {
		return naming.SandboxClaimName(w.m.run().Name)
	}
	return naming.SandboxName(w.m.run().Name)
}

func (w sandboxWorkload) record() {
	if w.claim {
		w.m.st.SandboxClaimName = w.name()
		return
	}
	w.m.st.SandboxName = w.name()
}

func (w sandboxWorkload) created() string {
	if w.claim {
		return fmt.Sprintf("SandboxClaim %s created on warm pool %s", w.m.st.SandboxClaimName, w.m.run().Spec.AgentSandbox.WarmPoolRef)
	}
	return fmt.Sprintf("Sandbox %s created", w.m.st.SandboxName)
}

func (w sandboxWorkload) unavailable() string {
	api := w.m.in.SandboxAPI
	switch {
	case w.claim && api.Claim == "":
		return "agentSandbox.warmPoolRef needs the agent-sandbox SandboxClaim API (" + jobspec.SandboxClaimGroup + "/v1beta1), which this cluster does not serve: " + api.Why
	case !w.claim && api.Sandbox == "":
		return "agentSandbox needs the agent-sandbox Sandbox API (" + jobspec.SandboxGroup + "), which this cluster does not serve: " + api.Why
	}
	return ""
}

func (w sandboxWorkload) create() error {
	m := w.m
	if w.claim {
		u, err := jobspec.SandboxClaim(m.in.Config.Job, m.inputs(), m.in.SandboxAPI.Claim)
		if err != nil {
			return err
		}
		m.d.CreateSandboxClaim = u
		return nil
	}
	u, err := jobspec.Sandbox(m.in.Config.Job, m.inputs(), m.in.SandboxAPI.Sandbox)
	if err != nil {
		return err
	}
	m.d.CreateSandbox = u
	return nil
}

func (w sandboxWorkload) lost() {
	if why := w.unavailable(); why != "" {
		w.m.fail(v1alpha1.ReasonSandboxUnavailable, why, nil)
		return
	}
	w.m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("%s %s was deleted before the run finished", w.kind(), w.name()), nil)
}

func (w sandboxWorkload) remove(force bool) {
	m := w.m
	if o := w.obj(); o != nil && m.removable(o, force) {
		if w.claim {
			m.d.DeleteSandboxClaim = true
		} else {
			m.d.DeleteSandbox = true
		}
	}
}

func (w sandboxWorkload) observe() {
	m := w.m
	obj := w.obj()
	if w.claim && obj != nil {
		if b := obj.BoundSandbox; b != "" && m.st.SandboxName != b {
			m.st.SandboxName = b
		}
		if w.refused(obj) {
			return
		}
	}
	pod := m.in.Pod
	agent := agentOf(pod)
	var finished, ready *metav1.Condition
	if obj != nil {
		finished = trueCondition(obj.Conditions, SandboxConditionFinished)
		ready = trueCondition(obj.Conditions, SandboxConditionReady)
	}
	switch {
	case agent != nil && agent.State.Terminated != nil:
		m.agentTerminated(pod, agent.State.Terminated)
		return
	case pod != nil && podLost(pod):
		m.fail(v1alpha1.ReasonPodLost, podLostMessage(pod), nil)
		return
	case finished != nil:
		w.finishedUnread(finished)
		return
	case pod == nil && !w.claim && m.st.PodName != "" && obj != nil && obj.DeletionTimestamp == nil:
		// The run's own sandbox pod carries the run's labels, so the cache
		// would show it: it is gone.
		m.fail(v1alpha1.ReasonPodLost, fmt.Sprintf("pod %s disappeared before the agent finished", m.st.PodName), nil)
		return
	}
	if w.claim && agent == nil && ready != nil && m.st.Phase == v1alpha1.PhasePending && m.st.SandboxName != "" && m.in.Now.Before(m.deadline()) {
		// A claimed pod need not carry the run's labels (the warm pool
		// made it), so the cache may not show it; the claim says it runs.
		m.st.PodName = m.st.SandboxName
		m.start(ready.LastTransitionTime)
	}
	m.followPod(pod, agent)
}

// finishedUnread ends a run whose Sandbox finished while its pod (and so
// the agent's exit code and report) could not be read.
func (w sandboxWorkload) finishedUnread(c *metav1.Condition) {
	m := w.m
	if m.st.PodName == "" && m.st.SandboxName != "" {
		m.st.PodName = m.st.SandboxName
	}
	if c.Reason == SandboxReasonSucceeded {
		m.succeed(0, result.Outcome{Error: fmt.Sprintf("the %s finished (%s) but its agent pod could not be read for a result", w.kind(), c.Reason)})
		return
	}
	m.fail(v1alpha1.ReasonAgentFailed, fmt.Sprintf("%s %s finished: %s: %s (the agent pod could not be read for an exit code)", w.kind(), w.name(), c.Reason, c.Message), nil)
}

// refused fails a run whose claim the sandbox controller refuses for a
// reason waiting does not heal (no such warm pool, env injection not
// allowed by the pool's template), once the grace period is over.
func (w sandboxWorkload) refused(claim *SandboxObject) bool {
	m := w.m
	c := meta.FindStatusCondition(claim.Conditions, SandboxConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || !slices.Contains(claimRefusals, c.Reason) {
		return false
	}
	if left := m.graceLeft(claim.CreationTimestamp); left > 0 {
		m.requeue(left)
		return false
	}
	m.fail(v1alpha1.ReasonConfigError, fmt.Sprintf("SandboxClaim %s: %s: %s", claim.Name, c.Reason, c.Message), nil)
	return true
}

func trueCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	if c := meta.FindStatusCondition(conds, typ); c != nil && c.Status == metav1.ConditionTrue {
		return c
	}
	return nil
}
