package instance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	core "k8s.io/client-go/testing"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/controller/legacy"
)

// The status fields sympozium's web UI and TUI read are written with
// sympozium's values, beside ours, and what only sympozium's other
// components write is kept.
func TestSyncWritesSympoziumStatus(t *testing.T) {
	webEndpoint := &v1alpha1.WebEndpointStatus{Status: "Ready", URL: "https://alice.example.com"}
	cases := map[string]struct {
		runs []*v1alpha1.AgentRun
		want v1alpha1.SympoziumInstanceStatus
	}{
		"no runs": {want: v1alpha1.SympoziumInstanceStatus{Phase: "Running"}},
		"running and waiting": {
			runs: []*v1alpha1.AgentRun{newRun("a", t0, v1alpha1.PhaseRunning, nil), newRun("b", t0, v1alpha1.PhasePending, nil)},
			want: v1alpha1.SympoziumInstanceStatus{Phase: "Running", ActiveRuns: 1, WaitingRuns: 1, ActiveAgentPods: 1},
		},
		"one serving": {
			runs: []*v1alpha1.AgentRun{newRun("a", t0, v1alpha1.PhaseRunning, nil), newRun("s", t0, v1alpha1.PhaseServing, nil)},
			want: v1alpha1.SympoziumInstanceStatus{Phase: "Serving", ActiveRuns: 2, ActiveAgentPods: 2},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			inst := newInstance(func(i *v1alpha1.SympoziumInstance) {
				i.Spec.Channels = []v1alpha1.ChannelSpec{{Type: "telegram", ConfigRef: v1alpha1.ChannelConfigRef{Secret: "tg"}}, {Type: "whatsapp"}}
				i.Status.WebEndpoint = webEndpoint.DeepCopy()
				i.Status.TotalAgentRuns = 7
			})
			f.add(inst)
			for _, r := range tc.runs {
				f.add(r)
			}
			require.NoError(t, f.sync("inst"))
			want := tc.want
			want.ObservedGeneration = 3
			want.Channels = []v1alpha1.ChannelStatus{
				{Type: "telegram", Status: "Disconnected", Message: ChannelMessage},
				{Type: "whatsapp", Status: "Disconnected", Message: ChannelMessage},
			}
			want.WebEndpoint = webEndpoint
			want.TotalAgentRuns = 7
			got, err := f.client.SympoziumV1alpha1().SympoziumInstances(testNS).Get(f.ctx, "inst", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, want, got.Status)

			// Nothing changed: the next sync writes nothing.
			f.refresh()
			f.client.ClearActions()
			require.NoError(t, f.sync("inst"))
			assert.Empty(t, writes(f.client.Actions()))
		})
	}
}

// sympozium's finalizer is removed with a guarded JSON patch, and nothing
// else is written in that sync; the next one writes the status.
func TestSyncRemovesSympoziumsFinalizer(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance(func(i *v1alpha1.SympoziumInstance) {
		i.Finalizers = []string{"example.com/keep", legacy.FinalizerInstance}
	}))
	require.NoError(t, f.sync("inst"))
	w := writes(f.client.Actions())
	require.Len(t, w, 1)
	p, ok := w[0].(core.PatchActionImpl)
	require.True(t, ok, "%#v", w[0])
	assert.Equal(t, types.JSONPatchType, p.GetPatchType())
	got, err := f.client.SympoziumV1alpha1().SympoziumInstances(testNS).Get(f.ctx, "inst", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"example.com/keep"}, got.Finalizers)

	f.refresh()
	f.client.ClearActions()
	require.NoError(t, f.sync("inst"))
	w = writes(f.client.Actions())
	require.Len(t, w, 1)
	assert.Equal(t, "status", w[0].GetSubresource())
}
