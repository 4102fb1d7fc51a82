package localcp

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Allocatable resources of each fake node: far more than any test asks for.
var nodeResources = corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("32"),
	corev1.ResourceMemory: resource.MustParse("256Gi"),
	corev1.ResourcePods:   resource.MustParse("1000"),
}

func newClient(cfg *rest.Config) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(cfg)
}

// NodeName returns the name of the i-th fake node (0-based).
func NodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// createNodes registers n Nodes for kwok to manage (it picks the ones annotated
// kwok.x-k8s.io/node=fake) and returns their names.
func createNodes(ctx context.Context, client kubernetes.Interface, n int) ([]string, error) {
	var names []string
	for i := range n {
		name := NodeName(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{NodeAnnotation: "fake"},
				Labels: map[string]string{
					"type":                   "kwok",
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
				},
			},
			Status: corev1.NodeStatus{
				Capacity:    nodeResources.DeepCopy(),
				Allocatable: nodeResources.DeepCopy(),
			},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating node %s: %w", name, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// notReadyTaint is the taint kube-apiserver puts on new Nodes and the node
// lifecycle controller lifts once they are Ready; pods do not schedule before.
const notReadyTaint = "node.kubernetes.io/not-ready"

// waitNodesReady waits until every node is Ready and has no not-ready taint.
func waitNodesReady(ctx context.Context, client kubernetes.Interface, names []string, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string, error) {
		for _, name := range names {
			node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if !nodeReady(node) {
				return false, "node " + name + " not Ready", nil
			}
			for _, t := range node.Spec.Taints {
				if t.Key == notReadyTaint {
					return false, "node " + name + " still has the not-ready taint", nil
				}
			}
		}
		return true, "", nil
	})
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitServiceAccount waits for a ServiceAccount, e.g. default/default, which the
// controller-manager creates and pods need.
func waitServiceAccount(ctx context.Context, client kubernetes.Interface, namespace, name string, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string, error) {
		_, err := client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}

// poll calls cond every 100ms until it reports done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() (done bool, why string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, why, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s: %s", timeout, why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
