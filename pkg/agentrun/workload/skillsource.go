package workload

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Skills resolution. A run's SkillPack is looked up in the run's namespace,
// then in the skills namespace (--skills-namespace, DefaultSkillsNamespace),
// where sympozium installs its built-in SkillPacks. A pack found in the
// skills namespace has its rendered ConfigMap mirrored into the run's
// namespace (projected volumes only read ConfigMaps of the pod's
// namespace) under the same name, owned by every run that mounts it (so the
// garbage collector removes it with the last of them) and updated when the
// source changes.
const (
	// DefaultSkillsNamespace is where SkillPacks not found in a run's
	// namespace are looked up.
	DefaultSkillsNamespace = "sympozium-system"

	// ComponentSkillMirror is the LabelComponent of a mirrored ConfigMap.
	ComponentSkillMirror = "skillpack-mirror"
	// AnnotationMirrorSource is the mirrored ConfigMap's source,
	// "<namespace>/<name>", and AnnotationMirrorHash the hash of the
	// source's data the mirror holds.
	AnnotationMirrorSource = "sympozium.ai/mirror-of"
	AnnotationMirrorHash   = "sympozium.ai/mirror-hash"
)

// ResolveSkillPack returns SkillPack name for a run in runNamespace: the one
// in runNamespace, else the one in skillsNamespace (mirrored then reports
// true: its ConfigMap must be mirrored), else nil. get reads a SkillPack from
// the caller's cache (nil when absent).
func ResolveSkillPack(name, runNamespace, skillsNamespace string, get func(namespace, name string) *v1alpha1.SkillPack) (sp *v1alpha1.SkillPack, mirrored bool) {
	if sp := get(runNamespace, name); sp != nil {
		return sp, false
	}
	if skillsNamespace == "" || skillsNamespace == runNamespace {
		return nil, false
	}
	if sp := get(skillsNamespace, name); sp != nil {
		return sp, true
	}
	return nil, false
}

// MirrorConfigMap builds the mirror of source (a SkillPack's rendered
// ConfigMap in the skills namespace) in namespace, owned by run: same name
// and data, labelled ComponentSkillMirror, with AnnotationMirrorSource and
// AnnotationMirrorHash. The owner reference is not a controller one: every
// run mounting the mirror adds itself (AddMirrorOwner), and the garbage
// collector deletes the mirror with its last owner.
func MirrorConfigMap(source *corev1.ConfigMap, run *v1alpha1.AgentRun) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      source.Name,
			Namespace: run.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
				v1alpha1.LabelComponent: ComponentSkillMirror,
				v1alpha1.LabelSkillPack: source.Labels[v1alpha1.LabelSkillPack],
			},
			Annotations: map[string]string{
				AnnotationMirrorSource: source.Namespace + "/" + source.Name,
				AnnotationMirrorHash:   SpecHash(source.Data),
			},
			OwnerReferences: []metav1.OwnerReference{runOwner(run)},
		},
		Data: maps.Clone(source.Data),
	}
}

func runOwner(run *v1alpha1.AgentRun) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "AgentRun",
		Name: run.Name, UID: run.UID,
	}
}

// UpdateMirror returns the update that brings mirror (an existing ConfigMap
// in the run's namespace) up to date for run and source: run among its
// owners, source's data and hash. It returns nil when nothing changes, and
// also when mirror is not a mirror of source (a ConfigMap of the user's of
// the same name is never overwritten; the run then mounts that one).
func UpdateMirror(mirror, source *corev1.ConfigMap, run *v1alpha1.AgentRun) *corev1.ConfigMap {
	if mirror.Labels[v1alpha1.LabelComponent] != ComponentSkillMirror ||
		mirror.Annotations[AnnotationMirrorSource] != source.Namespace+"/"+source.Name {
		return nil
	}
	owned := false
	for _, o := range mirror.OwnerReferences {
		owned = owned || o.UID == run.UID
	}
	hash := SpecHash(source.Data)
	if owned && mirror.Annotations[AnnotationMirrorHash] == hash {
		return nil
	}
	out := mirror.DeepCopy()
	if !owned {
		out.OwnerReferences = append(out.OwnerReferences, runOwner(run))
	}
	out.Annotations[AnnotationMirrorHash] = hash
	out.Data = maps.Clone(source.Data)
	return out
}
