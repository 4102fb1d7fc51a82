// Package skillpack is the SkillPack controller: it renders each SkillPack
// into a ConfigMap of the same name (one key <skill>.md per skill), owned by
// the SkillPack, which agent pods mount at /skills.
package skillpack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/worker"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
	sinformers "github.com/sympozium-ai/sympozium-controller/pkg/generated/informers/externalversions/sympozium/v1alpha1"
	listers "github.com/sympozium-ai/sympozium-controller/pkg/generated/listers/sympozium/v1alpha1"
)

const (
	// AnnotationContentHash holds the hash of a rendered ConfigMap's data, so
	// that a metadata-only cache tells whether it is up to date.
	AnnotationContentHash = "sympozium.ai/content-hash"
	// ConditionReady is True once the ConfigMap holds the pack's skills.
	ConditionReady = "Ready"
	// PhaseReady is status.phase once the ConfigMap holds the pack's skills
	// (sympozium's value); PhaseError when it cannot be written.
	PhaseReady = "Ready"
	PhaseError = "Error"
)

// Controller renders SkillPacks into ConfigMaps.
type Controller struct {
	client     clientset.Interface
	kubeClient kubernetes.Interface
	packs      listers.SkillPackLister
	configMaps cache.GenericLister
	synced     []cache.InformerSynced
	worker     *worker.Worker
	queue      workqueue.TypedRateLimitingInterface[cache.ObjectName]
	now        func() metav1.Time
}

// NewController wires the handlers; configMaps is a metadata-only informer.
func NewController(ctx context.Context, client clientset.Interface, kube kubernetes.Interface,
	packs sinformers.TypedSkillPackInformer, configMaps informers.GenericInformer, rl workqueue.TypedRateLimiter[cache.ObjectName]) (*Controller, error) {
	logger := klog.LoggerWithName(klog.FromContext(ctx), "skillpack")
	c := &Controller{client: client, kubeClient: kube, packs: packs.Lister(), configMaps: configMaps.Lister(), now: metav1.Now}
	c.worker = worker.New("skillpack", rl, nil, c.sync)
	c.queue = c.worker.Queue
	opts := cache.HandlerOptions{Logger: &logger}
	preg, err := packs.TypedInformer().AddTypedEventHandler(sinformers.SkillPackHandlerFuncs{
		AddFunc:    func(p *v1alpha1.SkillPack) { c.queue.Add(cache.MetaObjectToName(p)) },
		UpdateFunc: func(_, p *v1alpha1.SkillPack) { c.queue.Add(cache.MetaObjectToName(p)) },
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("adding SkillPack event handler: %w", err)
	}
	owner := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		if ref := metav1.GetControllerOf(m); ref != nil && ref.Kind == "SkillPack" {
			c.queue.Add(cache.ObjectName{Namespace: m.GetNamespace(), Name: ref.Name})
		}
	}
	creg, err := configMaps.Informer().AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    owner,
		UpdateFunc: func(_, cur any) { owner(cur) },
		DeleteFunc: owner,
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("adding ConfigMap event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{preg.HasSynced, creg.HasSynced}
	return c, nil
}

// Run blocks until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) { c.worker.Run(ctx, workers, c.synced...) }

// ReportSyncs has f told the outcome of every sync (metrics); call it
// before Run.
func (c *Controller) ReportSyncs(f func(queue string, err error, d time.Duration)) {
	c.worker.OnResult = f
}

// HasSynced reports whether the controller's informers have synced.
func (c *Controller) HasSynced() bool {
	return worker.AllSynced(c.synced...)
}

// Render returns the ConfigMap data of a pack and its content hash.
func Render(sp *v1alpha1.SkillPack) (map[string]string, string) {
	data := make(map[string]string, len(sp.Spec.Skills))
	for _, s := range sp.Spec.Skills {
		var b strings.Builder
		if s.Description != "" {
			fmt.Fprintf(&b, "---\nname: %s\ndescription: %s\n---\n\n", s.Name, strings.ReplaceAll(s.Description, "\n", " "))
		}
		b.WriteString(s.Content)
		data[s.Name+".md"] = b.String()
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(data[k]), data[k])
	}
	return data, hex.EncodeToString(h.Sum(nil))[:16]
}

func (c *Controller) sync(ctx context.Context, key cache.ObjectName) error {
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "skillPack", key)
	sp, err := c.packs.SkillPacks(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil // the ConfigMap goes with it (ownerReference)
	}
	if err != nil {
		return err
	}
	// Migration: sympozium's own controller put a finalizer on every pack it
	// reconciled and is no longer there to remove it. The rendered ConfigMap
	// it released with it goes by its ownerReference.
	if sent, err := legacy.RemoveFinalizer(klog.NewContext(ctx, logger), sp.Finalizers, legacy.FinalizerSkillPack, func(ctx context.Context, p []byte) error {
		_, err := c.client.SympoziumV1alpha1().SkillPacks(sp.Namespace).Patch(ctx, sp.Name, types.JSONPatchType, p,
			metav1.PatchOptions{FieldManager: v1alpha1.FieldManager})
		return err
	}); sent {
		return err
	}
	if sp.DeletionTimestamp != nil {
		return nil // going away: nothing to render
	}
	data, hash := Render(sp)
	want := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: sp.Name, Namespace: sp.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
				v1alpha1.LabelSkillPack: naming.LabelValue(sp.Name),
			},
			Annotations:     map[string]string{AnnotationContentHash: hash},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(sp, v1alpha1.SchemeGroupVersion.WithKind("SkillPack"))},
		},
		Data: data,
	}
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Rendered",
		Message: fmt.Sprintf("ConfigMap %s holds %d skills", sp.Name, len(data)), ObservedGeneration: sp.Generation}
	var writeErr error
	obj, err := c.configMaps.ByNamespace(sp.Namespace).Get(sp.Name)
	switch {
	case apierrors.IsNotFound(err):
		_, writeErr = c.kubeClient.CoreV1().ConfigMaps(sp.Namespace).Create(ctx, want, metav1.CreateOptions{FieldManager: v1alpha1.FieldManager})
		if apierrors.IsAlreadyExists(writeErr) {
			writeErr = nil // stale cache: the informer delivers it and the next sync compares
		}
	case err != nil:
		return err
	default:
		m, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		switch {
		case !isControlledBy(m, sp):
			ready = metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "ConfigMapConflict",
				Message: fmt.Sprintf("ConfigMap %s exists and is not owned by this SkillPack", sp.Name), ObservedGeneration: sp.Generation}
		case m.GetAnnotations()[AnnotationContentHash] != hash:
			want.ResourceVersion = m.GetResourceVersion()
			_, writeErr = c.kubeClient.CoreV1().ConfigMaps(sp.Namespace).Update(ctx, want, metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager})
		}
	}
	if writeErr != nil {
		return fmt.Errorf("writing ConfigMap %s: %w", sp.Name, writeErr)
	}
	st := v1alpha1.SkillPackStatus{
		ObservedGeneration: sp.Generation,
		ConfigMapName:      sp.Name,
		SkillCount:         int32(len(data)),
		Conditions:         append([]metav1.Condition(nil), sp.Status.Conditions...),
	}
	// phase is what sympozium's web UI and TUI read.
	st.Phase = PhaseReady
	if ready.Status != metav1.ConditionTrue {
		st.ConfigMapName = ""
		st.Phase = PhaseError
	}
	ready.LastTransitionTime = c.now()
	meta.SetStatusCondition(&st.Conditions, ready)
	if apiequality.Semantic.DeepEqual(sp.Status, st) {
		return nil
	}
	cp := sp.DeepCopy()
	cp.Status = st
	_, err = c.client.SympoziumV1alpha1().SkillPacks(sp.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{FieldManager: v1alpha1.FieldManager})
	if err == nil {
		logger.V(2).Info("SkillPack rendered", "skills", len(data), "ready", ready.Status)
	}
	return err
}

func isControlledBy(m metav1.Object, sp *v1alpha1.SkillPack) bool {
	ref := metav1.GetControllerOf(m)
	return ref != nil && ref.UID == sp.UID
}
