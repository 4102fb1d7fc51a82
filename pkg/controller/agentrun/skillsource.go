package agentrun

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/skillpack"
)

// Skills from the skills namespace (docs/run-identity.md, section 5): a
// SkillPack a run names is looked up in the run's namespace, then in
// --skills-namespace; one found there is rendered as the SkillPack
// controller renders it, and the machine mirrors it into the run's
// namespace (owned by every run that mounts it).

// getSkillPack reads a SkillPack from the caches: the run namespaces' and
// the skills namespace's (nil when absent).
func (c *Controller) getSkillPack(namespace, name string) *v1alpha1.SkillPack {
	lister := c.skillPacks
	if c.systemSkillPacks != nil && namespace == c.opts.Phase.SkillsNamespace {
		lister = c.systemSkillPacks
	}
	sp, err := lister.SkillPacks(namespace).Get(name)
	if err != nil {
		return nil
	}
	return sp
}

// skillMirror is what the machine needs to mirror sp into the run's
// namespace: its rendered ConfigMap, and the ConfigMap of that name the
// run's namespace holds (metadata only).
func (c *Controller) skillMirror(run *v1alpha1.AgentRun, sp *v1alpha1.SkillPack) phase.SkillMirror {
	data, _ := skillpack.Render(sp)
	sm := phase.SkillMirror{Source: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: sp.Name, Namespace: sp.Namespace,
			Labels: map[string]string{v1alpha1.LabelSkillPack: naming.LabelValue(sp.Name)}},
		Data: data,
	}}
	obj, err := c.configMaps.ByNamespace(run.Namespace).Get(sp.Name)
	if err != nil {
		return sm
	}
	if m, err := meta.Accessor(obj); err == nil {
		sm.Existing = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(),
			Labels: m.GetLabels(), Annotations: m.GetAnnotations(), OwnerReferences: m.GetOwnerReferences(),
		}}
	}
	return sm
}
