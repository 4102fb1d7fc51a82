package agentrun

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	core "k8s.io/client-go/testing"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
)

// A run sympozium's own controller left its finalizer on: the finalizer is
// removed first (a JSON patch, and nothing else in that sync), then the
// run is handled as any other.
func TestSyncRemovesTheOriginalsFinalizer(t *testing.T) {
	tests := map[string]struct {
		finalizers []string
		deleting   bool
		wantLeft   []string
	}{
		"live run":            {finalizers: []string{legacy.FinalizerAgentRun}, wantLeft: []string{}},
		"beside another":      {finalizers: []string{"example.com/keep", legacy.FinalizerAgentRun}, wantLeft: []string{"example.com/keep"}},
		"being deleted":       {finalizers: []string{legacy.FinalizerAgentRun}, deleting: true},
		"with ours, deleting": {finalizers: []string{v1alpha1.FinalizerServer, legacy.FinalizerAgentRun}, deleting: true, wantLeft: []string{v1alpha1.FinalizerServer}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			run := newRun("run")
			run.Finalizers = tc.finalizers
			if tc.deleting {
				run.DeletionTimestamp = new(metav1.NewTime(t0.Add(30 * time.Second)))
			}
			f.add(newInstance("inst"), run)

			require.NoError(t, f.sync("run"))
			require.Equal(t, []string{"patch agentruns ns/run"}, describe(f.clientWrites()))
			p := f.clientWrites()[0].(core.PatchAction)
			assert.Equal(t, types.JSONPatchType, p.GetPatchType())
			assert.Empty(t, describe(f.kubeWrites()), "nothing else in the sync that removed it")
			if got, err := f.client.SympoziumV1alpha1().AgentRuns(testNS).Get(f.ctx, "run", metav1.GetOptions{}); err == nil {
				assert.NotContains(t, got.Finalizers, legacy.FinalizerAgentRun)
				if len(tc.wantLeft) > 0 {
					assert.Equal(t, tc.wantLeft, got.Finalizers)
				}
			} else {
				assert.True(t, tc.deleting, "only a run being deleted may go with the finalizer: %v", err)
			}

			// The next sync, once the cache caught up, goes on as usual.
			f.refresh()
			f.clearActions()
			require.NoError(t, f.sync("run"))
			for _, a := range f.clientWrites() {
				if p, ok := a.(core.PatchAction); ok {
					assert.NotEqual(t, types.JSONPatchType, p.GetPatchType(), "removed once")
				}
			}
			if !tc.deleting {
				assert.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()))
			}
		})
	}
}
