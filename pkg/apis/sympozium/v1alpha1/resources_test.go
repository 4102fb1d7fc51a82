package v1alpha1

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestSidecarResourcesRequirements(t *testing.T) {
	q := resource.MustParse
	cases := map[string]struct {
		in   *SidecarResources
		want corev1.ResourceRequirements
	}{
		"nil": {},
		// sympozium's shorthand: each is both the request and the limit.
		"shorthand": {in: &SidecarResources{CPU: "100m", Memory: "128Mi"}, want: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("128Mi")},
		}},
		"container shape as written": {in: &SidecarResources{ResourceRequirements: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("200m")},
		}}, want: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("200m")}}},
		"explicit request or limit wins over the shorthand": {in: &SidecarResources{CPU: "1", Memory: "1Gi",
			ResourceRequirements: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: q("2Gi")},
			}}, want: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("250m"), corev1.ResourceMemory: q("1Gi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("2Gi")},
		}},
		"not a quantity is ignored": {in: &SidecarResources{CPU: "lots"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var before *SidecarResources
			if tc.in != nil {
				before = tc.in.DeepCopy()
			}
			got := tc.in.Requirements()
			assert.True(t, equalRequirements(tc.want, got), "got %+v", got)
			assert.Equal(t, before, tc.in, "input not mutated")
		})
	}
}

func equalRequirements(a, b corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || v.Cmp(w) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Requests, b.Requests) && eq(a.Limits, b.Limits) && len(a.Claims) == len(b.Claims)
}
