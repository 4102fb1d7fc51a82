package phase

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The objects of a server-mode run: its workload, the Deployment, and the
// Service in front of it.
const (
	KindDeployment Kind = "Deployment"
	KindService    Kind = "Service"
)

func serverChildren(run string) []Child {
	name := naming.ServerName(run)
	return []Child{{KindDeployment, name}, {KindService, name}}
}

// serverAdapter is the Deployment (one replica, restartPolicy Always) and
// the Service of a long-lived server-mode run. It reaches Serving once the
// Deployment is available and has no deadline from then on; the run ends
// only when it is deleted (Succeeded, through the finalizer) or its
// Deployment is (JobLost).
type serverAdapter struct{ m *machine }

func (w serverAdapter) kind() string { return "Deployment" }

func (w serverAdapter) deployment() *appsv1.Deployment {
	return cached[*appsv1.Deployment](w.m, KindDeployment)
}

func (w serverAdapter) service() *corev1.Service { return cached[*corev1.Service](w.m, KindService) }

func (w serverAdapter) object() metav1.Object {
	if dep := w.deployment(); dep != nil {
		return dep
	}
	return nil
}

func (w serverAdapter) recorded() bool       { return w.m.st.DeploymentName != "" }
func (w serverAdapter) unavailable() string  { return "" }
func (w serverAdapter) needsFinalizer() bool { return true }

func (w serverAdapter) record() {
	name := naming.ServerName(w.m.run().Name)
	w.m.st.DeploymentName, w.m.st.ServiceName = name, name
}

func (w serverAdapter) created() string {
	return fmt.Sprintf("Deployment %s and Service %s created", w.m.st.DeploymentName, w.m.st.ServiceName)
}

func (w serverAdapter) create() error {
	dep, err := workload.Deployment(w.m.in.Config.Workload, w.m.inputs())
	if err != nil {
		return err
	}
	w.apiKey()
	w.m.act(Create, KindDeployment, dep)
	if w.service() == nil {
		w.m.act(Create, KindService, workload.Service(w.m.inputs()))
	}
	return nil
}

// apiKey asks for the web proxy's API-key Secret, before the Deployment that
// reads it: created when missing (AlreadyExists keeps an earlier run's key),
// never overwritten.
func (w serverAdapter) apiKey() {
	if key := w.m.in.NewAPIKey; key != "" {
		if s := workload.ServerAPIKeySecret(w.m.inputs(), key); s != nil {
			w.m.act(Create, KindSecret, s)
		}
	}
}

func (w serverAdapter) lost() {
	w.m.fail(v1alpha1.ReasonJobLost, fmt.Sprintf("Deployment %s was deleted before the run finished", w.m.st.DeploymentName), nil)
}

func (w serverAdapter) remove(force bool) {
	removeObject(w.m, KindDeployment, w.deployment(), force)
	removeObject(w.m, KindService, w.service(), force)
}

func (w serverAdapter) observe() {
	m := w.m
	dep, svc := w.deployment(), w.service()
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
func (w serverAdapter) complete() bool {
	m := w.m
	if m.in.Instance == nil {
		return false
	}
	for _, name := range workload.SkillPackNames(m.inputs()) {
		if m.in.SkillPacks[name] == nil {
			return false
		}
	}
	return true
}

// converge recreates a missing Service and updates the Deployment and the
// Service whose spec hash differs from what the run's spec builds now: a
// spec update rolls the Deployment.
func (w serverAdapter) converge() {
	m := w.m
	dep, svc := w.deployment(), w.service()
	if !w.complete() || (dep != nil && workload.CreatedByOriginal(dep)) || (svc != nil && workload.CreatedByOriginal(svc)) {
		// sympozium's own server (adopted) is kept as it is: see
		// workload.AdoptedNote.
		return
	}
	m.revokeStale()
	in := m.inputs()
	if dep != nil {
		want, err := workload.Deployment(m.in.Config.Workload, in)
		if err == nil && dep.Annotations[workload.AnnotationSpecHash] != want.Annotations[workload.AnnotationSpecHash] {
			// The rebuilt pod may mount new packs: their identity and
			// the API key first (existing ones are kept).
			if refused := m.grantIdentity(); refused != nil {
				m.fail(failureReason(refused), refused.Error(), nil)
				return
			}
			w.apiKey()
			want.ResourceVersion, want.UID = dep.ResourceVersion, dep.UID
			m.act(Update, KindDeployment, want)
		}
	}
	want := workload.Service(in)
	switch {
	case svc == nil && !m.in.WorkloadExpected:
		m.act(Create, KindService, want)
	case svc != nil && svc.Annotations[workload.AnnotationSpecHash] != want.Annotations[workload.AnnotationSpecHash]:
		want.ResourceVersion, want.UID = svc.ResourceVersion, svc.UID
		// The cluster IPs are the API server's and cannot change.
		want.Spec.ClusterIP, want.Spec.ClusterIPs = svc.Spec.ClusterIP, svc.Spec.ClusterIPs
		want.Spec.IPFamilies, want.Spec.IPFamilyPolicy = svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy
		m.act(Update, KindService, want)
	}
}

func (w serverAdapter) servingMessage() string {
	return fmt.Sprintf("Deployment %s is available behind Service %s", w.m.st.DeploymentName, w.m.st.ServiceName)
}

// serve moves a run whose Deployment became available to Serving.
func (w serverAdapter) serve() {
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
func (w serverAdapter) serving(available bool) {
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
func (w serverAdapter) why() string {
	dep, pod := w.deployment(), w.m.in.Pod
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
