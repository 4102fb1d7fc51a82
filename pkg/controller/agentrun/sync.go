package agentrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/index"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

// LogReader reads the end of a container's log.
type LogReader interface {
	TailLog(ctx context.Context, namespace, pod, container string, limitBytes int64) (string, error)
}

// KubeLogReader reads logs through the API server (pods/log).
type KubeLogReader struct{ Client kubernetes.Interface }

// TailLog returns at most the last limitBytes of the container's log. The
// server is asked for the last lines only; of what it sends, at most
// maxLogRead bytes are read and only the end is kept, so that a verbose
// agent's result marker (always near the end) is not cut off.
func (r KubeLogReader) TailLog(ctx context.Context, namespace, pod, container string, limitBytes int64) (string, error) {
	tail := int64(500)
	stream, err := r.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, TailLines: &tail,
	}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = stream.Close() }()
	return lastBytes(io.LimitReader(stream, maxLogRead), limitBytes)
}

// maxLogRead bounds how much of a log tail is read at all.
const maxLogRead = 8 << 20

// lastBytes reads r to the end and returns its last n bytes.
func lastBytes(r io.Reader, n int64) (string, error) {
	buf := make([]byte, 0, 2*n)
	chunk := make([]byte, 32<<10)
	for {
		k, err := r.Read(chunk)
		buf = append(buf, chunk[:k]...)
		if int64(len(buf)) > 2*n {
			buf = append(buf[:0], buf[int64(len(buf))-n:]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	if int64(len(buf)) > n {
		buf = buf[int64(len(buf))-n:]
	}
	return string(buf), nil
}

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) error {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "agentRun", key)
	ctx = klog.NewContext(ctx, logger)
	start := c.now()
	defer func() { logger.V(4).Info("Finished syncing", "duration", c.now().Sub(start)) }()

	run, err := c.runs.Get(key.Namespace, key.Name)
	if apierrors.IsNotFound(err) {
		// Deleted: there is no run to decide on. Its children are
		// garbage-collected through their ownerReferences; its
		// cluster-scoped grants, which have no namespaced owner, are swept
		// here.
		return c.sweepClusterGrants(ctx, key)
	}
	if err != nil {
		return err
	}
	if c.writes.stale(run) {
		logger.V(4).Info("Cached run is older than the last write; waiting for the informer")
		return nil
	}
	obs, err := c.observe(ctx, run)
	if errors.Is(err, errSandboxNotSynced) {
		logger.V(4).Info("Waiting for the agent-sandbox informers to sync")
		c.queue.AddAfter(key, time.Second)
		return nil
	}
	if err != nil {
		return err
	}
	if lock := c.admissionLock(run, obs.Instance); lock != "" {
		// Admissions a limit concerns are serialised (per instance, or
		// controller-wide), so that two workers never fill the same free
		// slot.
		unlock := c.admissions.lock(lock)
		defer unlock()
		c.observeCapacity(run, &obs)
	}
	refused, now, err := c.apply(ctx, run, phase.Next(obs), false)
	if err != nil || refused.Kind == "" {
		return err
	}
	// The API server refused a write (or the cached copy of a finished run
	// was compacted): decide once more on the run as it is now, knowing
	// that. Once only: a second refusal is an error, retried with backoff.
	obs.Run, obs.Refused = now, refused
	refused, _, err = c.apply(ctx, now, phase.Next(obs), refused.Kind == phase.RefusedCompacted)
	if err == nil && refused.Kind != "" {
		err = fmt.Errorf("refused again (%s): %s", refused.Kind, refused.Reason)
	}
	return err
}

// errSandboxNotSynced says a run needs the agent-sandbox informers, which
// have not synced yet.
var errSandboxNotSynced = errors.New("agent-sandbox informers not synced")

// observe gathers what the run's decision depends on from the listers.
func (c *Controller) observe(ctx context.Context, run *v1alpha1.AgentRun) (phase.Observed, error) {
	obs := phase.Observed{Run: run, Config: c.opts.Phase, Now: c.now()}
	inst, err := c.instances.SympoziumInstances(run.Namespace).Get(run.Spec.InstanceRef)
	switch {
	case err == nil:
		obs.Instance = inst
	case !apierrors.IsNotFound(err):
		return obs, err
	}
	if err := c.observeWorkload(ctx, run, &obs); err != nil {
		return obs, err
	}
	c.observeGrants(run, &obs)
	c.observeOrphanGrants(run, &obs)
	if run.Status.Phase.IsTerminal() {
		return obs, nil
	}
	if !phase.IsAdmitted(run) || phase.BackendOf(run) == phase.BackendServer {
		// A server's spec is rebuilt from its skill packs as long as it
		// lives (its Deployment rolls when they change).
		c.observeSkills(run, &obs)
	}
	if phase.BackendOf(run) == phase.BackendServer {
		obs.NewAPIKey = newAPIKey() // used only when the Secret is created
	}
	if !phase.IsAdmitted(run) {
		if p := run.Spec.Parent; p != nil {
			parent, err := c.runs.Get(run.Namespace, p.RunName)
			if err == nil {
				obs.Parent = parent
			}
			obs.ChildRank = c.childRank(run)
		}
	} else if p := run.Spec.Parent; p != nil {
		if parent, err := c.runs.Get(run.Namespace, p.RunName); err == nil {
			obs.Parent = parent
		}
	}
	obs.LogTail = c.logTailIfNeeded(ctx, obs.Pod)
	return obs, nil
}

// observeWorkload looks up the run's workload objects (the children its
// backend makes, by their deterministic names) and its agent pod.
func (c *Controller) observeWorkload(ctx context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) error {
	b := c.backends[phase.BackendOf(run)]
	if b.prepare != nil {
		if ok, err := b.prepare(ctx, run, obs); err != nil || !ok {
			return err
		}
	}
	// The expectation first, the cache after: the informer stores the
	// workload before its handler observes the create, so a workload the
	// cache misses below was still expected here. (Read the other way
	// round, the workload could arrive between the two reads and be
	// neither cached nor expected: JobLost for a run whose Job exists, 2
	// runs in 40,000 under load.)
	expected := c.expectations.workloadExpected(run.UID)
	obs.Objects = phase.Objects{}
	for i, child := range phase.Children(run) {
		obj, err := c.kinds[child.Kind].get(run.Namespace, child.Name)
		switch {
		case err == nil && c.expectations.deleting(obj.GetUID()):
			// Deleted by this controller; the cache has not caught up.
		case err == nil:
			obs.Objects[child.Kind] = obj
		case apierrors.IsNotFound(err):
			if i == 0 {
				obs.WorkloadExpected = expected || c.workloadInFlight(ctx, run, child)
			}
		default:
			return err
		}
	}
	obs.Pod = b.pod(ctx, run, obs)
	if obs.Pod != nil && c.expectations.deleting(obs.Pod.UID) {
		obs.Pod = nil // retired; the cache has not caught up
	}
	if obs.Pod != nil && obs.Pod.DeletionTimestamp != nil {
		c.confirmWorkload(ctx, run, obs)
	}
	return nil
}

// confirmWorkload checks, for a live task or sandbox run whose agent pod is
// being deleted, that its workload is still on the API server. A workload
// deleted with background propagation is gone before the garbage
// collector deletes its pods, but the pods' watch may deliver their
// deletion before the workload's watch delivers its own: the run lost its
// workload (JobLost), not only its pod (PodLost). One read, on that path
// only; a workload that is gone leaves obs.Objects, as if the cache had
// caught up.
func (c *Controller) confirmWorkload(ctx context.Context, run *v1alpha1.AgentRun, obs *phase.Observed) {
	children := phase.Children(run)
	if len(children) == 0 || phase.BackendOf(run) == phase.BackendServer || run.Status.Phase.IsTerminal() || run.DeletionTimestamp != nil {
		return
	}
	child := children[0]
	cached, ok := obs.Objects[child.Kind]
	kc := c.kinds[child.Kind]
	if !ok || cached == nil || kc.read == nil {
		return
	}
	live, err := kc.read(ctx, run.Namespace, child.Name)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return // the cache decides, as without the read
	case live.GetUID() == cached.GetUID():
		return
	}
	klog.FromContext(ctx).V(2).Info("The run's "+string(child.Kind)+" is gone; the cache does not show it yet", "object", klog.KRef(run.Namespace, child.Name))
	delete(obs.Objects, child.Kind)
}

// workloadInFlight reports whether the workload of a live, admitted run,
// which the cache does not show, exists all the same: the cache lags (its
// watch came later than the run's own, or the expectation of the create was
// lost). The run fails for a lost workload (JobLost) only once the API
// server confirms it is gone; this costs one read, on that path only.
func (c *Controller) workloadInFlight(ctx context.Context, run *v1alpha1.AgentRun, child phase.Child) bool {
	kc := c.kinds[child.Kind]
	if kc.read == nil || !phase.IsAdmitted(run) || run.Status.Phase.IsTerminal() || run.DeletionTimestamp != nil {
		return false
	}
	obj, err := kc.read(ctx, run.Namespace, child.Name)
	if err != nil {
		return false
	}
	if !metav1.IsControlledBy(obj, run) || obj.GetDeletionTimestamp() != nil {
		return false
	}
	klog.FromContext(ctx).V(2).Info("The cache does not show the run's "+string(child.Kind)+" yet", "object", klog.KRef(run.Namespace, child.Name))
	return true
}

// serverPod returns the newest pod of the run's Deployment (a pod with the
// run's label, controlled by a ReplicaSet).
func (c *Controller) serverPod(run *v1alpha1.AgentRun) *corev1.Pod {
	objs, err := c.podIndex.ByIndex(index.PodsByRun, index.RunLabelKey(run.Namespace, run.Name))
	if err != nil {
		return nil
	}
	return newestPod(objs, func(p *corev1.Pod) bool {
		ref := metav1.GetControllerOf(p)
		return ref != nil && ref.Kind == "ReplicaSet"
	})
}

// newestPod returns the newest of the pods objs that keep accepts (by
// creation time, then by name), or nil.
func newestPod(objs []any, keep func(*corev1.Pod) bool) *corev1.Pod {
	var newest *corev1.Pod
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok || (keep != nil && !keep(p)) {
			continue
		}
		if newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) ||
			(newest.CreationTimestamp.Equal(&p.CreationTimestamp) && newest.Name < p.Name) {
			newest = p
		}
	}
	return newest
}

// sandboxPod returns the pod of Sandbox sandbox: named like it and
// controlled by it (by UID when it is the run's own). A claimed pod is made
// by the warm pool and may not carry the run's labels, so when the claim
// reports its sandbox finished and the cache has no such pod, it is read
// once from the API server.
func (c *Controller) sandboxPod(ctx context.Context, run *v1alpha1.AgentRun, sandbox string, uid types.UID, claim *phase.SandboxObject) *corev1.Pod {
	ours := func(p *corev1.Pod) bool {
		ref := metav1.GetControllerOf(p)
		return ref != nil && ref.Kind == workload.SandboxKind && ref.Name == sandbox && (uid == "" || ref.UID == uid)
	}
	pods := c.kinds[phase.KindPod]
	if obj, err := pods.get(run.Namespace, sandbox); err == nil {
		if p, ok := obj.(*corev1.Pod); ok && ours(p) {
			return p
		}
		return nil
	}
	if claim == nil || meta.FindStatusCondition(claim.Conditions, phase.SandboxConditionFinished) == nil {
		return nil
	}
	obj, err := pods.read(ctx, run.Namespace, sandbox)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Reading the claimed sandbox's pod failed", "pod", klog.KRef(run.Namespace, sandbox), "err", err)
		return nil
	}
	if p, ok := obj.(*corev1.Pod); ok && ours(p) {
		return p
	}
	return nil
}

// observeSkills looks up the SkillPacks the run mounts and the ConfigMaps
// that are missing.
func (c *Controller) observeSkills(run *v1alpha1.AgentRun, obs *phase.Observed) {
	refs := append([]v1alpha1.SkillRef(nil), run.Spec.Skills...)
	if obs.Instance != nil {
		refs = append(refs, obs.Instance.Spec.Skills...)
	}
	mirrored := map[string]bool{}
	for _, ref := range refs {
		sp, mirror := workload.ResolveSkillPack(ref.SkillPackRef, run.Namespace, c.opts.Phase.SkillsNamespace, c.getSkillPack)
		if sp == nil {
			continue
		}
		if obs.SkillPacks == nil {
			obs.SkillPacks = map[string]*v1alpha1.SkillPack{}
		}
		obs.SkillPacks[sp.Name] = sp
		if mirror && (ref.ConfigMapRef == "" || ref.ConfigMapRef == sp.Name) && !mirrored[sp.Name] {
			mirrored[sp.Name] = true
			obs.SkillMirrors = append(obs.SkillMirrors, c.skillMirror(run, sp))
		}
	}
	for _, name := range workload.SkillConfigMaps(workload.Inputs{Run: run, Instance: obs.Instance, SkillPacks: obs.SkillPacks}) {
		if _, err := c.configMaps.ByNamespace(run.Namespace).Get(name); apierrors.IsNotFound(err) && !mirrored[name] {
			obs.MissingConfigMaps = append(obs.MissingConfigMaps, name)
		}
	}
}

// agentPod returns the newest pod controlled by job.
func (c *Controller) agentPod(job *batchv1.Job) *corev1.Pod {
	objs, err := c.podIndex.ByIndex(index.PodsByJob, string(job.UID))
	if err != nil {
		return nil
	}
	return newestPod(objs, nil)
}

// childRank is the run's position among its parent's children, oldest
// first, not counting children the limits refused.
func (c *Controller) childRank(run *v1alpha1.AgentRun) int {
	rank := 0
	for _, r := range c.runs.Children(run.Namespace, run.Spec.Parent.RunName) { // finished siblings count too
		if r.UID == run.UID || !phase.Older(r, run) || refusedAsExtraChild(r) {
			continue
		}
		rank++
	}
	return rank
}

// refusedAsExtraChild reports a child the limits refused (too deep, or one
// too many): it never held one of its parent's child slots.
func refusedAsExtraChild(r *v1alpha1.AgentRun) bool {
	for _, cond := range r.Status.Conditions {
		if cond.Type == v1alpha1.ConditionFailed && cond.Status == metav1.ConditionTrue &&
			(cond.Reason == v1alpha1.ReasonTooManyChildren || cond.Reason == v1alpha1.ReasonSpawnDepthExceeded) {
			return true
		}
	}
	return false
}

// observeSubagents counts the instance's active sub-agent runs (including
// admissions the cache does not show yet) and the waiting ones ahead of run.
// The caller holds the instance's admission lock.
func (c *Controller) observeSubagents(run *v1alpha1.AgentRun, obs *phase.Observed) {
	unseen := c.admissions.unseen(runstore.InstanceKey(run.Namespace, run.Spec.InstanceRef), run.UID)
	counted := map[types.UID]bool{}
	for _, r := range c.runs.LiveSubagents(run.Namespace, run.Spec.InstanceRef) {
		if r.UID == run.UID || r.Spec.Parent == nil {
			continue
		}
		switch {
		case r.Status.Phase.IsTerminal():
		case phase.IsAdmitted(r) || unseen[r.UID]:
			obs.ActiveSubagents++
			counted[r.UID] = true
		case phase.AheadForSubagentLimit(run, r):
			obs.WaitingAhead++
		}
	}
	for uid := range unseen {
		if !counted[uid] {
			obs.ActiveSubagents++
		}
	}
}

// logTailIfNeeded reads the agent's log tail when the agent terminated
// without a report in its termination message (older runners print it).
func (c *Controller) logTailIfNeeded(ctx context.Context, pod *corev1.Pod) string {
	if c.opts.Logs == nil || pod == nil {
		return ""
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name != v1alpha1.AgentContainerName || s.State.Terminated == nil {
			continue
		}
		if _, ok := result.Parse(s.State.Terminated.Message); ok {
			return ""
		}
		tail, err := c.opts.Logs.TailLog(ctx, pod.Namespace, pod.Name, s.Name, result.LogTailBytes)
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Reading the agent's log failed; no result marker", "pod", klog.KObj(pod), "err", err)
			return ""
		}
		return tail
	}
	return ""
}
