package workload

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// skillGrantsDir holds, for each shipped SkillPack that declares rules, the
// aggregated ClusterRole an admin applies so that the controller may grant
// them (README, RBAC).
const skillGrantsDir = "../../../manifests/skills"

// TestSkillGrantsManifestsMatchThePacks: manifests/skills/<pack>-grants.yaml
// holds exactly the pack's rbac and clusterRBAC rules, labelled for
// aggregation into the controller's sympozium-controller-skill-grants.
// SYMPOZIUM_UPDATE_GRANTS=1 rewrites the files.
func TestSkillGrantsManifestsMatchThePacks(t *testing.T) {
	entries, err := os.ReadDir(shippedSkills)
	require.NoError(t, err)
	var want []string
	for _, e := range entries {
		name := e.Name()[:len(e.Name())-len(".yaml")]
		sp := loadShippedSkillPack(t, name)
		if sp.Spec.Sidecar == nil || len(sp.Spec.Sidecar.RBAC)+len(sp.Spec.Sidecar.ClusterRBAC) == 0 {
			continue
		}
		file := name + "-grants.yaml"
		want = append(want, file)
		cr := rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"}}
		cr.Name = "sympozium-skill-grants-" + name
		cr.Labels = map[string]string{"sympozium.ai/aggregate-to-controller": "true", "sympozium.ai/skillpack": name}
		cr.Rules = append(policyRules(sp.Spec.Sidecar.RBAC), policyRules(sp.Spec.Sidecar.ClusterRBAC)...)
		path := filepath.Join(skillGrantsDir, file)
		if os.Getenv("SYMPOZIUM_UPDATE_GRANTS") == "1" {
			b, err := yaml.Marshal(cr)
			require.NoError(t, err)
			header := "# What SkillPack " + name + " declares (sidecar.rbac and sidecar.clusterRBAC), given to the\n" +
				"# controller so that it may grant it to the pack's runs. Generated from the pack by\n" +
				"# SYMPOZIUM_UPDATE_GRANTS=1 go test ./pkg/agentrun/workload -run TestSkillGrantsManifests.\n"
			require.NoError(t, os.WriteFile(path, append([]byte(header), b...), 0o644))
		}
		b, err := os.ReadFile(path)
		require.NoError(t, err, "manifests/skills needs the grants of SkillPack %s", name)
		var got rbacv1.ClusterRole
		require.NoError(t, yaml.Unmarshal(b, &got))
		assert.Equal(t, cr.Labels, got.Labels, file)
		assert.Equal(t, cr.Rules, got.Rules, file)
		assert.Empty(t, got.AggregationRule, file)
	}
	files, err := filepath.Glob(filepath.Join(skillGrantsDir, "*-grants.yaml"))
	require.NoError(t, err)
	var have []string
	for _, f := range files {
		have = append(have, filepath.Base(f))
	}
	slices.Sort(want)
	assert.Equal(t, want, have, "one file per shipped SkillPack with rules, no other")
}
