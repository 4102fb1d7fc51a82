package instance

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/runstore"
)

// Children are the informers of the objects an instance runs (see
// instancephase), label-selected with instancephase.ChildSelector so that
// the caches hold those objects only, and what they are built with.
type Children struct {
	Kube        kubernetes.Interface
	ConfigMaps  coreinformers.ConfigMapInformer
	Deployments appsinformers.DeploymentInformer
	Services    coreinformers.ServiceInformer
	PVCs        coreinformers.PersistentVolumeClaimInformer
	Config      instancephase.Config
}

// children is what the controller keeps of Children.
type children struct {
	kube        kubernetes.Interface
	configMaps  corelisters.ConfigMapLister
	deployments appslisters.DeploymentLister
	services    corelisters.ServiceLister
	pvcs        corelisters.PersistentVolumeClaimLister
	cfg         instancephase.Config
}

// ManageChildren has the controller run the instances' objects: the web
// endpoint's run, memory and channels (instancephase.Next). Call it before
// Run; without it the controller writes status and expires history only.
func (c *Controller) ManageChildren(ch Children) error {
	c.children = &children{
		kube: ch.Kube, configMaps: ch.ConfigMaps.Lister(), deployments: ch.Deployments.Lister(),
		services: ch.Services.Lister(), pvcs: ch.PVCs.Lister(), cfg: ch.Config,
	}
	// A child's change wakes its instance (a channel's readiness is its
	// health; a deleted object is recreated).
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: c.childChanged,
		UpdateFunc: func(old, cur any) {
			if o, ok := old.(metav1.Object); ok {
				if n, ok := cur.(metav1.Object); ok && o.GetResourceVersion() == n.GetResourceVersion() {
					return
				}
			}
			c.childChanged(cur)
		},
		DeleteFunc: c.childChanged,
	}
	for _, inf := range []cache.SharedIndexInformer{ch.ConfigMaps.Informer(), ch.Deployments.Informer(), ch.Services.Informer(), ch.PVCs.Informer()} {
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("adding child event handler: %w", err)
		}
		c.synced = append(c.synced, reg.HasSynced)
	}
	return nil
}

func (c *Controller) childChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	if inst := o.GetLabels()[v1alpha1.LabelInstance]; inst != "" {
		c.queue.Add(cache.ObjectName{Namespace: o.GetNamespace(), Name: inst})
	}
}

// observeChildren reads the instance's objects from the caches.
func (c *Controller) observeChildren(inst *v1alpha1.SympoziumInstance) (instancephase.Observed, error) {
	ch := c.children
	sel := labels.SelectorFromSet(labels.Set{v1alpha1.LabelInstance: inst.Name})
	in := instancephase.Observed{Instance: inst, Config: ch.cfg, Now: c.clock.Now(),
		ConfigMaps: map[string]*corev1.ConfigMap{}, Deployments: map[string]*appsv1.Deployment{},
		Services: map[string]*corev1.Service{}, PVCs: map[string]*corev1.PersistentVolumeClaim{}}
	cms, err := ch.configMaps.ConfigMaps(inst.Namespace).List(sel)
	if err != nil {
		return in, err
	}
	for _, o := range cms {
		in.ConfigMaps[o.Name] = o
	}
	deps, err := ch.deployments.Deployments(inst.Namespace).List(sel)
	if err != nil {
		return in, err
	}
	for _, o := range deps {
		in.Deployments[o.Name] = o
	}
	svcs, err := ch.services.Services(inst.Namespace).List(sel)
	if err != nil {
		return in, err
	}
	for _, o := range svcs {
		in.Services[o.Name] = o
	}
	pvcs, err := ch.pvcs.PersistentVolumeClaims(inst.Namespace).List(sel)
	if err != nil {
		return in, err
	}
	for _, o := range pvcs {
		in.PVCs[o.Name] = o
	}
	name := instancephase.WebEndpointName(inst.Name)
	// Only an unfinished run is the live web endpoint: a finished one is
	// the store's record (its task and other fields trimmed), kept under
	// its name and never updated.
	if r, err := c.runs.Get(inst.Namespace, name); err == nil && !r.Status.Phase.IsTerminal() {
		in.WebEndpoint = r
	} else if err != nil && !apierrors.IsNotFound(err) {
		return in, err
	}
	in.WebEndpointFinished = c.runs.FinishedAtRest(cache.ObjectName{Namespace: inst.Namespace, Name: name})
	if in.WebEndpointFinished {
		if obj, ok, _ := c.runsIndexer.GetByKey(inst.Namespace + "/" + name); ok {
			e := runstore.EntryOf(obj)
			if ns, owner, ok := e.Instance(); ok && ns == inst.Namespace && owner == inst.Name {
				if h, ok := e.History(); ok {
					in.WebEndpointFinishedUID = h.UID()
				}
			}
		}
	}
	return in, nil
}

// applyChildren executes the decision's actions. An object created
// meanwhile (AlreadyExists) or gone (NotFound) is left to the next sync,
// which its event brings.
func (c *Controller) applyChildren(ctx context.Context, logger klog.Logger, d instancephase.Decision) error {
	var errs []error
	for _, a := range d.Actions {
		err := c.applyChild(ctx, a)
		switch {
		case err == nil:
			logger.V(2).Info("Applied", "verb", a.Verb, "kind", a.Kind, "object", klog.KObj(a.Object))
		case a.Verb == instancephase.Create && apierrors.IsAlreadyExists(err),
			a.Verb == instancephase.Delete && (apierrors.IsNotFound(err) || apierrors.IsConflict(err)):
		default:
			errs = append(errs, fmt.Errorf("%s %s %s: %w", a.Verb, a.Kind, a.Object.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// childWriter is the part of a typed client (client-go's or ours) that
// applyChild uses.
type childWriter[T metav1.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// writeChild sends one action's verb for o through cl.
func writeChild[T metav1.Object](ctx context.Context, cl childWriter[T], verb instancephase.Verb, o T,
	create metav1.CreateOptions, update metav1.UpdateOptions, del metav1.DeleteOptions) error {
	var err error
	switch verb {
	case instancephase.Create:
		_, err = cl.Create(ctx, o, create)
	case instancephase.Update:
		_, err = cl.Update(ctx, o, update)
	case instancephase.Delete:
		err = cl.Delete(ctx, o.GetName(), del)
	}
	return err
}

func (c *Controller) applyChild(ctx context.Context, a instancephase.Action) error {
	ns := a.Object.GetNamespace()
	create := metav1.CreateOptions{FieldManager: v1alpha1.FieldManager}
	update := metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager}
	uid := a.Object.GetUID()
	del := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	kube := c.children.kube
	var err error
	switch o := a.Object.(type) {
	case *corev1.ConfigMap:
		err = writeChild(ctx, kube.CoreV1().ConfigMaps(ns), a.Verb, o, create, update, del)
	case *appsv1.Deployment:
		err = writeChild(ctx, kube.AppsV1().Deployments(ns), a.Verb, o, create, update, del)
	case *corev1.Service:
		err = writeChild(ctx, kube.CoreV1().Services(ns), a.Verb, o, create, update, del)
	case *corev1.PersistentVolumeClaim:
		if a.Verb == instancephase.Delete {
			err = fmt.Errorf("PVCs are never deleted")
			break
		}
		err = writeChild(ctx, kube.CoreV1().PersistentVolumeClaims(ns), a.Verb, o, create, update, del)
	case *v1alpha1.AgentRun:
		policy := metav1.DeletePropagationBackground
		del.PropagationPolicy = &policy
		err = writeChild(ctx, c.client.SympoziumV1alpha1().AgentRuns(ns), a.Verb, o, create, update, del)
	default:
		err = fmt.Errorf("unknown object %T", o)
	}
	return err
}
