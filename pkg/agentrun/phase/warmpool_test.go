package phase

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestWarmPoolSettings: a template that cannot deliver the task (no
// downward API volume of the annotations mounted in agent) fails the run at
// once, saying what it lacks; agentSandbox.runtimeClass and resources with
// warmPoolRef are applied only when the pool's template already runs them
// (a warm pod cannot change): otherwise the run fails (InvalidSpec) naming
// the field, and no claim is created.
func TestWarmPoolSettings(t *testing.T) {
	claim := kits[3]
	mem := func(q string) *corev1.ResourceRequirements {
		return &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(q)}}
	}
	podInfo := corev1.Volume{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}}}}}}
	labelsOnly := corev1.Volume{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}
	projected := corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: podInfo.DownwardAPI.Items}}}}}}
	mount := func(name, path string) []corev1.VolumeMount {
		return []corev1.VolumeMount{{Name: name, MountPath: path}}
	}
	contract := func(t PoolTemplate) *PoolTemplate {
		t.Name, t.HasAgent = "tmpl", true
		if t.Volumes == nil {
			t.Volumes = []corev1.Volume{podInfo}
			t.AgentMounts = mount("podinfo", "/var/run/sympozium/podinfo")
		}
		return &t
	}
	kata := contract(PoolTemplate{RuntimeClassName: "kata", Agent: mem("1Gi")})
	plain := contract(PoolTemplate{})
	cases := map[string]struct {
		rc     string
		res    *corev1.ResourceRequirements
		tmpl   *PoolTemplate
		create bool
		want   []string
	}{
		"neither set, template not read":       {create: true},
		"neither set, the pool not found":      {tmpl: &PoolTemplate{Why: `SandboxWarmPool "pool" not found`}, create: true},
		"neither set, the contract's template": {tmpl: plain, create: true},
		"a projected downward API volume":      {tmpl: contract(PoolTemplate{Volumes: []corev1.Volume{projected}, AgentMounts: mount("info", "/var/run/sympozium/podinfo")}), create: true},
		"no downward API volume": {tmpl: contract(PoolTemplate{Volumes: []corev1.Volume{}}),
			want: []string{"warm pool pool cannot receive the run's task", "SandboxTemplate tmpl has no downward API volume of metadata.annotations (file annotations)", "container agent at /var/run/sympozium/podinfo"}},
		"a downward API volume of the labels only": {tmpl: contract(PoolTemplate{Volumes: []corev1.Volume{labelsOnly}, AgentMounts: mount("podinfo", "/var/run/sympozium/podinfo")}),
			want: []string{"has no downward API volume of metadata.annotations"}},
		"the volume not mounted": {tmpl: contract(PoolTemplate{Volumes: []corev1.Volume{podInfo}, AgentMounts: mount("podinfo", "/podinfo")}),
			want: []string{"does not mount its downward API volume podinfo in container agent at /var/run/sympozium/podinfo"}},
		"no container agent":               {tmpl: &PoolTemplate{Name: "tmpl", Volumes: []corev1.Volume{podInfo}}, want: []string{"SandboxTemplate tmpl has no container agent"}},
		"runtime class right, no podinfo":  {rc: "kata", tmpl: contract(PoolTemplate{RuntimeClassName: "kata", Volumes: []corev1.Volume{}}), want: []string{"has no downward API volume"}},
		"the template's runtime class":     {rc: "kata", tmpl: kata, create: true},
		"the template's resources":         {res: mem("1024Mi"), tmpl: kata, create: true},
		"both, as the template":            {rc: "kata", res: mem("1Gi"), tmpl: kata, create: true},
		"another runtime class":            {rc: "gvisor", tmpl: kata, want: []string{`agentSandbox.runtimeClass "gvisor"`, `runtimeClassName "kata"`, "warmPoolRef"}},
		"other resources":                  {res: mem("2Gi"), tmpl: kata, want: []string{"agentSandbox.resources", "SandboxTemplate tmpl", "warmPoolRef"}},
		"resources, the template has none": {res: mem("1Gi"), tmpl: plain, want: []string{"agentSandbox.resources"}},
		"the pool does not exist":          {rc: "kata", tmpl: &PoolTemplate{Why: `SandboxWarmPool "pool" not found`}, want: []string{`SandboxWarmPool "pool" not found`, "agentSandbox.runtimeClass"}},
		"the template was not read":        {rc: "kata", want: []string{"could not be read"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			run := claim.run(func(r *v1alpha1.AgentRun) {
				r.Spec.AgentSandbox.RuntimeClass = tc.rc
				r.Spec.AgentSandbox.Resources = tc.res
			})
			in := Observed{Run: run, Instance: newInstance(), Now: now, Config: testConfig, SandboxAPI: servedAPI, PoolTemplate: tc.tmpl}
			d := Next(in)
			if tc.create {
				assert.NotNil(t, action[*unstructured.Unstructured](d, Create, KindSandboxClaim))
				assert.Equal(t, v1alpha1.PhasePending, d.Status.Phase)
				return
			}
			assert.Empty(t, d.Actions)
			assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
			assert.Equal(t, v1alpha1.ReasonInvalidSpec, failedReason(&d.Status))
			for _, w := range tc.want {
				assert.Contains(t, d.Status.Error, w)
			}
			assertIdempotent(t, in, d)
		})
	}
}
