package schedule

import (
	"fmt"
	"maps"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// MemoryKey is the key of the instance's memory ConfigMap
// (<instance>-memory) that includeMemory prepends to the task.
const MemoryKey = "MEMORY.md"

// MemoryConfigMap is the name of an instance's memory ConfigMap.
func MemoryConfigMap(instance string) string { return instance + "-memory" }

// IncludeMemory is spec.includeMemory with its default (true).
func IncludeMemory(s *v1alpha1.SympoziumSchedule) bool {
	return s.Spec.IncludeMemory == nil || *s.Spec.IncludeMemory
}

// BuildRun is the run of s for fire, as sympozium builds it (25c0bb2,
// sympoziumschedule_controller.go:147-211): labels instance, schedule and
// type; agentId schedule-<schedule>; the model, auth secret, node selector
// and skills (without web-endpoint) of the instance; memory, when given,
// before the task. Added: the annotations that tie it to its tick and
// schedule (see AnnotationScheduledAt).
func BuildRun(s *v1alpha1.SympoziumSchedule, inst *v1alpha1.SympoziumInstance, fire Fire, memory string) *v1alpha1.AgentRun {
	task := s.Spec.Task
	if memory != "" {
		task = fmt.Sprintf("## Memory Context\n%s\n\n## Task\n%s", memory, task)
	}
	def := inst.Spec.Agents.Default
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: fire.Name, Namespace: s.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelInstance: s.Spec.InstanceRef,
				LabelSchedule:          s.Name,
				LabelType:              s.Spec.Type,
			},
			Annotations: map[string]string{
				AnnotationScheduledAt: fire.Tick.UTC().Format(time.RFC3339),
				AnnotationScheduleUID: string(s.UID),
			},
		},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: s.Spec.InstanceRef,
			Task:        task,
			AgentID:     "schedule-" + s.Name,
			Model: v1alpha1.ModelSpec{
				Provider:      instancephase.ResolveProvider(inst),
				Model:         def.Model,
				BaseURL:       def.BaseURL,
				Thinking:      def.Thinking,
				AuthSecretRef: instancephase.ResolveAuthSecret(inst),
			},
		},
	}
	if len(def.NodeSelector) > 0 {
		r.Spec.Model.NodeSelector = make(map[string]string, len(def.NodeSelector))
		maps.Copy(r.Spec.Model.NodeSelector, def.NodeSelector)
	}
	for _, sk := range inst.Spec.Skills {
		if sk.SkillPackRef == "web-endpoint" || sk.SkillPackRef == "skillpack-web-endpoint" {
			continue
		}
		r.Spec.Skills = append(r.Spec.Skills, *sk.DeepCopy())
	}
	return r
}
