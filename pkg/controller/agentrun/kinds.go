package agentrun

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/index"
)

// ChildSelector selects the children the controller caches: those it
// manages, except the ones finished runs keep (retired, see phase.Retire).
const ChildSelector = v1alpha1.LabelManagedBy + "=" + v1alpha1.ManagedByValue + ",!" + v1alpha1.LabelRetired

// registrations are the controller's side of each backend, one entry per
// backend plus the kinds every backend shares: the kinds of children it
// makes (each a childKind: where it is cached, what its events mean, the
// verbs the controller uses on it and so the RBAC rule it needs) and how
// its agent pod is found. The controller builds its kind → client table,
// its child informers and their handlers from them; the manager and the
// fixture harness get the child informers through them (Informers.Children);
// a unit test checks manifests/rbac against their rules.
//
// A new backend is an adapter in package phase, a builder in package
// workload, and one entry here.
var registrations = []registration{
	{backend: phase.BackendTask, kinds: []childKind{{
		kind: phase.KindJob, resource: batchv1.SchemeGroupVersion.WithResource("jobs"),
		cache: childCache, events: workloadEvents, verbs: verbs("get", "create", "delete", "patch"),
		informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Batch().V1().Jobs().Informer()
		},
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*batchv1.Job] { return k.BatchV1().Jobs(ns) }),
	}}, observer: taskObserver},
	{backend: phase.BackendServer, kinds: []childKind{{
		kind: phase.KindDeployment, resource: appsv1.SchemeGroupVersion.WithResource("deployments"),
		cache: childCache, events: workloadEvents, verbs: verbs("get", "create", "update", "delete", "patch"),
		informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Apps().V1().Deployments().Informer()
		},
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*appsv1.Deployment] {
			return k.AppsV1().Deployments(ns)
		}),
	}, {
		kind: phase.KindService, resource: corev1.SchemeGroupVersion.WithResource("services"),
		cache: childCache, events: ownedEvents, verbs: verbs("create", "update", "delete", "patch"),
		informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Core().V1().Services().Informer()
		},
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*corev1.Service] { return k.CoreV1().Services(ns) }),
	}, {
		// The generated API key of the web proxy, created when missing.
		kind: phase.KindSecret, resource: corev1.SchemeGroupVersion.WithResource("secrets"),
		verbs:  verbs("create"),
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*corev1.Secret] { return k.CoreV1().Secrets(ns) }),
	}}, observer: serverObserver},
	{backend: phase.BackendSandbox, kinds: []childKind{{
		kind: phase.KindSandbox, resource: schema.GroupVersionResource{Group: workload.SandboxGroup, Resource: workload.SandboxResource},
		cache: discoveredCache, verbs: verbs("get", "create", "delete", "patch"),
		client: sandboxClient(workload.SandboxResource),
	}}, observer: sandboxObserver(false)},
	{backend: phase.BackendSandboxClaim, kinds: []childKind{{
		kind: phase.KindSandboxClaim, resource: schema.GroupVersionResource{Group: workload.SandboxClaimGroup, Resource: workload.ClaimResource},
		cache: discoveredCache, verbs: verbs("get", "create", "delete", "patch"),
		client: sandboxClient(workload.ClaimResource),
	}}, observer: sandboxObserver(true), rules: []rbacv1.PolicyRule{{
		// The warm pool's template, read before the claim of a run that
		// sets runtimeClass or resources (SandboxAPI.PoolTemplate).
		APIGroups: []string{warmPoolsGVR.Group}, Resources: []string{warmPoolsGVR.Resource, templatesGVR.Resource}, Verbs: []string{"get"},
	}}},
	{kinds: []childKind{{
		// The agent pod: made by the workload's controller, only ever
		// retired (phase.KindPod); a claimed sandbox's pod, made by its
		// warm pool without the run's labels, is read once (sandboxPod).
		kind: phase.KindPod, resource: corev1.SchemeGroupVersion.WithResource("pods"),
		cache: childCache, events: podEvents, index: index.Add, verbs: verbs("get", "patch"),
		informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Core().V1().Pods().Informer()
		},
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*corev1.Pod] { return k.CoreV1().Pods(ns) }),
	}, {
		// A SkillPack's mirror in the run's namespace; ConfigMaps are
		// watched metadata-only (Informers.ConfigMaps), for the ones a
		// waiting run needs.
		kind: phase.KindConfigMap, resource: corev1.SchemeGroupVersion.WithResource("configmaps"),
		cache: handedCache, verbs: verbs("create", "update"),
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*corev1.ConfigMap] {
			return k.CoreV1().ConfigMaps(ns)
		}),
	}, {
		// The per-run identity (identity.go): created, and the grants
		// deleted when the run ends; the grants are watched
		// (Informers.Grants) and read by index, never by name.
		kind: phase.KindServiceAccount, resource: corev1.SchemeGroupVersion.WithResource("serviceaccounts"),
		verbs: verbs("create"),
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*corev1.ServiceAccount] {
			return k.CoreV1().ServiceAccounts(ns)
		}),
	}, {
		kind: phase.KindRole, resource: rbacv1.SchemeGroupVersion.WithResource("roles"),
		verbs:  verbs("create"),
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*rbacv1.Role] { return k.RbacV1().Roles(ns) }),
	}, {
		kind: phase.KindRoleBinding, resource: rbacv1.SchemeGroupVersion.WithResource("rolebindings"),
		cache: handedCache, verbs: verbs("create", "delete"),
		client: typed(func(k kubernetes.Interface, ns string) typedClient[*rbacv1.RoleBinding] {
			return k.RbacV1().RoleBindings(ns)
		}),
	}, {
		kind: phase.KindClusterRole, resource: rbacv1.SchemeGroupVersion.WithResource("clusterroles"),
		cache: handedCache, verbs: verbs("create", "delete"),
		client: typed(func(k kubernetes.Interface, _ string) typedClient[*rbacv1.ClusterRole] {
			return k.RbacV1().ClusterRoles()
		}),
	}, {
		kind: phase.KindClusterRoleBinding, resource: rbacv1.SchemeGroupVersion.WithResource("clusterrolebindings"),
		cache: handedCache, verbs: verbs("create", "delete"),
		client: typed(func(k kubernetes.Interface, _ string) typedClient[*rbacv1.ClusterRoleBinding] {
			return k.RbacV1().ClusterRoleBindings()
		}),
	}}},
}

// registration is the controller's side of one backend (backend "" for
// the kinds all backends share).
type registration struct {
	backend phase.Backend
	kinds   []childKind
	// observer is the controller's part of the backend beyond reading its
	// children from the caches (backends.go).
	observer func(c *Controller) backendObserver
	// rules are the RBAC rules the backend needs beyond its kinds'.
	rules []rbacv1.PolicyRule
}

// childKind registers one kind of a run's children.
type childKind struct {
	kind phase.Kind
	// resource is the kind's API resource; a discovered kind's version is
	// the one discovery finds.
	resource schema.GroupVersionResource
	cache    cacheSource
	// events says what an event of a kind cached by the child informers
	// means (cache childCache).
	events childEvents
	// informer gets the kind's informer from the child informers' factory
	// (cache childCache), through its typed constructor: a lookup by
	// resource (the factory's ForResource) would link the informer of
	// every resource client-go knows into the binary (ChildFactory).
	informer func(informers.SharedInformerFactory) cache.SharedIndexInformer
	// index, when set, adds the indexes the controller reads the kind's
	// informer by.
	index func(cache.SharedIndexInformer) error
	// verbs are the only verbs the controller sends for the kind to the
	// API server: get (a read past the cache), create, update, delete,
	// patch. Its client has these and no other (kindClient).
	verbs []string
	// client builds the kind's client over the controller's clients.
	client func(c *Controller) kindClient
}

// cacheSource says where the controller's cache of a kind comes from.
type cacheSource int

const (
	// notCached: the kind is only written.
	notCached cacheSource = iota
	// childCache: a shared informer of the children (Informers.Children,
	// label-selected by ChildSelector), read by name.
	childCache
	// handedCache: an informer handed to the controller apart
	// (Informers.ConfigMaps, Informers.Grants), read by index or for
	// existence, not by name through the kind's client.
	handedCache
	// discoveredCache: the SandboxAPI's dynamic informers, while
	// discovery finds the API served.
	discoveredCache
)

func verbs(v ...string) []string { return v }

// childKinds is every registered kind, by kind.
var childKinds = func() map[phase.Kind]childKind {
	out := map[phase.Kind]childKind{}
	for _, r := range registrations {
		for _, k := range r.kinds {
			if _, dup := out[k.kind]; dup {
				panic("kind " + string(k.kind) + " registered twice")
			}
			out[k.kind] = k
		}
	}
	return out
}()

// rbacRules are the RBAC rules the registrations need: for each kind, list
// and watch when an informer watches it, and its verbs; then each backend's
// own rules.
func rbacRules() []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range registrations {
		for _, k := range r.kinds {
			var v []string
			if k.cache != notCached {
				v = append(v, "list", "watch")
			}
			out = append(out, rbacv1.PolicyRule{APIGroups: []string{k.resource.Group}, Resources: []string{k.resource.Resource},
				Verbs: append(v, k.verbs...)})
		}
		out = append(out, r.rules...)
	}
	return out
}

// kindClient reads one kind of a run's children from its cache and writes
// it through the API server: the table apply executes a Decision's
// actions through, and observe reads a backend's children with. A verb the
// kind's registration does not declare is nil.
type kindClient struct {
	// get returns the cached object; an IsNotFound error when the cache
	// has none.
	get    func(namespace, name string) (metav1.Object, error)
	create func(ctx context.Context, obj metav1.Object, opts metav1.CreateOptions) error
	update func(ctx context.Context, obj metav1.Object, opts metav1.UpdateOptions) error
	delete func(ctx context.Context, namespace, name string, opts metav1.DeleteOptions) error
	// read gets the object from the API server, not the cache: a run's
	// recorded workload the cache does not show is confirmed there before
	// the run fails for its loss (see workloadInFlight).
	read func(ctx context.Context, namespace, name string) (metav1.Object, error)
	// patch applies a JSON merge patch (a Retire).
	patch func(ctx context.Context, namespace, name string, data []byte, opts metav1.PatchOptions) error
	// discovered marks a kind whose API is found through discovery: a
	// create refused with NotFound means the API went away.
	discovered bool
}

// only keeps the verbs v of the client.
func (kc kindClient) only(v []string) kindClient {
	if !slices.Contains(v, "get") {
		kc.read = nil
	}
	if !slices.Contains(v, "create") {
		kc.create = nil
	}
	if !slices.Contains(v, "update") {
		kc.update = nil
	}
	if !slices.Contains(v, "delete") {
		kc.delete = nil
	}
	if !slices.Contains(v, "patch") {
		kc.patch = nil
	}
	return kc
}

// childInformers gets the informers of the childCache kinds and adds their
// indexes.
func (c *Controller) childInformers(children ChildInformers) error {
	c.children = map[phase.Kind]cache.SharedIndexInformer{}
	for _, r := range registrations {
		for _, k := range r.kinds {
			if k.cache != childCache {
				continue
			}
			inf, err := children.ChildInformer(k.kind)
			if err != nil {
				return fmt.Errorf("the %s informer: %w", k.kind, err)
			}
			if k.index != nil {
				if err := k.index(inf); err != nil {
					return err
				}
			}
			c.children[k.kind] = inf
		}
	}
	c.podIndex = c.children[phase.KindPod].GetIndexer()
	return nil
}

// ChildFactory gives the controller the informers of the kinds it caches
// from f (Informers.Children), each through its registration's typed
// constructor. f's own ForResource would serve them too, but its switch
// over every resource client-go knows links all their informers and
// clients into the binary: 2 MB more of it, and about 5 MiB more resident
// memory (docs/bench.md, section 9).
func ChildFactory(f informers.SharedInformerFactory) ChildInformers { return childFactory{f} }

type childFactory struct {
	f informers.SharedInformerFactory
}

func (c childFactory) ChildInformer(kind phase.Kind) (cache.SharedIndexInformer, error) {
	k, ok := childKinds[kind]
	if !ok || k.cache != childCache || k.informer == nil {
		return nil, fmt.Errorf("%s is no kind the child informers cache", kind)
	}
	return k.informer(c.f), nil
}

// kindClients builds the kind → client table from the registrations: a
// childCache kind is read from its informer's store.
func (c *Controller) kindClients() map[phase.Kind]kindClient {
	out := map[phase.Kind]kindClient{}
	for kind, k := range childKinds {
		kc := k.client(c).only(k.verbs)
		switch {
		case k.cache == childCache:
			kc.get = cachedGet(c.children[kind].GetIndexer(), k.resource.GroupResource())
		case kc.get == nil:
			kc.get = func(ns, name string) (metav1.Object, error) { return nil, fmt.Errorf("not read by name") }
		}
		out[kind] = kc
	}
	return out
}

// cachedGet reads an object of resource from store by namespace and name,
// as a lister does.
func cachedGet(store cache.Indexer, resource schema.GroupResource) func(ns, name string) (metav1.Object, error) {
	return func(ns, name string) (metav1.Object, error) {
		obj, ok, err := store.GetByKey(cache.ObjectName{Namespace: ns, Name: name}.String())
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, apierrors.NewNotFound(resource, name)
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			return nil, fmt.Errorf("unexpected %T in the %s cache", obj, resource)
		}
		return m, nil
	}
}

// typedClient is the part of a typed client-go client the controller uses.
type typedClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
}

// typed is the client of a built-in kind, through the controller's
// clientset; of is its typed client in a namespace (ignored by
// cluster-scoped kinds).
func typed[T metav1.Object](of func(k kubernetes.Interface, ns string) typedClient[T]) func(c *Controller) kindClient {
	return func(c *Controller) kindClient {
		return kindClient{
			read: func(ctx context.Context, ns, name string) (metav1.Object, error) {
				obj, err := of(c.kubeClient, ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return nil, err
				}
				return obj, nil
			},
			create: func(ctx context.Context, obj metav1.Object, o metav1.CreateOptions) error {
				_, err := of(c.kubeClient, obj.GetNamespace()).Create(ctx, obj.(T), o)
				return err
			},
			update: func(ctx context.Context, obj metav1.Object, o metav1.UpdateOptions) error {
				_, err := of(c.kubeClient, obj.GetNamespace()).Update(ctx, obj.(T), o)
				return err
			},
			delete: func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
				return of(c.kubeClient, ns).Delete(ctx, name, o)
			},
			patch: func(ctx context.Context, ns, name string, data []byte, o metav1.PatchOptions) error {
				_, err := of(c.kubeClient, ns).Patch(ctx, name, types.MergePatchType, data, o)
				return err
			},
		}
	}
}

// sandboxClient is the client of an agent-sandbox resource (sandboxes,
// sandboxclaims), read through the SandboxAPI's dynamic informers.
func sandboxClient(resource string) func(c *Controller) kindClient {
	return func(c *Controller) kindClient {
		return kindClient{
			discovered: true,
			get: func(ns, name string) (metav1.Object, error) {
				if c.sandboxes == nil {
					return nil, apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
				}
				u, err := c.sandboxes.get(resource, ns, name)
				if err != nil {
					return nil, err
				}
				return sandboxObject(u), nil
			},
			read: func(ctx context.Context, ns, name string) (metav1.Object, error) {
				cl := c.sandboxClient(resource)
				if cl == nil {
					return nil, apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
				}
				return cl.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			},
			create: func(ctx context.Context, obj metav1.Object, o metav1.CreateOptions) error {
				cl := c.sandboxClient(resource)
				if cl == nil {
					return fmt.Errorf("the %s API is not served", resource)
				}
				_, err := cl.Namespace(obj.GetNamespace()).Create(ctx, obj.(*unstructured.Unstructured), o)
				return err
			},
			delete: func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
				cl := c.sandboxClient(resource)
				if cl == nil {
					return nil // the API is gone, and its objects with it
				}
				return cl.Namespace(ns).Delete(ctx, name, o)
			},
			patch: func(ctx context.Context, ns, name string, data []byte, o metav1.PatchOptions) error {
				cl := c.sandboxClient(resource)
				if cl == nil {
					return nil // the API is gone, and its objects with it
				}
				_, err := cl.Namespace(ns).Patch(ctx, name, types.MergePatchType, data, o)
				return err
			},
		}
	}
}
