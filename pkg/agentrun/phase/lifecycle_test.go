package phase

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// servedAPI is an agent-sandbox API as a cluster that has it installed
// serves it.
var servedAPI = SandboxAPI{Sandbox: "agents.x-k8s.io/v1beta1", Claim: "extensions.agents.x-k8s.io/v1beta1"}

const boundSandbox = "pool-x7k2q"

// kit adapts the lifecycle table to one backend: how a run of that
// backend looks at each step, and what its workload is as the cache
// returns it.
type kit struct {
	backend Backend
	// opts make a run of this backend.
	opts []runOpt
	// admitted is the status the admitting sync writes; started the status
	// once the agent runs (a server: once it serves).
	admitted, started runOpt
	// workload puts the run's workload objects (and pod, nil for none) into
	// in, as the informer caches hold them.
	workload func(in *Observed, pod *corev1.Pod)
	// creates and deletes report the decision's actions on the workload.
	creates, deletes func(Decision) bool
}

func (k kit) run(opts ...runOpt) *v1alpha1.AgentRun {
	return newRun(append(slices.Clone(k.opts), opts...)...)
}

func withAgentSandbox(pool string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.AgentSandbox = &v1alpha1.AgentSandboxSpec{Enabled: true, WarmPoolRef: pool}
		if pool == "" { // with a pool, the pool's template decides (see warmpool_test.go)
			r.Spec.AgentSandbox.RuntimeClass = "gvisor"
		}
	}
}

func withFinalizer() runOpt {
	return func(r *v1alpha1.AgentRun) { r.Finalizers = append(r.Finalizers, v1alpha1.FinalizerServer) }
}

func withDeleted() runOpt {
	return func(r *v1alpha1.AgentRun) { r.DeletionTimestamp = new(metav1.NewTime(now)) }
}

// statusAdmitted is a Pending status with the Admitted condition; names
// fills in the workload's names.
func statusAdmitted(msg string, names func(*v1alpha1.AgentRunStatus)) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Status.Phase = v1alpha1.PhasePending
		r.Status.ObservedGeneration = r.Generation
		names(&r.Status)
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionAdmitted,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonJobCreated, Message: msg,
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(t0)})
	}
}

func statusRunning(pod string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Status.Phase = v1alpha1.PhaseRunning
		r.Status.PodName = pod
		r.Status.StartedAt = new(metav1.NewTime(t0.Add(5 * time.Second)))
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionRunning,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonStarted, Message: "agent container started in pod " + pod,
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(t0.Add(5 * time.Second))})
	}
}

func serverAdmitted() runOpt {
	return statusAdmitted("Deployment run-server and Service run-server created", func(st *v1alpha1.AgentRunStatus) {
		st.DeploymentName, st.ServiceName = "run-server", "run-server"
	})
}

func serverServing() runOpt {
	return func(r *v1alpha1.AgentRun) {
		serverAdmitted()(r)
		r.Status.Phase = v1alpha1.PhaseServing
		r.Status.StartedAt = new(metav1.NewTime(t0.Add(5 * time.Second)))
		r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionServing,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonStarted, Message: "Deployment run-server is available behind Service run-server",
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.NewTime(t0.Add(5 * time.Second))})
	}
}

func sandboxAdmitted() runOpt {
	return statusAdmitted("Sandbox run created", func(st *v1alpha1.AgentRunStatus) { st.SandboxName = "run" })
}

func claimAdmitted() runOpt {
	return statusAdmitted("SandboxClaim run created on warm pool pool", func(st *v1alpha1.AgentRunStatus) {
		st.SandboxClaimName, st.SandboxName = "run", boundSandbox
	})
}

func chain(opts ...runOpt) runOpt {
	return func(r *v1alpha1.AgentRun) {
		for _, o := range opts {
			o(r)
		}
	}
}

// serverObjects are the Deployment and Service the machine creates for run
// as the API server returns them (UIDs set; TestCachedObjectsDecideAlike
// checks that the trimmed template of the cached copy decides alike), the
// Deployment available when the agent of pod runs.
func serverObjects(in *Observed, pod *corev1.Pod) (*appsv1.Deployment, *corev1.Service) {
	ji := workload.Inputs{Run: in.Run, Instance: in.Instance, SkillPacks: in.SkillPacks, Now: t0}
	dep, err := workload.Deployment(testConfig.Workload, ji)
	if err != nil {
		panic(err)
	}
	dep.UID, dep.ResourceVersion = "dep-uid", "10"
	dep.Status.Replicas = 1
	avail := corev1.ConditionFalse
	if a := agentOf(pod); a != nil && a.State.Running != nil {
		dep.Status.AvailableReplicas, dep.Status.ReadyReplicas = 1, 1
		avail = corev1.ConditionTrue
	}
	dep.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: avail}}
	svc := workload.Service(ji)
	svc.UID, svc.ResourceVersion, svc.Spec.ClusterIP = "svc-uid", "11", "10.0.0.10"
	return dep, svc
}

// sandboxConditions are the Ready and Finished conditions the sandbox
// controller derives from pod.
func sandboxConditions(pod *corev1.Pod) []metav1.Condition {
	if pod == nil {
		return nil
	}
	at := metav1.NewTime(t0.Add(5 * time.Second))
	switch pod.Status.Phase {
	case corev1.PodRunning:
		return []metav1.Condition{{Type: SandboxConditionReady, Status: metav1.ConditionTrue, Reason: "DependenciesReady", LastTransitionTime: at}}
	case corev1.PodSucceeded, corev1.PodFailed:
		reason := "PodSucceeded"
		if pod.Status.Phase == corev1.PodFailed {
			reason = "PodFailed"
		}
		return []metav1.Condition{
			{Type: SandboxConditionReady, Status: metav1.ConditionFalse, Reason: reason, LastTransitionTime: at},
			{Type: SandboxConditionFinished, Status: metav1.ConditionTrue, Reason: reason, LastTransitionTime: at},
		}
	}
	return []metav1.Condition{{Type: SandboxConditionReady, Status: metav1.ConditionFalse, Reason: "DependenciesNotReady", LastTransitionTime: at}}
}

func sandboxOf(run *v1alpha1.AgentRun, name, uid string, pod *corev1.Pod) *SandboxObject {
	return &SandboxObject{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: run.Namespace, UID: types.UID(uid),
		CreationTimestamp: metav1.NewTime(t0.Add(time.Second)),
		OwnerReferences:   []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}},
		Conditions: sandboxConditions(pod)}
}

// ownedBy renames pod and makes it controlled by an object of kind.
func ownedBy(pod *corev1.Pod, kind, name, uid string) *corev1.Pod {
	if pod == nil {
		return nil
	}
	p := pod.DeepCopy()
	p.Name = name
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: kind, Name: name, UID: types.UID(uid), Controller: new(true)}}
	return p
}

var kits = []kit{
	{
		backend: BackendTask, admitted: admitted(), started: running(),
		workload: func(in *Observed, pod *corev1.Pod) { in.Objects, in.Pod = Objects{KindJob: jobFor(in.Run)}, pod },
		creates:  func(d Decision) bool { return action[*batchv1.Job](d, Create, KindJob) != nil },
		deletes:  func(d Decision) bool { return acts(d, Delete, KindJob) },
	},
	{
		backend: BackendServer, opts: []runOpt{withMode(v1alpha1.ModeServer)},
		admitted: chain(withFinalizer(), serverAdmitted()), started: chain(withFinalizer(), serverServing()),
		workload: func(in *Observed, pod *corev1.Pod) {
			dep, svc := serverObjects(in, pod)
			in.Objects = Objects{KindDeployment: dep, KindService: svc}
			in.Pod = ownedBy(pod, "ReplicaSet", "run-server-5d8f9-abcde", "rs-uid")
		},
		creates: func(d Decision) bool {
			return action[*appsv1.Deployment](d, Create, KindDeployment) != nil && action[*corev1.Service](d, Create, KindService) != nil
		},
		deletes: func(d Decision) bool { return acts(d, Delete, KindDeployment) && acts(d, Delete, KindService) },
	},
	{
		backend: BackendSandbox, opts: []runOpt{withAgentSandbox("")},
		admitted: sandboxAdmitted(), started: chain(sandboxAdmitted(), statusRunning("run")),
		workload: func(in *Observed, pod *corev1.Pod) {
			in.Objects = Objects{KindSandbox: sandboxOf(in.Run, "run", "sandbox-uid", pod)}
			in.Pod = ownedBy(pod, "Sandbox", "run", "sandbox-uid")
		},
		creates: func(d Decision) bool { return action[*unstructured.Unstructured](d, Create, KindSandbox) != nil },
		deletes: func(d Decision) bool { return acts(d, Delete, KindSandbox) },
	},
	{
		backend: BackendSandboxClaim, opts: []runOpt{withAgentSandbox("pool")},
		admitted: claimAdmitted(), started: chain(claimAdmitted(), statusRunning(boundSandbox)),
		workload: func(in *Observed, pod *corev1.Pod) {
			claim := sandboxOf(in.Run, "run", "claim-uid", pod)
			claim.BoundSandbox = boundSandbox
			in.Objects = Objects{KindSandboxClaim: claim}
			in.Pod = ownedBy(pod, "Sandbox", boundSandbox, "pool-sandbox-uid")
		},
		creates: func(d Decision) bool { return action[*unstructured.Unstructured](d, Create, KindSandboxClaim) != nil },
		deletes: func(d Decision) bool { return acts(d, Delete, KindSandboxClaim) },
	},
}

// lwant is the expected outcome of one lifecycle step.
type lwant struct {
	phase           v1alpha1.AgentRunPhase
	condition       string // a condition type that must be present with reason
	reason          string
	condTrue        bool
	creates         bool
	deletes         bool
	addFinalizer    bool
	removeFinalizer bool
	requeue         time.Duration
	events          []string
	// progress are the reasons of the events marked Progress (recorded
	// only with --progress-events); none unless a step says so.
	progress []string
	errorHas string
}

// lifecycle is the table every backend runs: the same steps, the outcome
// each backend must reach (wants[""] unless the backend has its own).
var lifecycle = []lifecycleStep{
	{
		name: "admission creates the workload",
		in:   func(k kit) Observed { return Observed{Run: k.run(), Instance: newInstance()} },
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				creates: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated}, progress: []string{v1alpha1.ReasonJobCreated}},
			BackendServer: {phase: v1alpha1.PhasePending, condition: v1alpha1.ConditionAdmitted, reason: v1alpha1.ReasonJobCreated, condTrue: true,
				creates: true, addFinalizer: true, requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonJobCreated}, progress: []string{v1alpha1.ReasonJobCreated}},
		},
	},
	{
		name: "the agent starts",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.admitted), Instance: newInstance()}
			k.workload(&in, newPod(agentRunning(t0.Add(5*time.Second))))
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseRunning, condition: v1alpha1.ConditionRunning, reason: v1alpha1.ReasonStarted, condTrue: true,
				requeue: 9 * time.Minute, events: []string{v1alpha1.ReasonStarted}, progress: []string{v1alpha1.ReasonStarted}},
			// A server serves once its Deployment is available, with no
			// deadline from then on: that it serves is its outcome while it
			// lives, recorded as an Event.
			BackendServer: {phase: v1alpha1.PhaseServing, condition: v1alpha1.ConditionServing, reason: v1alpha1.ReasonStarted, condTrue: true,
				events: []string{v1alpha1.ReasonStarted}},
		},
	},
	{
		name: "success",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.started), Instance: newInstance()}
			if k.backend == BackendServer {
				k.workload(&in, newPod(agentRunning(t0.Add(5*time.Second))))
			} else {
				k.workload(&in, newPod(agentExited(0, reportJSON)))
			}
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseSucceeded, condition: v1alpha1.ConditionComplete, reason: v1alpha1.ReasonSucceeded, condTrue: true,
				deletes: true, events: []string{v1alpha1.ReasonSucceeded}},
			// A serving server's success is to go on serving: nothing to do.
			BackendServer: {phase: v1alpha1.PhaseServing, condition: v1alpha1.ConditionServing, reason: v1alpha1.ReasonStarted, condTrue: true},
		},
	},
	{
		name: "agent failure",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.started), Instance: newInstance()}
			k.workload(&in, newPod(agentExited(3, `{"status":"error","error":"model refused"}`)))
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonAgentFailed, condTrue: true,
				deletes: true, events: []string{v1alpha1.ReasonAgentFailed}, errorHas: "code 3"},
			// A server whose agent exits is not available: still the same
			// long-lived run, its Serving condition turns False.
			BackendServer: {phase: v1alpha1.PhaseServing, condition: v1alpha1.ConditionServing, reason: v1alpha1.ReasonServerNotReady,
				events: []string{v1alpha1.ReasonServerNotReady}},
		},
	},
	{
		name: "timeout (the workload goes even with cleanup keep)",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.admitted, withCleanup(v1alpha1.CleanupKeep), withTimeout(2*time.Minute)), Instance: newInstance(), Now: t0.Add(2 * time.Minute)}
			k.workload(&in, newPod(podCond(corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable, "0/2 nodes are available")))
			return in
		},
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonTimeout, condTrue: true,
				deletes: true, events: []string{v1alpha1.ReasonTimeout}, errorHas: "Unschedulable: 0/2 nodes are available"},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonServerNotReady, condTrue: true,
				deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonServerNotReady}, errorHas: "Unschedulable: 0/2 nodes are available"},
		},
	},
	{
		name: "workload vanished",
		in:   func(k kit) Observed { return Observed{Run: k.run(k.started), Instance: newInstance()} },
		wants: map[Backend]lwant{
			"": {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonJobLost, condTrue: true,
				events: []string{v1alpha1.ReasonJobLost}, errorHas: "was deleted before the run finished"},
			BackendServer: {phase: v1alpha1.PhaseFailed, condition: v1alpha1.ConditionFailed, reason: v1alpha1.ReasonJobLost, condTrue: true,
				removeFinalizer: true, events: []string{v1alpha1.ReasonJobLost}, errorHas: "Deployment run-server was deleted"},
		},
	},
	{
		name: "deletion",
		in: func(k kit) Observed {
			in := Observed{Run: k.run(k.started, withDeleted()), Instance: newInstance()}
			k.workload(&in, newPod(agentRunning(t0.Add(5*time.Second))))
			return in
		},
		wants: map[Backend]lwant{
			// No finalizer: the garbage collector removes the workload
			// through its ownerReference; the status stays as it is.
			"":            {phase: v1alpha1.PhaseRunning, condition: v1alpha1.ConditionRunning, reason: v1alpha1.ReasonStarted, condTrue: true},
			BackendServer: {phase: v1alpha1.PhaseSucceeded, condition: v1alpha1.ConditionComplete, reason: v1alpha1.ReasonSucceeded, condTrue: true, deletes: true, removeFinalizer: true, events: []string{v1alpha1.ReasonSucceeded}},
		},
	},
}

// stepInput is what a lifecycle step observes for backend k: the clock at
// now unless the step sets it, the test configuration, the served
// agent-sandbox API.
func stepInput(k kit, in func(kit) Observed) Observed {
	o := in(k)
	if o.Now.IsZero() {
		o.Now = now
	}
	limit := o.Config.MaxConcurrentRuns // a step may set the controller-wide run limit
	o.Config, o.SandboxAPI = testConfig, servedAPI
	o.Config.MaxConcurrentRuns = limit
	return o
}

// lifecycleStep is one row of a table every backend runs.
type lifecycleStep = struct {
	name  string
	in    func(k kit) Observed
	wants map[Backend]lwant
}

func TestLifecycleEveryBackend(t *testing.T) { runLifecycle(t, lifecycle) }

// runLifecycle runs every step for every backend: the outcome, no mutated
// input, only the backend's own objects touched, and idempotence.
func runLifecycle(t *testing.T, steps []lifecycleStep) {
	for _, k := range kits {
		for _, step := range steps {
			t.Run(string(k.backend)+"/"+step.name, func(t *testing.T) {
				in := stepInput(k, step.in)
				w, ok := step.wants[k.backend]
				if !ok {
					w = step.wants[""]
				}
				before := in.Run.DeepCopy()
				d := Next(in)
				assert.Equal(t, before, in.Run, "Next mutated its input")
				assert.Equal(t, w.phase, d.Status.Phase)
				if w.condition != "" {
					c := findCondition(d.Status.Conditions, w.condition)
					require.NotNil(t, c, "condition %s", w.condition)
					assert.Equal(t, w.reason, c.Reason)
					assert.Equal(t, w.condTrue, c.Status == metav1.ConditionTrue)
				}
				assert.Equal(t, w.creates, k.creates(d), "creates")
				assert.Equal(t, w.deletes, k.deletes(d), "deletes")
				assert.Equal(t, w.addFinalizer, d.AddFinalizer, "addFinalizer")
				assert.Equal(t, w.removeFinalizer, d.RemoveFinalizer, "removeFinalizer")
				assert.Equal(t, w.requeue, d.RequeueAfter, "requeue")
				assert.Equal(t, w.events, eventReasons(d), "events")
				assert.Equal(t, w.progress, progressReasons(d), "progress events")
				assert.Contains(t, d.Status.Error, w.errorHas)
				if d.Status.Phase.IsTerminal() && !in.Run.Status.Phase.IsTerminal() {
					assert.NotNil(t, d.Status.CompletedAt)
				}
				assertOnlyBackendActions(t, k.backend, d)
				assertIdempotent(t, in, d)
			})
		}
	}
}

func progressReasons(d Decision) []string {
	var out []string
	for _, e := range d.Events {
		if e.Progress {
			out = append(out, e.Reason)
		}
	}
	return out
}

// assertProgressEvents checks what may be left out as progress: only a
// Normal JobCreated or Started.
func assertProgressEvents(t *testing.T, d Decision) {
	t.Helper()
	for _, e := range d.Events {
		if e.Progress && (e.Type != corev1.EventTypeNormal || (e.Reason != v1alpha1.ReasonJobCreated && e.Reason != v1alpha1.ReasonStarted)) {
			t.Fatalf("%s %s marked as progress", e.Type, e.Reason)
		}
	}
}

func eventReasons(d Decision) []string {
	var out []string
	for _, e := range d.Events {
		out = append(out, e.Reason)
	}
	return out
}

// assertOnlyBackendActions checks that a decision touches only the objects
// of the run's backend.
func assertOnlyBackendActions(t *testing.T, b Backend, d Decision) {
	t.Helper()
	kinds := map[Kind]bool{}
	for _, c := range backends[b].children("run") {
		kinds[c.Kind] = true
	}
	for _, a := range d.Actions {
		if a.Verb == Retire && a.Kind == KindPod {
			continue // the agent pod a finished run keeps
		}
		assert.True(t, kinds[a.Kind], "a %s run acts on a %s", b, a.Kind)
	}
	if b != BackendServer {
		assert.False(t, d.AddFinalizer, "a %s run adds the server finalizer", b)
	}
}

// action returns the object of d's action verb on kind; nil for none.
func action[T metav1.Object](d Decision, verb Verb, kind Kind) T {
	var none T
	for _, a := range d.Actions {
		if a.Verb == verb && a.Kind == kind {
			return a.Object.(T)
		}
	}
	return none
}

// verbs reports whether d does verb to any object.
func verbs(d Decision, verb Verb) bool {
	return slices.ContainsFunc(d.Actions, func(a Action) bool { return a.Verb == verb })
}

// assertActionsMatchCache checks that d creates only objects the cache
// does not hold and updates or deletes only the cached ones.
func assertActionsMatchCache(t *testing.T, in Observed, d Decision) {
	t.Helper()
	for _, a := range d.Actions {
		cached := in.Objects[a.Kind]
		switch a.Verb {
		case Create:
			if cached != nil {
				t.Fatalf("creates a %s that exists: %+v", a.Kind, d)
			}
		case Update:
			if cached == nil || cached.GetUID() != a.Object.GetUID() || cached.GetResourceVersion() != a.Object.GetResourceVersion() {
				t.Fatalf("updates a %s it did not see: %+v", a.Kind, d)
			}
		case Delete:
			if cached == nil || cached.GetUID() != a.Object.GetUID() || cached.GetName() != a.Object.GetName() ||
				cached.GetNamespace() != a.Object.GetNamespace() {
				t.Fatalf("deletes a %s it did not see: %+v", a.Kind, d)
			}
		}
	}
}

// acts reports whether d does verb to an object of kind.
func acts(d Decision, verb Verb, kind Kind) bool {
	return slices.ContainsFunc(d.Actions, func(a Action) bool { return a.Verb == verb && a.Kind == kind })
}

// applied is the observation after d was carried out and the caches caught
// up: created objects are there (with a UID), deleted ones gone, the run's
// status and metadata written.
func applied(in Observed, d Decision) Observed {
	next := in
	run := in.Run.DeepCopy()
	run.Status = *d.Status.DeepCopy()
	if d.SetOwner != nil {
		run.OwnerReferences = append(run.OwnerReferences, *d.SetOwner)
	}
	if d.AddFinalizer {
		run.Finalizers = append(run.Finalizers, v1alpha1.FinalizerServer)
	}
	if d.RemoveFinalizer {
		run.Finalizers = slices.DeleteFunc(run.Finalizers, func(f string) bool { return f == v1alpha1.FinalizerServer })
	}
	next.Run = run
	next.Objects = maps.Clone(in.Objects)
	if next.Objects == nil {
		next.Objects = Objects{}
	}
	primary := Children(in.Run)[0].Kind
	for _, a := range d.Actions {
		var obj metav1.Object
		switch o := a.Object.(type) {
		case *unstructured.Unstructured:
			obj = asSandboxObject(o, createdUID[a.Kind])
		case runtime.Object:
			obj = o.DeepCopyObject().(metav1.Object)
		}
		switch a.Verb {
		case Create:
			obj.SetUID(types.UID(createdUID[a.Kind]))
			next.Objects[a.Kind] = obj
			if a.Kind == primary {
				next.WorkloadExpected = false
			}
		case Update:
			if dep, ok := obj.(*appsv1.Deployment); ok {
				dep.Status = *in.Objects[a.Kind].(*appsv1.Deployment).Status.DeepCopy()
			}
			next.Objects[a.Kind] = obj
		case Delete:
			delete(next.Objects, a.Kind)
			if a.Kind == primary {
				next.Pod = nil
			}
		case Retire:
			// A retired child leaves the informers (they select children
			// without the label).
			if a.Kind == KindPod {
				next.Pod = nil
			} else {
				delete(next.Objects, a.Kind)
			}
		}
	}
	return next
}

// createdUID is the UID the API server gives a created object, by kind.
var createdUID = map[Kind]string{KindJob: "job-uid", KindDeployment: "dep-uid", KindService: "svc-uid",
	KindSandbox: "sandbox-uid", KindSandboxClaim: "claim-uid"}

func asSandboxObject(u *unstructured.Unstructured, uid string) *SandboxObject {
	return &SandboxObject{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: types.UID(uid),
		Labels: u.GetLabels(), OwnerReferences: u.GetOwnerReferences(), CreationTimestamp: metav1.NewTime(now)}}
}

// assertNoActions checks that a decision asks for nothing.
func assertNoActions(t *testing.T, d Decision) {
	t.Helper()
	assert.Empty(t, d.Actions, "second pass acts on the workload")
	assert.Nil(t, d.SetOwner, "second pass sets the owner")
	assert.False(t, d.AddFinalizer || d.RemoveFinalizer, "second pass changes the finalizer")
	assert.Empty(t, d.Events, "second pass emits events")
}

// TestBackendSpecifics covers what only one backend does.
func TestBackendSpecifics(t *testing.T) {
	server, sandbox, claim := kits[1], kits[2], kits[3]
	withSidecarPack := func(in *Observed) {
		in.Run.Spec.Skills = []v1alpha1.SkillRef{{SkillPackRef: "web"}}
		in.SkillPacks = map[string]*v1alpha1.SkillPack{"web": {ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
			Spec: v1alpha1.SkillPackSpec{Sidecar: &v1alpha1.SkillSidecar{Image: "web:1", RequiresServer: true,
				Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 3000}}}}}}
	}
	cases := map[string]struct {
		in    func() Observed
		check func(t *testing.T, in Observed, d Decision)
	}{
		"sandbox API not served: SandboxUnavailable at once, nothing created": {
			in: func() Observed {
				return Observed{Run: sandbox.run(), Instance: newInstance(), SandboxAPI: SandboxAPI{Why: "the API group agents.x-k8s.io is not served"}}
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
				assert.Equal(t, v1alpha1.ReasonSandboxUnavailable, failedReason(&d.Status))
				assert.Contains(t, d.Status.Error, "agents.x-k8s.io is not served")
				assert.Nil(t, action[*unstructured.Unstructured](d, Create, KindSandbox))
			},
		},
		"sandbox API not served fails even a run whose instance is missing": {
			in: func() Observed { return Observed{Run: sandbox.run(), SandboxAPI: SandboxAPI{Why: "not installed"}} },
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonSandboxUnavailable, failedReason(&d.Status))
			},
		},
		"claim API served only as v1alpha1: SandboxUnavailable": {
			in: func() Observed {
				return Observed{Run: claim.run(), Instance: newInstance(),
					SandboxAPI: SandboxAPI{Sandbox: "agents.x-k8s.io/v1alpha1", Why: "sandboxclaims is served only as v1alpha1"}}
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonSandboxUnavailable, failedReason(&d.Status))
				assert.Contains(t, d.Status.Error, "v1alpha1")
			},
		},
		"a task run does not care about the sandbox API": {
			in: func() Observed { return Observed{Run: newRun(), Instance: newInstance()} },
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.PhasePending, d.Status.Phase)
				assert.NotNil(t, action[*batchv1.Job](d, Create, KindJob))
			},
		},
		"v1alpha1 Sandbox: spec.replicas instead of operatingMode": {
			in: func() Observed {
				return Observed{Run: sandbox.run(), Instance: newInstance(), SandboxAPI: SandboxAPI{Sandbox: "agents.x-k8s.io/v1alpha1"}}
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				require.NotNil(t, action[*unstructured.Unstructured](d, Create, KindSandbox))
				assert.Equal(t, "agents.x-k8s.io/v1alpha1", action[*unstructured.Unstructured](d, Create, KindSandbox).GetAPIVersion())
				r, _, _ := unstructured.NestedInt64(action[*unstructured.Unstructured](d, Create, KindSandbox).Object, "spec", "replicas")
				assert.EqualValues(t, 1, r)
			},
		},
		"the Sandbox carries the Job's pod template with the runtime class": {
			in: func() Observed { return Observed{Run: sandbox.run(), Instance: newInstance()} },
			check: func(t *testing.T, _ Observed, d Decision) {
				u := action[*unstructured.Unstructured](d, Create, KindSandbox)
				require.NotNil(t, u)
				assert.Equal(t, "Sandbox", u.GetKind())
				assert.Equal(t, "run", u.GetName())
				rp, _, _ := unstructured.NestedString(u.Object, "spec", "podTemplate", "spec", "restartPolicy")
				assert.Equal(t, "Never", rp)
				rc, _, _ := unstructured.NestedString(u.Object, "spec", "podTemplate", "spec", "runtimeClassName")
				assert.Equal(t, "gvisor", rc)
				l, _, _ := unstructured.NestedStringMap(u.Object, "spec", "podTemplate", "metadata", "labels")
				assert.Equal(t, v1alpha1.ManagedByValue, l[v1alpha1.LabelManagedBy])
				assert.Equal(t, "Sandbox run created", findCondition(d.Status.Conditions, v1alpha1.ConditionAdmitted).Message)
			},
		},
		"the claim names the warm pool and carries the run in annotations, no env or labels": {
			in: func() Observed { return Observed{Run: claim.run(), Instance: newInstance()} },
			check: func(t *testing.T, _ Observed, d Decision) {
				u := action[*unstructured.Unstructured](d, Create, KindSandboxClaim)
				require.NotNil(t, u)
				pool, _, _ := unstructured.NestedString(u.Object, "spec", "warmPoolRef", "name")
				assert.Equal(t, "pool", pool)
				_, hasEnv, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "env")
				assert.False(t, hasEnv, "env on a claim bypasses the warm pool")
				_, hasLabels, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "additionalPodMetadata", "labels")
				assert.False(t, hasLabels, "claim labels outside agent-sandbox's allowlist are refused")
				ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "additionalPodMetadata", "annotations")
				assert.Equal(t, "do it", ann["sympozium.ai/task"])
				assert.Equal(t, "run", ann["sympozium.ai/agent-run"])
				assert.Contains(t, ann["sympozium.ai/env"], `"TASK":"do it"`)
				assert.Equal(t, "run", d.Status.SandboxClaimName)
				assert.Empty(t, d.Status.SandboxName, "not bound yet")
			},
		},
		"a claim that gets bound: the bound Sandbox is recorded": {
			in: func() Observed {
				in := Observed{Run: claim.run(statusAdmitted("SandboxClaim run created on warm pool pool",
					func(st *v1alpha1.AgentRunStatus) { st.SandboxClaimName = "run" })), Instance: newInstance()}
				claim.workload(&in, nil)
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, boundSandbox, d.Status.SandboxName)
				assert.Equal(t, v1alpha1.PhasePending, d.Status.Phase)
			},
		},
		"a claim whose pod is not cached but Ready: Running on the bound Sandbox's pod": {
			in: func() Observed {
				in := Observed{Run: claim.run(claim.admitted), Instance: newInstance()}
				claim.workload(&in, newPod(agentRunning(t0)))
				in.Pod = nil
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.PhaseRunning, d.Status.Phase)
				assert.Equal(t, boundSandbox, d.Status.PodName)
				assert.Equal(t, t0.Add(5*time.Second), d.Status.StartedAt.Time)
			},
		},
		"a claim the pool refuses past the grace: SandboxRefused": {
			in: func() Observed {
				in := Observed{Run: claim.run(claim.admitted), Instance: newInstance()}
				claim.workload(&in, nil)
				in.Objects[KindSandboxClaim].(*SandboxObject).Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "WarmPoolNotFound", Message: "no pool"}}
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonSandboxRefused, failedReason(&d.Status))
				assert.Contains(t, d.Status.Error, "WarmPoolNotFound: no pool")
				assert.True(t, acts(d, Delete, KindSandboxClaim))
			},
		},
		"a finished Sandbox whose pod cannot be read: the outcome from its Finished condition": {
			in: func() Observed {
				in := Observed{Run: sandbox.run(sandbox.started), Instance: newInstance()}
				sandbox.workload(&in, newPod(agentExited(0, reportJSON)))
				in.Pod = nil
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.PhaseSucceeded, d.Status.Phase)
				assert.Contains(t, d.Status.Error, "could not be read")
				assert.Equal(t, ptr.To[int32](0), d.Status.ExitCode)
			},
		},
		"the sandbox's pod deleted under the agent: PodLost": {
			in: func() Observed {
				in := Observed{Run: sandbox.run(sandbox.started), Instance: newInstance()}
				sandbox.workload(&in, newPod(agentRunning(t0)))
				in.Pod = nil
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonPodLost, failedReason(&d.Status))
				assert.True(t, acts(d, Delete, KindSandbox))
			},
		},
		"sandbox API uninstalled under an admitted run: SandboxUnavailable": {
			in: func() Observed {
				return Observed{Run: sandbox.run(sandbox.started), Instance: newInstance(), SandboxAPI: SandboxAPI{Why: "gone"}}
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonSandboxUnavailable, failedReason(&d.Status))
			},
		},
		"server: a server sidecar runs alone, the Service exposes its ports": {
			in: func() Observed {
				in := Observed{Run: server.run(), Instance: newInstance()}
				withSidecarPack(&in)
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				require.NotNil(t, action[*corev1.Service](d, Create, KindService))
				assert.Equal(t, []corev1.ServicePort{{Name: "web", Protocol: corev1.ProtocolTCP, Port: 3000, TargetPort: intOrInt(3000)}}, action[*corev1.Service](d, Create, KindService).Spec.Ports)
				containers := action[*appsv1.Deployment](d, Create, KindDeployment).Spec.Template.Spec.Containers
				require.Len(t, containers, 1, "the web proxy, not the agent's one-shot task")
				assert.Equal(t, "web-proxy", containers[0].Name)
				assert.Equal(t, []corev1.ContainerPort{{Name: "web", ContainerPort: 3000, Protocol: corev1.ProtocolTCP}}, containers[0].Ports)
				assert.Equal(t, corev1.RestartPolicyAlways, action[*appsv1.Deployment](d, Create, KindDeployment).Spec.Template.Spec.RestartPolicy)
			},
		},
		"server: without sidecar ports, 8080 named http on the agent": {
			in: func() Observed { return Observed{Run: server.run(), Instance: newInstance()} },
			check: func(t *testing.T, _ Observed, d Decision) {
				require.NotNil(t, action[*corev1.Service](d, Create, KindService))
				assert.Equal(t, "http", action[*corev1.Service](d, Create, KindService).Spec.Ports[0].Name)
				assert.EqualValues(t, 8080, action[*corev1.Service](d, Create, KindService).Spec.Ports[0].Port)
				assert.Equal(t, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
					action[*appsv1.Deployment](d, Create, KindDeployment).Spec.Template.Spec.Containers[0].Ports)
				assert.Equal(t, workload.ServerSelector(newRun()), action[*appsv1.Deployment](d, Create, KindDeployment).Spec.Selector.MatchLabels)
			},
		},
		"server: a spec update rolls the Deployment and keeps serving": {
			in: func() Observed {
				in := Observed{Run: server.run(server.started), Instance: newInstance()}
				server.workload(&in, newPod(agentRunning(t0)))
				in.Run.Spec.Task = "a new task"
				in.Run.Generation = 2
				return in
			},
			check: func(t *testing.T, in Observed, d Decision) {
				require.NotNil(t, action[*appsv1.Deployment](d, Update, KindDeployment))
				assert.Equal(t, in.Objects[KindDeployment].GetResourceVersion(), action[*appsv1.Deployment](d, Update, KindDeployment).ResourceVersion)
				assert.Contains(t, envOfTemplate(action[*appsv1.Deployment](d, Update, KindDeployment).Spec.Template), "TASK=a new task")
				assert.Nil(t, action[*corev1.Service](d, Update, KindService), "the ports did not change")
				assert.Equal(t, v1alpha1.PhaseServing, d.Status.Phase)
				assert.EqualValues(t, 2, d.Status.ObservedGeneration)
			},
		},
		"server: a new sidecar port updates the Service, keeping its cluster IP": {
			in: func() Observed {
				in := Observed{Run: server.run(server.started), Instance: newInstance()}
				server.workload(&in, newPod(agentRunning(t0)))
				withSidecarPack(&in)
				return in
			},
			check: func(t *testing.T, in Observed, d Decision) {
				require.NotNil(t, action[*corev1.Service](d, Update, KindService))
				assert.Equal(t, "10.0.0.10", action[*corev1.Service](d, Update, KindService).Spec.ClusterIP)
				assert.EqualValues(t, 3000, action[*corev1.Service](d, Update, KindService).Spec.Ports[0].Port)
				assert.NotNil(t, action[*appsv1.Deployment](d, Update, KindDeployment), "the sidecar joins the pod template")
			},
		},
		"server: nothing is rolled while the instance is missing from the cache": {
			in: func() Observed {
				in := Observed{Run: server.run(server.started), Instance: newInstance()}
				server.workload(&in, newPod(agentRunning(t0)))
				in.Instance = nil
				in.Run.Spec.Task = "changed"
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Nil(t, action[*appsv1.Deployment](d, Update, KindDeployment))
				assert.Nil(t, action[*corev1.Service](d, Update, KindService))
			},
		},
		"server: a deleted Service is created again": {
			in: func() Observed {
				in := Observed{Run: server.run(server.started), Instance: newInstance()}
				server.workload(&in, newPod(agentRunning(t0)))
				delete(in.Objects, KindService)
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				require.NotNil(t, action[*corev1.Service](d, Create, KindService))
				assert.Equal(t, v1alpha1.PhaseServing, d.Status.Phase)
			},
		},
		"server: a Service of the same name that is not ours: ChildNameConflict": {
			in: func() Observed {
				in := Observed{Run: server.run(server.admitted), Instance: newInstance()}
				server.workload(&in, nil)
				in.Objects[KindService].SetOwnerReferences(nil)
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonChildNameConflict, failedReason(&d.Status))
				assert.True(t, acts(d, Delete, KindDeployment))
				assert.False(t, acts(d, Delete, KindService), "not ours")
				assert.True(t, d.RemoveFinalizer)
			},
		},
		"server: a finalizer lost before the Deployment was seen is added again": {
			in: func() Observed {
				in := Observed{Run: server.run(serverAdmitted()), Instance: newInstance()}
				server.workload(&in, nil)
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) { assert.True(t, d.AddFinalizer) },
		},
		"server: serving past the timeout goes on serving": {
			in: func() Observed {
				in := Observed{Run: server.run(server.started, withTimeout(time.Minute)), Instance: newInstance(), Now: t0.Add(time.Hour)}
				server.workload(&in, newPod(agentRunning(t0)))
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.PhaseServing, d.Status.Phase)
				assert.Zero(t, d.RequeueAfter)
				assert.False(t, acts(d, Delete, KindDeployment))
			},
		},
		"server: an image that cannot be pulled fails after the grace": {
			in: func() Observed {
				in := Observed{Run: server.run(server.admitted), Instance: newInstance()}
				server.workload(&in, newPod(agentWaiting("ImagePullBackOff")))
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonImagePullFailed, failedReason(&d.Status))
				assert.True(t, acts(d, Delete, KindDeployment) && acts(d, Delete, KindService))
				assert.True(t, d.RemoveFinalizer)
			},
		},
		"server: deleted before it ever served: Failed, cleaned up, finalizer released": {
			in: func() Observed {
				in := Observed{Run: server.run(server.admitted, withDeleted()), Instance: newInstance()}
				server.workload(&in, nil)
				return in
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.ReasonServerNotReady, failedReason(&d.Status))
				assert.True(t, acts(d, Delete, KindDeployment) && acts(d, Delete, KindService) && d.RemoveFinalizer)
			},
		},
		"server: a finished run that still holds the finalizer releases it": {
			in: func() Observed {
				return Observed{Run: server.run(server.started, withPhase(v1alpha1.PhaseFailed), withDeleted()), Instance: newInstance()}
			},
			check: func(t *testing.T, _ Observed, d Decision) {
				assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
				assert.True(t, d.RemoveFinalizer)
				assert.Empty(t, d.Events)
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := tc.in()
			if in.Now.IsZero() {
				in.Now = now
			}
			in.Config = testConfig
			if in.SandboxAPI == (SandboxAPI{}) {
				in.SandboxAPI = servedAPI
			}
			before := in.Run.DeepCopy()
			d := Next(in)
			assert.Equal(t, before, in.Run, "Next mutated its input")
			for _, e := range d.Events {
				assert.Contains(t, v1alpha1.Reasons, e.Reason)
			}
			tc.check(t, in, d)
			assertIdempotent(t, in, d)
		})
	}
}

func envOfTemplate(tmpl corev1.PodTemplateSpec) []string {
	var out []string
	for _, c := range tmpl.Spec.Containers {
		for _, e := range c.Env {
			out = append(out, e.Name+"="+e.Value)
		}
	}
	return out
}

// TestServerTemplateIsStable: the server's pod template does not depend on
// the clock, or every sync would roll the Deployment.
func TestServerTemplateIsStable(t *testing.T) {
	run := newRun(withMode(v1alpha1.ModeServer))
	a, err := workload.Deployment(testConfig.Workload, workload.Inputs{Run: run, Instance: newInstance(), Now: now})
	require.NoError(t, err)
	b, err := workload.Deployment(testConfig.Workload, workload.Inputs{Run: run, Instance: newInstance(), Now: now.Add(time.Hour)})
	require.NoError(t, err)
	assert.True(t, apiequality.Semantic.DeepEqual(a, b))
	assert.Equal(t, naming.ServerName("run"), a.Name)
}

func intOrInt(i int32) intstr.IntOrString { return intstr.FromInt32(i) }

// FuzzNextBackends checks the machine's invariants on every backend: no
// panic, terminal phases absorb, a decision acts only on its own backend's
// objects, creates only what is absent and deletes only what is there.
func FuzzNextBackends(f *testing.F) {
	f.Add(uint8(1), uint8(0), uint8(0), uint16(60), uint8(0))
	f.Add(uint8(1), uint8(2), uint8(1), uint16(700), uint8(0b00011111))
	f.Add(uint8(2), uint8(2), uint8(2), uint16(30), uint8(0b00000111))
	f.Add(uint8(3), uint8(1), uint8(3), uint16(5), uint8(0b01000110))
	f.Add(uint8(1), uint8(4), uint8(4), uint16(900), uint8(0b10111101))
	f.Fuzz(func(t *testing.T, kitIdx, phaseIdx, podState uint8, elapsedSec uint16, flags uint8) {
		k := kits[int(kitIdx)%len(kits)]
		var opts []runOpt
		if flags&1 != 0 {
			opts = append(opts, k.admitted)
		}
		opts = append(opts, withPhase(fuzzPhases[int(phaseIdx)%len(fuzzPhases)]))
		if flags&8 != 0 {
			opts = append(opts, withDeleted())
		}
		if flags&16 != 0 {
			opts = append(opts, withFinalizer())
		}
		if flags&32 != 0 {
			opts = append(opts, withCleanup(v1alpha1.CleanupKeep))
		}
		run := k.run(opts...)
		in := Observed{Run: run, Config: testConfig, Now: t0.Add(time.Duration(elapsedSec) * time.Second), SandboxAPI: servedAPI}
		if flags&2 != 0 {
			in.Instance = newInstance()
		}
		if flags&64 != 0 {
			in.SandboxAPI = SandboxAPI{Why: "not installed"}
		}
		var pod *corev1.Pod
		switch podState % 6 {
		case 1:
			pod = newPod(agentRunning(t0))
		case 2:
			pod = newPod(agentExited(int32(podState), reportJSON))
		case 3:
			pod = newPod(agentWaiting("ErrImagePull"))
		case 4:
			pod = newPod(podCond(corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable, "no node"))
		case 5:
			pod = newPod(agentRunning(t0), func(p *corev1.Pod) { p.DeletionTimestamp = new(metav1.NewTime(t0)) })
		}
		if flags&4 != 0 {
			k.workload(&in, pod)
		} else {
			in.WorkloadExpected = flags&128 != 0
		}
		before := run.DeepCopy()
		d := Next(in)
		if !apiequality.Semantic.DeepEqual(before, run) {
			t.Fatalf("Next mutated the run")
		}
		creates, updates := verbs(d, Create), verbs(d, Update)
		if run.DeletionTimestamp != nil && !HasFinalizer(run) {
			// Left to the garbage collector, but for its cluster-scoped
			// grants (none here): nothing changes, not even the observed
			// generation.
			if !apiequality.Semantic.DeepEqual(run.Status, d.Status) || creates || len(d.Events) > 0 ||
				verbs(d, Delete) || d.SetOwner != nil || d.AddFinalizer || d.RemoveFinalizer {
				t.Fatalf("a run being deleted without the finalizer acted: %+v", d)
			}
			return
		}
		if run.Status.Phase.IsTerminal() {
			if !apiequality.Semantic.DeepEqual(withGeneration(run.Status, run.Generation), d.Status) {
				t.Fatalf("terminal phase %s changed: %+v -> %+v", run.Status.Phase, run.Status, d.Status)
			}
			if creates || len(d.Events) > 0 || d.SetOwner != nil || d.AddFinalizer {
				t.Fatalf("terminal phase acted: %+v", d)
			}
		}
		if d.Status.Phase == "" {
			t.Fatalf("empty phase written")
		}
		if d.RequeueAfter < 0 || (d.RequeueAfter > 0 && d.RequeueAfter < MinRequeue) {
			t.Fatalf("requeue %s", d.RequeueAfter)
		}
		if d.Status.Phase.IsTerminal() && (creates || updates || d.RequeueAfter != 0 || d.AddFinalizer) {
			t.Fatalf("finished run still creates, updates or requeues: %+v", d)
		}
		if d.Status.Phase.IsTerminal() && HasFinalizer(run) && !d.RemoveFinalizer {
			t.Fatalf("finished run keeps the finalizer")
		}
		if d.AddFinalizer && (d.RemoveFinalizer || HasFinalizer(run)) || d.RemoveFinalizer && !HasFinalizer(run) {
			t.Fatalf("finalizer actions do not match the run: %+v", d)
		}
		assertActionsMatchCache(t, in, d)
		if d.Status.ObservedGeneration != run.Generation {
			t.Fatalf("observedGeneration not kept")
		}
		assertOnlyBackendActions(t, k.backend, d)
		assertProgressEvents(t, d)
		decided := run.DeepCopy()
		decided.Status = d.Status
		if AdmissionUndecided(run) && AdmissionUndecided(decided) {
			t.Fatalf("the admission is still undecided after a decision: %+v", d.Status)
		}
	})
}
