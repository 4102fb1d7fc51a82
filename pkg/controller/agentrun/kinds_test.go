package agentrun

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// sharedResources are the resources of registered kinds that other
// controllers of the process use too, with more verbs than the run
// controller's: the ClusterRole grants their union.
var sharedResources = map[string]string{
	"/configmaps": "the skill pack controller renders packs (get, create, update), the instance controller deletes an instance's memory ConfigMap, a schedule reads it",
}

// rbacMismatches compares the ClusterRole's rules with what the
// registrations need: a verb a registration needs that the rules do not
// grant, and, for a resource the run controller alone uses, a verb they
// grant that no registration needs.
func rbacMismatches(granted []rbacv1.PolicyRule) []string {
	grants := func(group, resource string) []string {
		var out []string
		for _, r := range granted {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) {
				out = append(out, r.Verbs...)
			}
		}
		return out
	}
	needed := map[[2]string][]string{}
	for _, r := range rbacRules() {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				needed[[2]string{g, res}] = append(needed[[2]string{g, res}], r.Verbs...)
			}
		}
	}
	var out []string
	for gr, verbs := range needed {
		have := grants(gr[0], gr[1])
		for _, v := range verbs {
			if !slices.Contains(have, v) {
				out = append(out, "not granted: "+v+" "+gr[0]+"/"+gr[1])
			}
		}
		if sharedResources[gr[0]+"/"+gr[1]] != "" {
			continue
		}
		for _, v := range have {
			if !slices.Contains(verbs, v) {
				out = append(out, "granted, not registered: "+v+" "+gr[0]+"/"+gr[1])
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestRBACManifestMatchesRegistrations: manifests/rbac/clusterrole.yaml
// grants each registered kind exactly the verbs its registration declares
// (and list, watch for a cached kind), and each backend its own rules; the
// check fails when a verb is cut from the manifest or one is added.
func TestRBACManifestMatchesRegistrations(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "manifests", "rbac", "clusterrole.yaml"))
	require.NoError(t, err)
	var role rbacv1.ClusterRole
	require.NoError(t, yaml.Unmarshal(b, &role))
	assert.Empty(t, rbacMismatches(role.Rules))

	edit := func(resource string, fn func([]string) []string) []rbacv1.PolicyRule {
		var out []rbacv1.PolicyRule
		for _, r := range role.Rules {
			r = *r.DeepCopy()
			if slices.Contains(r.Resources, resource) {
				r.Verbs = fn(r.Verbs)
			}
			out = append(out, r)
		}
		return out
	}
	cut := edit("jobs", func(v []string) []string { return slices.DeleteFunc(v, func(s string) bool { return s == "patch" }) })
	assert.Equal(t, []string{"not granted: patch batch/jobs"}, rbacMismatches(cut))
	added := edit("sandboxclaims", func(v []string) []string { return append(v, "update") })
	assert.Equal(t, []string{"granted, not registered: update extensions.agents.x-k8s.io/sandboxclaims"}, rbacMismatches(added))
	shared := edit("configmaps", func(v []string) []string { return slices.DeleteFunc(v, func(s string) bool { return s == "update" }) })
	assert.Equal(t, []string{"not granted: update /configmaps"}, rbacMismatches(shared))
}
