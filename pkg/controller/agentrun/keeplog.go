package agentrun

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// KeptLogBytes bounds the end of a failed run's agent log kept in its
// ConfigMap (naming.LogName).
const KeptLogBytes = 16 * 1024

// KeptLogKey is the key of the kept log in the ConfigMap.
const KeptLogKey = "agent.log"

// ComponentLog is the component label of the ConfigMap of a kept log.
const ComponentLog = "agent-log"

// keepLog keeps the end of the agent's log of a run that failed now (the
// decision's KeepLog), in a ConfigMap owned by the run, before the
// decision's deletes take the pod (and its log) away. The log read for the
// result marker is reused; else it is read here, on the failure path only.
// It is evidence, not outcome: a read or create that fails is logged and
// the run's outcome recorded all the same. Created before the status write,
// so a controller killed in between finds it (AlreadyExists) on the next
// pass.
func (c *Controller) keepLog(ctx context.Context, run *v1alpha1.AgentRun, keep *phase.KeptLog) {
	if keep == nil || c.opts.Logs == nil {
		return
	}
	logger := klog.FromContext(ctx)
	pod := klog.KRef(run.Namespace, keep.Pod)
	tail := keep.Tail
	if tail == "" {
		var err error
		tail, err = c.opts.Logs.TailLog(ctx, run.Namespace, keep.Pod, v1alpha1.AgentContainerName, KeptLogBytes)
		if err != nil || tail == "" {
			logger.V(2).Info("No agent log to keep", "pod", pod, "err", err)
			return
		}
	}
	if len(tail) > KeptLogBytes {
		tail = tail[len(tail)-KeptLogBytes:]
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      naming.LogName(run.Name),
			Namespace: run.Namespace,
			Labels: map[string]string{
				v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
				v1alpha1.LabelAgentRun:  naming.LabelValue(run.Name),
				v1alpha1.LabelComponent: ComponentLog,
			},
			Annotations:     map[string]string{"sympozium.ai/pod": keep.Pod},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))},
		},
		Data: map[string]string{KeptLogKey: tail},
	}
	_, err := c.kubeClient.CoreV1().ConfigMaps(run.Namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: v1alpha1.FieldManager})
	switch {
	case err == nil:
		logger.V(2).Info("Kept the end of the agent's log", "configMap", klog.KObj(cm), "bytes", len(tail))
	case apierrors.IsAlreadyExists(err):
	default:
		logger.Error(err, "Keeping the agent's log failed", "configMap", klog.KObj(cm))
	}
}
