package workload

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var (
	t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	// now is 1m30.5s after the run's creation.
	now = t0.Add(90*time.Second + 500*time.Millisecond)

	testCfg = Config{
		AgentImage:     "ghcr.io/sympozium/agent-runner:v1",
		SandboxImage:   "ghcr.io/sympozium/sandbox:v1",
		DefaultTimeout: 10 * time.Minute,
		DeadlineSlack:  15 * time.Second,
	}
)

type runOpt func(*v1alpha1.AgentRun)

func newRun(opts ...runOpt) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{
			Name:              "run-1",
			Namespace:         "team-a",
			UID:               types.UID("6f1c9a52-0000-4000-8000-000000000001"),
			Generation:        1,
			CreationTimestamp: metav1.NewTime(t0),
		},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: "inst",
			AgentID:     "default",
			SessionKey:  "sess-1",
			Task:        "summarise the repo",
			Model: v1alpha1.ModelSpec{
				Provider: "openai",
				Model:    "gpt-5",
			},
			Mode:    v1alpha1.ModeTask,
			Cleanup: v1alpha1.CleanupDelete,
		},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withName(n string) runOpt { return func(r *v1alpha1.AgentRun) { r.Name = n } }
func withInstanceRef(n string) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.InstanceRef = n }
}
func withTimeout(d time.Duration) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.Timeout = &metav1.Duration{Duration: d} }
}
func withEnv(kv ...string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.Env = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			r.Spec.Env[kv[i]] = kv[i+1]
		}
	}
}
func withSkills(refs ...v1alpha1.SkillRef) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.Skills = refs }
}
func withSandbox(sb *v1alpha1.SandboxSpec) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.Sandbox = sb }
}
func withAgentSandbox(as *v1alpha1.AgentSandboxSpec) runOpt {
	return func(r *v1alpha1.AgentRun) { r.Spec.AgentSandbox = as }
}
func withParent(name, session string, depth int32) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.Parent = &v1alpha1.ParentRef{RunName: name, SessionKey: session, SpawnDepth: depth}
	}
}
func withNodeSelector(kv ...string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.Model.NodeSelector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			r.Spec.Model.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}
func withAnnotation(k, v string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		if r.Annotations == nil {
			r.Annotations = map[string]string{}
		}
		r.Annotations[k] = v
	}
}

type instOpt func(*v1alpha1.SympoziumInstance)

func newInstance(opts ...instOpt) *v1alpha1.SympoziumInstance {
	i := &v1alpha1.SympoziumInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "team-a"},
	}
	for _, o := range opts {
		o(i)
	}
	return i
}

func withAuthRefs(refs ...v1alpha1.AuthRef) instOpt {
	return func(i *v1alpha1.SympoziumInstance) { i.Spec.AuthRefs = refs }
}
func withRunTimeout(d time.Duration) instOpt {
	return func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Agents.Default.RunTimeout = &metav1.Duration{Duration: d}
	}
}
func withInstanceSkills(refs ...v1alpha1.SkillRef) instOpt {
	return func(i *v1alpha1.SympoziumInstance) { i.Spec.Skills = refs }
}
func withDefaults(model, baseURL string, thinking v1alpha1.ThinkingMode, ns map[string]string) instOpt {
	return func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Agents.Default.Model = model
		i.Spec.Agents.Default.BaseURL = baseURL
		i.Spec.Agents.Default.Thinking = thinking
		i.Spec.Agents.Default.NodeSelector = ns
	}
}

func newSkillPack(name string, sidecar *v1alpha1.SkillSidecar) *v1alpha1.SkillPack {
	return &v1alpha1.SkillPack{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team-a"},
		Spec: v1alpha1.SkillPackSpec{
			Skills:  []v1alpha1.Skill{{Name: name, Content: "# " + name}},
			Sidecar: sidecar,
		},
	}
}

func resources(cpu, mem string) *corev1.ResourceRequirements {
	return &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)},
	}
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		m[e.Name] = e.Value
	}
	return m
}

func envNames(env []corev1.EnvVar) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		out = append(out, e.Name)
	}
	return out
}

func container(spec corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

func resourceList(cpu, mem string) *corev1.ResourceList {
	return &corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}
