package v1alpha1_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestReasonCatalogue keeps the catalogue of condition reasons, the code
// and the README in agreement: every Reason constant is listed in
// v1alpha1.Reasons and documented in the README's reason table, and the
// table documents nothing else.
func TestReasonCatalogue(t *testing.T) {
	root := filepath.Join("..", "..", "..", "..")

	// The constants declared in phases.go.
	src, err := os.ReadFile("phases.go")
	require.NoError(t, err)
	declared := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(Reason\w+)\s+= "(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		declared[m[1]] = m[2]
	}
	require.NotEmpty(t, declared)
	var values []string
	for _, v := range declared {
		values = append(values, v)
	}
	sort.Strings(values)
	catalogue := slices.Clone(v1alpha1.Reasons)
	sort.Strings(catalogue)
	assert.Equal(t, values, catalogue, "v1alpha1.Reasons must list every Reason constant")

	// Every reason constant the code refers to is declared.
	used := map[string]bool{}
	ref := regexp.MustCompile(`v1alpha1\.(Reason\w+)`)
	require.NoError(t, filepath.WalkDir(filepath.Join(root, "pkg"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.Contains(path, "generated") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return nil
	}))
	for name := range used {
		if name == "Reasons" {
			continue
		}
		assert.Contains(t, declared, name, "code uses an undeclared reason")
	}

	// The README's table documents exactly the catalogue.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	section := string(readme)
	start := strings.Index(section, "### Condition reasons")
	require.GreaterOrEqual(t, start, 0, "README has no reason table")
	section = section[start:]
	if end := strings.Index(section[1:], "\n## "); end > 0 {
		section = section[:end+1]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`([A-Z][A-Za-z]+)`").FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	for _, v := range v1alpha1.Reasons {
		assert.True(t, documented[v], "README does not document reason %s", v)
	}
	for d := range documented {
		assert.Contains(t, v1alpha1.Reasons, d, "README documents %s, which is not in the catalogue", d)
	}
}
