package agentrun

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Discovery is the part of a discovery client SandboxAPI uses.
type Discovery interface {
	ServerGroupsWithContext(ctx context.Context) (*metav1.APIGroupList, error)
	ServerResourcesForGroupVersionWithContext(ctx context.Context, groupVersion string) (*metav1.APIResourceList, error)
}

// SandboxAPIConfig says where the agent-sandbox API is looked for.
type SandboxAPIConfig struct {
	// Group of Sandbox; workload.SandboxGroup when empty.
	Group string
	// ClaimGroup of SandboxClaim; workload.SandboxClaimGroup when empty.
	ClaimGroup string
	// Version pins the version of both; empty discovers it (v1beta1, else
	// v1alpha1 for Sandbox; claims need v1beta1).
	Version string
	// Namespace limits the informers to one namespace; "" watches all.
	Namespace string
	// Resync is the informers' resync period.
	Resync time.Duration
	// Recheck is how often discovery runs again in the background, so that
	// installing (or removing) the API is noticed without a restart; 1m
	// when zero. A run that needs the API while it is missing triggers a
	// check at once, at most once per minRecheck.
	Recheck time.Duration
}

// minRecheck bounds how often runs that need a missing agent-sandbox API
// trigger discovery.
const minRecheck = time.Second

// SandboxAPI tracks whether the cluster serves the agent-sandbox API and,
// while it does, keeps label-filtered dynamic informers on the Sandboxes
// and SandboxClaims this controller creates.
//
// The informers are not part of the controller's cache sync: a missing API
// never blocks the controller. Discovery runs at start-up, every Recheck,
// and (at most once per minRecheck) when a run needs the API and it was
// missing; informers start when their resource appears and stop when it
// goes. Runs that need the API wait for its informers to sync.
type SandboxAPI struct {
	cfg  SandboxAPIConfig
	disc Discovery
	dyn  dynamic.Interface
	now  func() time.Time

	mu      sync.Mutex
	ctx     context.Context // nil until Run: informers are built but not started
	checked time.Time
	state   phase.SandboxAPI
	infs    map[string]*dynInformer // by resource: sandboxes, sandboxclaims
	onEvent func(obj any, deleted bool)
	// assumeSynced makes never-started informers count as synced (tests).
	assumeSynced bool
}

type dynInformer struct {
	gvr     schema.GroupVersionResource
	inf     cache.SharedIndexInformer
	cancel  context.CancelFunc
	started bool
}

// NewSandboxAPI returns a SandboxAPI that has not looked for the API yet.
func NewSandboxAPI(disc Discovery, dyn dynamic.Interface, cfg SandboxAPIConfig) *SandboxAPI {
	if cfg.Group == "" {
		cfg.Group = workload.SandboxGroup
	}
	if cfg.ClaimGroup == "" {
		cfg.ClaimGroup = workload.SandboxClaimGroup
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = time.Minute
	}
	return &SandboxAPI{cfg: cfg, disc: disc, dyn: dyn, now: time.Now, infs: map[string]*dynInformer{},
		state: phase.SandboxAPI{Why: "not looked up yet"}}
}

// setHandler sets the function told about every informer event.
func (a *SandboxAPI) setHandler(fn func(obj any, deleted bool)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onEvent = fn
}

// Run looks for the API, then again every Recheck, until ctx is done; the
// informers run under ctx.
func (a *SandboxAPI) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	a.mu.Lock()
	a.ctx = ctx
	for _, di := range a.infs {
		a.startLocked(di)
	}
	a.mu.Unlock()
	if err := a.refresh(ctx); err != nil {
		logger.Error(err, "Looking up the agent-sandbox API failed; retrying later")
	}
	t := time.NewTicker(a.cfg.Recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.refresh(ctx); err != nil {
				logger.V(2).Info("Looking up the agent-sandbox API failed", "err", err)
			}
		}
	}
}

// Lookup returns what the cluster serves of the API. When what the run
// needs (claim: SandboxClaim, else Sandbox) was missing at the last check,
// and that check is older than minRecheck, it looks again first.
func (a *SandboxAPI) Lookup(ctx context.Context, claim bool) (phase.SandboxAPI, error) {
	a.mu.Lock()
	st, checked := a.state, a.checked
	a.mu.Unlock()
	missing := st.Sandbox == "" || (claim && st.Claim == "")
	if missing && a.now().Sub(checked) >= minRecheck {
		if err := a.refresh(ctx); err != nil {
			return st, err
		}
		a.mu.Lock()
		st = a.state
		a.mu.Unlock()
	}
	return st, nil
}

// invalidate forgets the last check, so that the next Lookup looks again
// (a create found the resource gone).
func (a *SandboxAPI) invalidate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checked = time.Time{}
	a.state = phase.SandboxAPI{Why: "the API disappeared"}
}

// Synced reports whether the informers of the served resources have
// synced.
func (a *SandboxAPI) Synced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, di := range a.infs {
		if !a.assumeSynced && !di.inf.HasSynced() {
			return false
		}
	}
	return true
}

// get returns the cached object of resource (sandboxes, sandboxclaims).
func (a *SandboxAPI) get(resource, namespace, name string) (*unstructured.Unstructured, error) {
	a.mu.Lock()
	di := a.infs[resource]
	a.mu.Unlock()
	if di == nil {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
	}
	obj, ok, err := di.inf.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewNotFound(di.gvr.GroupResource(), name)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the %s cache", obj, resource)
	}
	return u, nil
}

// client returns the dynamic client of resource in the served version;
// nil when it is not served.
func (a *SandboxAPI) client(resource string) dynamic.NamespaceableResourceInterface {
	a.mu.Lock()
	defer a.mu.Unlock()
	di := a.infs[resource]
	if di == nil {
		return nil
	}
	return a.dyn.Resource(di.gvr)
}

// refresh runs discovery and (re)builds the informers to match.
func (a *SandboxAPI) refresh(ctx context.Context) error {
	groups, err := a.disc.ServerGroupsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("discovering API groups: %w", err)
	}
	versions := []string{"v1beta1", "v1alpha1"}
	if a.cfg.Version != "" {
		versions = []string{a.cfg.Version}
	}
	sb, sbWhy, err := a.find(ctx, groups, a.cfg.Group, workload.SandboxResource, versions)
	if err != nil {
		return err
	}
	// Only v1beta1 claims name a warm pool.
	claimVersions := []string{"v1beta1"}
	if a.cfg.Version != "" && a.cfg.Version != "v1beta1" {
		claimVersions = nil
	}
	cl, clWhy, err := a.find(ctx, groups, a.cfg.ClaimGroup, workload.ClaimResource, claimVersions)
	if err != nil {
		return err
	}
	st := phase.SandboxAPI{}
	var why []string
	if !sb.Empty() {
		st.Sandbox = sb.GroupVersion().String()
	} else {
		why = append(why, sbWhy)
	}
	if !cl.Empty() {
		st.Claim = cl.GroupVersion().String()
	} else {
		why = append(why, clWhy)
	}
	st.Why = strings.Join(why, "; ")

	a.mu.Lock()
	defer a.mu.Unlock()
	if st != a.state {
		klog.FromContext(ctx).Info("Agent-sandbox API", "sandbox", st.Sandbox, "claim", st.Claim, "why", st.Why)
	}
	a.state, a.checked = st, a.now()
	a.ensureLocked(workload.SandboxResource, sb)
	a.ensureLocked(workload.ClaimResource, cl)
	return nil
}

// find returns the first of versions in which group serves resource, or
// why none does.
func (a *SandboxAPI) find(ctx context.Context, groups *metav1.APIGroupList, group, resource string, versions []string) (schema.GroupVersionResource, string, error) {
	var served []string
	for _, g := range groups.Groups {
		if g.Name == group {
			for _, v := range g.Versions {
				served = append(served, v.Version)
			}
		}
	}
	if len(served) == 0 {
		return schema.GroupVersionResource{}, fmt.Sprintf("the API group %s is not served (is agent-sandbox installed?)", group), nil
	}
	for _, v := range versions {
		if !slices.Contains(served, v) {
			continue
		}
		list, err := a.disc.ServerResourcesForGroupVersionWithContext(ctx, group+"/"+v)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return schema.GroupVersionResource{}, "", fmt.Errorf("discovering %s/%s: %w", group, v, err)
		}
		for _, r := range list.APIResources {
			if r.Name == resource {
				return schema.GroupVersionResource{Group: group, Version: v, Resource: resource}, "", nil
			}
		}
	}
	if len(versions) == 0 {
		return schema.GroupVersionResource{}, fmt.Sprintf("%s.%s is pinned to version %s, which cannot name a warm pool (v1beta1 can)", resource, group, a.cfg.Version), nil
	}
	return schema.GroupVersionResource{}, fmt.Sprintf("%s.%s is not served in version %s (the group serves %s)",
		resource, group, strings.Join(versions, " or "), strings.Join(served, ", ")), nil
}

// ensureLocked makes the informer of resource match gvr: none when it is
// empty, a new one when the version changed.
func (a *SandboxAPI) ensureLocked(resource string, gvr schema.GroupVersionResource) {
	cur := a.infs[resource]
	if cur != nil && cur.gvr == gvr {
		return
	}
	if cur != nil {
		if cur.cancel != nil {
			cur.cancel()
		}
		delete(a.infs, resource)
	}
	if gvr.Empty() {
		return
	}
	tweak := func(o *metav1.ListOptions) {
		o.LabelSelector = ChildSelector
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(a.dyn, gvr, a.cfg.Namespace, a.cfg.Resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, tweak).Informer()
	_ = inf.SetTransform(stripUnstructured)
	handler := a.onEvent
	if handler != nil {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { handler(obj, false) },
			UpdateFunc: func(_, obj any) { handler(obj, false) },
			DeleteFunc: func(obj any) { handler(obj, true) },
		})
	}
	di := &dynInformer{gvr: gvr, inf: inf}
	a.infs[resource] = di
	a.startLocked(di)
}

func (a *SandboxAPI) startLocked(di *dynInformer) {
	if a.ctx == nil || di.started {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	di.cancel, di.started = cancel, true
	go di.inf.RunWithContext(ctx)
}

// stripUnstructured keeps what the controller reads of a Sandbox or claim:
// its metadata (without managedFields) and status.
func stripUnstructured(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u.SetManagedFields(nil)
		delete(u.Object, "spec")
	}
	return obj, nil
}

// sandboxObject extracts what the phase machine reads of a Sandbox or
// SandboxClaim.
func sandboxObject(u *unstructured.Unstructured) *phase.SandboxObject {
	o := &phase.SandboxObject{ObjectMeta: metav1.ObjectMeta{
		Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		Labels: u.GetLabels(), Annotations: u.GetAnnotations(), OwnerReferences: u.GetOwnerReferences(),
		CreationTimestamp: u.GetCreationTimestamp(), DeletionTimestamp: u.GetDeletionTimestamp(),
	}}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		var cond metav1.Condition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond); err == nil {
			o.Conditions = append(o.Conditions, cond)
		}
	}
	o.BoundSandbox, _, _ = unstructured.NestedString(u.Object, "status", "sandbox", "name")
	if o.BoundSandbox == "" {
		o.BoundSandbox = u.GetAnnotations()["agents.x-k8s.io/sandbox-name"]
	}
	return o
}

// The warm pools and templates of agent-sandbox's extensions, read once per
// run that phase.NeedsPoolTemplate, before its claim is created.
var (
	warmPoolsGVR = schema.GroupVersionResource{Group: workload.SandboxClaimGroup, Version: "v1beta1", Resource: "sandboxwarmpools"}
	templatesGVR = schema.GroupVersionResource{Group: workload.SandboxClaimGroup, Version: "v1beta1", Resource: "sandboxtemplates"}
)

// PoolTemplate reads the SandboxTemplate of warm pool pool in namespace ns
// from the API server. A pool or template that does not exist is reported
// in PoolTemplate.Why; other errors are returned (the sync is retried).
func (a *SandboxAPI) PoolTemplate(ctx context.Context, ns, pool string) (*phase.PoolTemplate, error) {
	p, err := a.dyn.Resource(warmPoolsGVR).Namespace(ns).Get(ctx, pool, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &phase.PoolTemplate{Why: fmt.Sprintf("SandboxWarmPool %q not found", pool)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading SandboxWarmPool %s/%s: %w", ns, pool, err)
	}
	name, _, _ := unstructured.NestedString(p.Object, "spec", "sandboxTemplateRef", "name")
	t, err := a.dyn.Resource(templatesGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &phase.PoolTemplate{Why: fmt.Sprintf("SandboxTemplate %q of SandboxWarmPool %q not found", name, pool)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading SandboxTemplate %s/%s: %w", ns, name, err)
	}
	raw, _, _ := unstructured.NestedMap(t.Object, "spec", "podTemplate", "spec")
	var spec corev1.PodSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
		return &phase.PoolTemplate{Why: fmt.Sprintf("SandboxTemplate %q: %v", name, err)}, nil
	}
	out := &phase.PoolTemplate{Name: name}
	if spec.RuntimeClassName != nil {
		out.RuntimeClassName = *spec.RuntimeClassName
	}
	out.Volumes = spec.Volumes
	for i := range spec.Containers {
		if spec.Containers[i].Name == v1alpha1.AgentContainerName {
			out.Agent = spec.Containers[i].Resources.DeepCopy()
			out.HasAgent = true
			out.AgentMounts = spec.Containers[i].VolumeMounts
		}
	}
	return out, nil
}
