package phase

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
)

// KindConfigMap is the mirror, in the run's namespace, of a SkillPack found
// in the skills namespace (workload.ResolveSkillPack).
const KindConfigMap Kind = "ConfigMap"

// SkillMirror is a SkillPack of the skills namespace the run mounts: its
// rendered ConfigMap (Source) and what the run's namespace holds under that
// name (Existing, metadata only; nil when none).
type SkillMirror struct {
	Source   *corev1.ConfigMap
	Existing *corev1.ConfigMap
}

// mirrorSkills asks for the mirrors the run's pod mounts, before its
// workload: created when missing, brought up to date (the run added as an
// owner, the source's data) otherwise. A ConfigMap of the user's with that
// name is left alone (the run mounts it).
func (m *machine) mirrorSkills() {
	for _, sm := range m.in.SkillMirrors {
		if sm.Existing == nil {
			m.act(Create, KindConfigMap, workload.MirrorConfigMap(sm.Source, m.run()))
			continue
		}
		if u := workload.UpdateMirror(sm.Existing, sm.Source, m.run()); u != nil {
			m.act(Update, KindConfigMap, u)
		}
	}
}
