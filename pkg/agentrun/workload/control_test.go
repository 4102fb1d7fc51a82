package workload

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestEffectiveDeadline: a sub-agent's deadline is its own or its parent's,
// whichever is earlier, and so are its RUN_TIMEOUT and the Job's
// activeDeadlineSeconds.
func TestEffectiveDeadline(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	run := func(name string, created time.Time, timeout time.Duration, parent string) *v1alpha1.AgentRun {
		r := &v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
			Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst"}}
		if timeout > 0 {
			r.Spec.Timeout = &metav1.Duration{Duration: timeout}
		}
		if parent != "" {
			r.Spec.Parent = &v1alpha1.ParentRef{RunName: parent, SpawnDepth: 1}
		}
		return r
	}
	cfg := Config{DefaultTimeout: 10 * time.Minute, DeadlineSlack: 15 * time.Second}
	parent := run("p", t0, 2*time.Minute, "")
	child := run("c", t0.Add(30*time.Second), 0, "p")
	now := t0.Add(time.Minute)

	in := Inputs{Run: child, Parent: parent, Now: now}
	assert.Equal(t, t0.Add(2*time.Minute), EffectiveDeadline(in, cfg.DefaultTimeout), "the parent's deadline is earlier")
	assert.Equal(t, "1m0s", RunTimeout(cfg, in))
	assert.EqualValues(t, 60+15, ActiveDeadlineSeconds(cfg, in))

	// A child whose own deadline is earlier keeps it.
	short := run("s", t0.Add(30*time.Second), 40*time.Second, "p")
	assert.Equal(t, t0.Add(70*time.Second), EffectiveDeadline(Inputs{Run: short, Parent: parent, Now: now}, cfg.DefaultTimeout))
	// Without a parent (or for a run that is no sub-agent) it is the run's own.
	assert.Equal(t, t0.Add(30*time.Second+10*time.Minute), EffectiveDeadline(Inputs{Run: child, Now: now}, cfg.DefaultTimeout))
	plain := run("x", t0, 0, "")
	assert.Equal(t, t0.Add(10*time.Minute), EffectiveDeadline(Inputs{Run: plain, Parent: parent, Now: now}, cfg.DefaultTimeout))
	// The parent's timeout comes from the run's instance when both share it.
	inst := &v1alpha1.SympoziumInstance{Spec: v1alpha1.SympoziumInstanceSpec{Agents: v1alpha1.AgentsSpec{
		Default: v1alpha1.AgentConfig{RunTimeout: &metav1.Duration{Duration: 90 * time.Second}}}}}
	noTimeout := run("p", t0, 0, "")
	assert.Equal(t, t0.Add(90*time.Second), EffectiveDeadline(Inputs{Run: child, Parent: noTimeout, Instance: inst, Now: now}, cfg.DefaultTimeout))
}
