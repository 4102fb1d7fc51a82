// Package index holds the indexes the controllers share on the pod
// informer, and their keys: one place, so that no controller imports
// another for them. The runs informer's indexes are the run store's
// (package runstore), its only reader.
package index

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Index names on the pod informer.
const (
	// PodsByJob keys pods by the UID of the Job that controls them.
	PodsByJob = "sympozium.ai/by-job-uid"
	// PodsByRun keys pods by <namespace>/<the sympozium.ai/agent-run
	// label> (naming.LabelValue of the run's name).
	PodsByRun = "sympozium.ai/by-run-label"
)

// RunLabelKey is the PodsByRun key of a run's pods.
func RunLabelKey(namespace, run string) string { return namespace + "/" + naming.LabelValue(run) }

// Add adds the indexes the controllers use to the pod informer. It is
// idempotent, so every controller sharing the informer may call it.
func Add(pods cache.SharedIndexInformer) error {
	idx := cache.Indexers{
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
	}
	have := pods.GetIndexer().GetIndexers()
	missing := cache.Indexers{}
	for name, fn := range idx {
		if _, ok := have[name]; !ok {
			missing[name] = fn
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := pods.AddIndexers(missing); err != nil {
		return fmt.Errorf("adding indexers: %w", err)
	}
	return nil
}
