package agentsandbox

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The CRDs come from the pinned module, all four, with the conversion
// webhook (which needs the controller's webhook server) replaced by None.
func TestCRDsFromTheModule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := ModuleDir(ctx)
	require.NoError(t, err)
	assert.Contains(t, dir, "sigs.k8s.io/agent-sandbox@v")
	crds, err := CRDs(dir)
	require.NoError(t, err)
	require.Len(t, crds, len(CRDNames))
	for _, c := range crds {
		conv, _, _ := unstructured.NestedMap(c.Object, "spec", "conversion")
		assert.Equal(t, map[string]any{"strategy": "None"}, conv, c.GetName())
		versions, _, _ := unstructured.NestedSlice(c.Object, "spec", "versions")
		var served []string
		for _, v := range versions {
			m, _ := v.(map[string]any)
			if m["served"] == true {
				served = append(served, m["name"].(string))
			}
		}
		assert.Contains(t, served, "v1beta1", c.GetName())
	}
}

func TestCRDsRejectsAnIncompleteDirectory(t *testing.T) {
	_, err := CRDs(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "want")
}
