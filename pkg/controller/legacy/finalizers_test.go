package legacy

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned/fake"
)

// apply runs the patch through the fake clientset's object tracker, which
// applies JSON patches with the same library as the API server.
func apply(t *testing.T, finalizers []string, patch []byte) ([]string, error) {
	t.Helper()
	sp := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Finalizers: finalizers}}
	c := fake.NewSimpleClientset(sp)
	got, err := c.SympoziumV1alpha1().SkillPacks("ns").Patch(context.Background(), "p", types.JSONPatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, err
	}
	return got.Finalizers, nil
}

func TestFinalizerPatch(t *testing.T) {
	cases := map[string]struct {
		in   []string
		want []string // nil: no patch
	}{
		"none":         {in: nil},
		"others only":  {in: []string{"a", "b"}},
		"only it":      {in: []string{FinalizerInstance}, want: []string{}},
		"among others": {in: []string{"a", FinalizerInstance, "b"}, want: []string{"a", "b"}},
		"twice":        {in: []string{FinalizerInstance, "a", FinalizerInstance}, want: []string{"a"}},
		"other legacy": {in: []string{FinalizerSkillPack, FinalizerInstance}, want: []string{FinalizerSkillPack}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := FinalizerPatch(tc.in, FinalizerInstance)
			if tc.want == nil {
				assert.Nil(t, p)
				return
			}
			got, err := apply(t, tc.in, p)
			require.NoError(t, err)
			assert.ElementsMatch(t, tc.want, got)
		})
	}
}

// A list that changed since it was read fails the patch instead of
// removing another entry.
func TestFinalizerPatchGuarded(t *testing.T) {
	p := FinalizerPatch([]string{"a", FinalizerInstance}, FinalizerInstance)
	_, err := apply(t, []string{"x", "y"}, p)
	assert.Error(t, err)
}

func TestRemoveFinalizer(t *testing.T) {
	ctx := context.Background()
	calls := 0
	ok := func(context.Context, []byte) error { calls++; return nil }
	sent, err := RemoveFinalizer(ctx, []string{"a"}, FinalizerSkillPack, ok)
	assert.False(t, sent)
	assert.NoError(t, err)
	assert.Zero(t, calls, "nothing to remove: no request")

	sent, err = RemoveFinalizer(ctx, []string{FinalizerSkillPack}, FinalizerSkillPack, ok)
	assert.True(t, sent)
	assert.NoError(t, err)
	assert.Equal(t, 1, calls)

	gone := func(context.Context, []byte) error {
		return apierrors.NewNotFound(v1alpha1.SchemeGroupVersion.WithResource("skillpacks").GroupResource(), "p")
	}
	sent, err = RemoveFinalizer(ctx, []string{FinalizerSkillPack}, FinalizerSkillPack, gone)
	assert.True(t, sent)
	assert.NoError(t, err, "an object already gone needs nothing more")

	conflict := func(context.Context, []byte) error { return errors.New("the test op failed") }
	sent, err = RemoveFinalizer(ctx, []string{FinalizerSkillPack}, FinalizerSkillPack, conflict)
	assert.True(t, sent)
	assert.ErrorContains(t, err, FinalizerSkillPack)
}
