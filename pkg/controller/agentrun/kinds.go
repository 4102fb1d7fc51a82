package agentrun

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// ChildSelector selects the children the controller caches: those it
// manages, except the ones finished runs keep (retired, see phase.Retire).
const ChildSelector = v1alpha1.LabelManagedBy + "=" + v1alpha1.ManagedByValue + ",!" + v1alpha1.LabelRetired

// kindClient reads one kind of a run's children from its cache and writes
// it through the API server: the table apply executes a Decision's
// actions through, and observe reads a backend's children with.
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

// kindClients builds the kind → client table.
func (c *Controller) kindClients() map[phase.Kind]kindClient {
	return map[phase.Kind]kindClient{
		phase.KindJob: {
			get: func(ns, name string) (metav1.Object, error) { return c.jobs.Jobs(ns).Get(name) },
			read: func(ctx context.Context, ns, name string) (metav1.Object, error) {
				return c.kubeClient.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			},
			create: func(ctx context.Context, obj metav1.Object, o metav1.CreateOptions) error {
				_, err := c.kubeClient.BatchV1().Jobs(obj.GetNamespace()).Create(ctx, obj.(*batchv1.Job), o)
				return err
			},
			delete: func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
				return c.kubeClient.BatchV1().Jobs(ns).Delete(ctx, name, o)
			},
			patch: func(ctx context.Context, ns, name string, data []byte, o metav1.PatchOptions) error {
				_, err := c.kubeClient.BatchV1().Jobs(ns).Patch(ctx, name, types.MergePatchType, data, o)
				return err
			},
		},
		phase.KindDeployment: {
			get: func(ns, name string) (metav1.Object, error) { return c.deployments.Deployments(ns).Get(name) },
			read: func(ctx context.Context, ns, name string) (metav1.Object, error) {
				return c.kubeClient.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			},
			create: func(ctx context.Context, obj metav1.Object, o metav1.CreateOptions) error {
				_, err := c.kubeClient.AppsV1().Deployments(obj.GetNamespace()).Create(ctx, obj.(*appsv1.Deployment), o)
				return err
			},
			update: func(ctx context.Context, obj metav1.Object, o metav1.UpdateOptions) error {
				_, err := c.kubeClient.AppsV1().Deployments(obj.GetNamespace()).Update(ctx, obj.(*appsv1.Deployment), o)
				return err
			},
			delete: func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
				return c.kubeClient.AppsV1().Deployments(ns).Delete(ctx, name, o)
			},
			patch: func(ctx context.Context, ns, name string, data []byte, o metav1.PatchOptions) error {
				_, err := c.kubeClient.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, data, o)
				return err
			},
		},
		phase.KindService: {
			get: func(ns, name string) (metav1.Object, error) { return c.services.Services(ns).Get(name) },
			create: func(ctx context.Context, obj metav1.Object, o metav1.CreateOptions) error {
				_, err := c.kubeClient.CoreV1().Services(obj.GetNamespace()).Create(ctx, obj.(*corev1.Service), o)
				return err
			},
			update: func(ctx context.Context, obj metav1.Object, o metav1.UpdateOptions) error {
				_, err := c.kubeClient.CoreV1().Services(obj.GetNamespace()).Update(ctx, obj.(*corev1.Service), o)
				return err
			},
			delete: func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
				return c.kubeClient.CoreV1().Services(ns).Delete(ctx, name, o)
			},
			patch: func(ctx context.Context, ns, name string, data []byte, o metav1.PatchOptions) error {
				_, err := c.kubeClient.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, data, o)
				return err
			},
		},
		// The agent pod is only ever retired (phase.KindPod).
		phase.KindPod: {
			get: func(ns, name string) (metav1.Object, error) { return c.pods.Pods(ns).Get(name) },
			patch: func(ctx context.Context, ns, name string, data []byte, o metav1.PatchOptions) error {
				_, err := c.kubeClient.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, data, o)
				return err
			},
		},
		phase.KindSandbox:      c.sandboxKind(workload.SandboxResource),
		phase.KindSandboxClaim: c.sandboxKind(workload.ClaimResource),
	}
}

// sandboxKind is the client of an agent-sandbox resource (sandboxes,
// sandboxclaims), read through the SandboxAPI's dynamic informers.
func (c *Controller) sandboxKind(resource string) kindClient {
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
