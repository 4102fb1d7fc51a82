package phase

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Who counts ahead of a waiting run, and which limits bind: the admission
// policy over the counts the controller gives (LoadOf).
func TestLoadOf(t *testing.T) {
	inst := func(opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
		return newInstance(opts...)
	}
	const own, other = "ns/inst", "ns/other"
	cases := map[string]struct {
		instances map[string]InstanceLoad
		want      Load
	}{
		"nothing live": {want: Load{}},
		"the own instance: every run ahead counts": {
			instances: map[string]InstanceLoad{own: {Instance: inst(withMaxRuns(2)), Active: 2, Ahead: 3}},
			want:      Load{Active: 2, WaitingAhead: 3},
		},
		"the own instance's run limit does not hold back its own runs": {
			instances: map[string]InstanceLoad{own: {Instance: inst(withMaxRuns(1)), Active: 1, Ahead: 1}},
			want:      Load{Active: 1, WaitingAhead: 1},
		},
		"another instance at its run limit: its runs ahead wait for it, not for us": {
			instances: map[string]InstanceLoad{
				own:   {Instance: inst(), Active: 1},
				other: {Instance: inst(withMaxRuns(2)), Active: 2, Ahead: 4, AheadSubagents: 1},
			},
			want: Load{Active: 3},
		},
		"another instance below its run limit: its runs ahead count": {
			instances: map[string]InstanceLoad{other: {Instance: inst(withMaxRuns(3)), Active: 2, Ahead: 4}},
			want:      Load{Active: 2, WaitingAhead: 4},
		},
		"another instance without a run limit: its runs ahead count": {
			instances: map[string]InstanceLoad{other: {Instance: inst(), Active: 7, Ahead: 2}},
			want:      Load{Active: 7, WaitingAhead: 2},
		},
		"sub-agent runs ahead while the sub-agent slots are taken do not count": {
			instances: map[string]InstanceLoad{own: {Instance: inst(withLimits(2, 2, 3)), Active: 2, ActiveSubagents: 2, Ahead: 1, AheadSubagents: 3}},
			want:      Load{Active: 2, WaitingAhead: 1},
		},
		"sub-agent runs ahead with a sub-agent slot free count": {
			instances: map[string]InstanceLoad{own: {Instance: inst(withLimits(2, 2, 3)), Active: 3, ActiveSubagents: 1, AheadSubagents: 3}},
			want:      Load{Active: 3, WaitingAhead: 3},
		},
		"the default sub-agent limit (5) binds when none is set": {
			instances: map[string]InstanceLoad{
				own:   {Instance: inst(), Active: 5, ActiveSubagents: 5, AheadSubagents: 2},
				other: {Instance: inst(), Active: 4, ActiveSubagents: 4, AheadSubagents: 2},
			},
			want: Load{Active: 9, WaitingAhead: 2},
		},
		"an instance not found: its active runs count, its waiting ones wait for it": {
			instances: map[string]InstanceLoad{other: {Active: 2, ActiveSubagents: 1, Ahead: 3, AheadSubagents: 1}},
			want:      Load{Active: 2},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, LoadOf(own, tc.instances))
		})
	}
}

// Who waits ahead of a run: older (creation, then name), not being
// deleted, and for the run limits not cancelled.
func TestAhead(t *testing.T) {
	run := newRun(func(r *v1alpha1.AgentRun) { r.Name = "m" })
	older := func(opts ...runOpt) *v1alpha1.AgentRun {
		return newRun(append([]runOpt{func(r *v1alpha1.AgentRun) { r.Name = "z"; r.CreationTimestamp = metav1.NewTime(t0.Add(-time.Second)) }}, opts...)...)
	}
	cases := map[string]struct {
		other              *v1alpha1.AgentRun
		runLimit, subLimit bool
	}{
		"older":                      {older(), true, true},
		"same time, name before":     {newRun(func(r *v1alpha1.AgentRun) { r.Name = "a" }), true, true},
		"same time, name after":      {newRun(func(r *v1alpha1.AgentRun) { r.Name = "z" }), false, false},
		"younger":                    {newRun(func(r *v1alpha1.AgentRun) { r.Name = "a"; r.CreationTimestamp = metav1.NewTime(t0.Add(time.Second)) }), false, false},
		"older, being deleted":       {older(withDeleted()), false, false},
		"older, cancelled":           {older(withCancel()), false, true},
		"older, cancelled sub-agent": {older(withCancel(), withParent("p", 1)), false, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.runLimit, AheadForRunLimit(run, tc.other), "run limit")
			assert.Equal(t, tc.subLimit, AheadForSubagentLimit(run, tc.other), "sub-agent limit")
		})
	}
}
