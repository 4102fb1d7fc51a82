package phase

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func historyRun(i int, p v1alpha1.AgentRunPhase, completed time.Duration) *v1alpha1.AgentRun {
	r := newRun(func(r *v1alpha1.AgentRun) {
		r.Name = fmt.Sprintf("r%02d", i)
		r.UID = types.UID(r.Name)
		r.CreationTimestamp = metav1.NewTime(t0.Add(time.Duration(i) * time.Second))
		r.Status.Phase = p
		if p.IsTerminal() {
			r.Status.CompletedAt = new(metav1.NewTime(t0.Add(completed)))
		}
	})
	return r
}

func names(rs []*v1alpha1.AgentRun) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestPrune(t *testing.T) {
	var runs []*v1alpha1.AgentRun
	// 55 finished runs completing in reverse creation order, 3 live ones.
	for i := range 55 {
		runs = append(runs, historyRun(i, v1alpha1.PhaseSucceeded, time.Duration(100-i)*time.Minute))
	}
	for i := 55; i < 58; i++ {
		runs = append(runs, historyRun(i, v1alpha1.PhaseRunning, 0))
	}
	got := Prune(runs, 50)
	// The five that completed first: r54..r50.
	assert.Equal(t, []string{"r54", "r53", "r52", "r51", "r50"}, names(got))
	assert.Nil(t, Prune(runs[:50], 50))
	assert.Len(t, Prune(runs, 0), 55)
	for _, r := range Prune(runs, 0) {
		assert.True(t, r.Status.Phase.IsTerminal())
	}
}

func TestPruneKeepsParentsOfLiveRuns(t *testing.T) {
	a := historyRun(1, v1alpha1.PhaseSucceeded, time.Minute)
	b := historyRun(2, v1alpha1.PhaseFailed, 2*time.Minute)
	c := historyRun(3, v1alpha1.PhaseSucceeded, 3*time.Minute)
	child := historyRun(4, v1alpha1.PhasePending, 0)
	child.Spec.Parent = &v1alpha1.ParentRef{RunName: a.Name, SpawnDepth: 1}
	assert.Equal(t, []string{"r02"}, names(Prune([]*v1alpha1.AgentRun{a, b, c, child}, 2)))
}

func TestPruneSkipsRunsBeingDeleted(t *testing.T) {
	a := historyRun(1, v1alpha1.PhaseSucceeded, time.Minute)
	a.DeletionTimestamp = new(metav1.NewTime(now))
	b := historyRun(2, v1alpha1.PhaseSucceeded, 2*time.Minute)
	c := historyRun(3, v1alpha1.PhaseSucceeded, 3*time.Minute)
	assert.Equal(t, []string{"r02"}, names(Prune([]*v1alpha1.AgentRun{a, b, c}, 1)))
}

func TestCount(t *testing.T) {
	runs := []*v1alpha1.AgentRun{
		historyRun(1, v1alpha1.PhaseSucceeded, time.Minute), historyRun(2, v1alpha1.PhaseFailed, time.Minute),
		historyRun(3, v1alpha1.PhaseRunning, 0), historyRun(4, v1alpha1.PhasePending, 0), historyRun(5, "", 0),
		historyRun(6, v1alpha1.PhaseServing, 0),
	}
	assert.Equal(t, InstanceCounts{Active: 2, Waiting: 2, Succeeded: 1, Failed: 1}, Count(runs))
}
