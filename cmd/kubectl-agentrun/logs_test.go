package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestKeptLogSource: a failed run whose pod is gone shows the tail the
// controller kept in <run>-log; a ConfigMap of that name that the run does
// not control is not shown.
func TestKeptLogSource(t *testing.T) {
	run := &v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "run-uid"},
		Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseFailed, PodName: "r-abc"}}
	owned := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "r-log", Namespace: "ns",
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(run, v1alpha1.SchemeGroupVersion.WithKind("AgentRun"))}},
		Data: map[string]string{keptLogKey: "agent: error: HTTP 503\n"}}
	kube := k8sfake.NewClientset(owned)
	var out bytes.Buffer
	// The pod source has nothing (its pod is gone): the kept tail answers.
	require.NoError(t, writeLog(context.Background(), run, []logSource{fakeSource{err: errNoLog}, keptLog{kube: kube}}, false, &out))
	assert.Equal(t, "agent: error: HTTP 503\n", out.String())

	foreign := owned.DeepCopy()
	foreign.OwnerReferences = nil
	_, err := keptLog{kube: k8sfake.NewClientset(foreign)}.open(context.Background(), run, false)
	assert.ErrorIs(t, err, errNoLog)
	_, err = keptLog{kube: k8sfake.NewClientset()}.open(context.Background(), run, false)
	assert.ErrorIs(t, err, errNoLog)
}
