// Package index holds the indexes the controllers share on the run and pod
// informers, and their keys: one place, so that no controller imports
// another for them.
package index

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Index names on the shared informers.
const (
	// RunsByInstance keys runs by <namespace>/<instanceRef>.
	RunsByInstance = "sympozium.ai/by-instance"
	// RunsByParent keys sub-agent runs by <namespace>/<parent run>.
	RunsByParent = "sympozium.ai/by-parent"
	// WaitingRunsByInstance keys the runs that are neither admitted nor
	// terminal by <namespace>/<instanceRef>: the runs a freed slot, a new
	// instance or a new ConfigMap may let start. Waking them reads only
	// them, not every run of a busy instance (which made a burst quadratic).
	WaitingRunsByInstance = "sympozium.ai/waiting-by-instance"
	// SubagentsByInstance keys sub-agent runs (spec.parent set) by
	// <namespace>/<instanceRef>, for the sub-agent concurrency limit.
	SubagentsByInstance = "sympozium.ai/subagents-by-instance"
	// LiveRunsByInstance keys the unfinished runs (admitted or waiting) by
	// <namespace>/<instanceRef>, for the instance's run limit
	// (maxConcurrentRuns).
	LiveRunsByInstance = "sympozium.ai/live-by-instance"
	// LiveRuns keys every unfinished run by LiveRunsKey, for the
	// controller-wide run limit (--max-concurrent-runs).
	LiveRuns = "sympozium.ai/live"
	// PodsByJob keys pods by the UID of the Job that controls them.
	PodsByJob = "sympozium.ai/by-job-uid"
	// PodsByRun keys pods by <namespace>/<the sympozium.ai/agent-run
	// label> (naming.LabelValue of the run's name).
	PodsByRun = "sympozium.ai/by-run-label"
)

// LiveRunsKey is the one key of the LiveRuns index.
const LiveRunsKey = "live"

func live(r *v1alpha1.AgentRun) bool { return !r.Status.Phase.IsTerminal() }

// RunLabelKey is the PodsByRun key of a run's pods.
func RunLabelKey(namespace, run string) string { return namespace + "/" + naming.LabelValue(run) }

// InstanceKey is the RunsByInstance key of a run.
func InstanceKey(namespace, instance string) string { return namespace + "/" + instance }

// byInstance indexes the runs for which keep is true by InstanceKey.
func byInstance(keep func(*v1alpha1.AgentRun) bool) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		r, ok := obj.(*v1alpha1.AgentRun)
		if !ok || !keep(r) {
			return nil, nil
		}
		return []string{InstanceKey(r.Namespace, r.Spec.InstanceRef)}, nil
	}
}

// Add adds the indexes the controllers use to the run and pod
// informers. It is idempotent, so every controller sharing the informers may
// call it.
func Add(runs, pods cache.SharedIndexInformer) error {
	want := map[cache.SharedIndexInformer]cache.Indexers{
		runs: {
			RunsByInstance:        byInstance(func(*v1alpha1.AgentRun) bool { return true }),
			WaitingRunsByInstance: byInstance(phase.IsWaiting),
			SubagentsByInstance:   byInstance(func(r *v1alpha1.AgentRun) bool { return r.Spec.Parent != nil }),
			LiveRunsByInstance:    byInstance(live),
			LiveRuns: func(obj any) ([]string, error) {
				if r, ok := obj.(*v1alpha1.AgentRun); ok && live(r) {
					return []string{LiveRunsKey}, nil
				}
				return nil, nil
			},
			RunsByParent: func(obj any) ([]string, error) {
				r, ok := obj.(*v1alpha1.AgentRun)
				if !ok || r.Spec.Parent == nil {
					return nil, nil
				}
				return []string{r.Namespace + "/" + r.Spec.Parent.RunName}, nil
			},
		},
		pods: {
			PodsByJob: func(obj any) ([]string, error) {
				p, ok := obj.(*corev1.Pod)
				if !ok {
					return nil, nil
				}
				if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "Job" {
					return []string{string(ref.UID)}, nil
				}
				return nil, nil
			},
			PodsByRun: func(obj any) ([]string, error) {
				p, ok := obj.(*corev1.Pod)
				if !ok || p.Labels[v1alpha1.LabelAgentRun] == "" {
					return nil, nil
				}
				return []string{p.Namespace + "/" + p.Labels[v1alpha1.LabelAgentRun]}, nil
			},
		},
	}
	for inf, idx := range want {
		have := inf.GetIndexer().GetIndexers()
		missing := cache.Indexers{}
		for name, fn := range idx {
			if _, ok := have[name]; !ok {
				missing[name] = fn
			}
		}
		if len(missing) == 0 {
			continue
		}
		if err := inf.AddIndexers(missing); err != nil {
			return fmt.Errorf("adding indexers: %w", err)
		}
	}
	return nil
}
