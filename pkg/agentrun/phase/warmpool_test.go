package phase

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestWarmPoolSettings: agentSandbox.runtimeClass and resources with
// warmPoolRef are applied only when the pool's template already runs them
// (a warm pod cannot change): otherwise the run fails (InvalidSpec) naming
// the field, and no claim is created.
func TestWarmPoolSettings(t *testing.T) {
	claim := kits[3]
	mem := func(q string) *corev1.ResourceRequirements {
		return &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(q)}}
	}
	kata := &PoolTemplate{Name: "tmpl", RuntimeClassName: "kata", Agent: mem("1Gi")}
	cases := map[string]struct {
		rc     string
		res    *corev1.ResourceRequirements
		tmpl   *PoolTemplate
		create bool
		want   []string
	}{
		"neither set: no template needed":  {create: true},
		"the template's runtime class":     {rc: "kata", tmpl: kata, create: true},
		"the template's resources":         {res: mem("1024Mi"), tmpl: kata, create: true},
		"both, as the template":            {rc: "kata", res: mem("1Gi"), tmpl: kata, create: true},
		"another runtime class":            {rc: "gvisor", tmpl: kata, want: []string{`agentSandbox.runtimeClass "gvisor"`, `runtimeClassName "kata"`, "warmPoolRef"}},
		"other resources":                  {res: mem("2Gi"), tmpl: kata, want: []string{"agentSandbox.resources", "SandboxTemplate tmpl", "warmPoolRef"}},
		"resources, the template has none": {res: mem("1Gi"), tmpl: &PoolTemplate{Name: "tmpl"}, want: []string{"agentSandbox.resources"}},
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
