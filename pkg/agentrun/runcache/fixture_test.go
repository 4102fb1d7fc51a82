package runcache

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// t0 is every run's creation time; now is t0 + 1m unless a case says so.
var (
	t0  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(time.Minute)
)

func newRun(opts ...func(*v1alpha1.AgentRun)) *v1alpha1.AgentRun {
	r := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "ns", UID: "run-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(t0)},
		Spec: v1alpha1.AgentRunSpec{InstanceRef: "inst", AgentID: "default", SessionKey: "s", Task: "do it",
			Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt"}, Mode: v1alpha1.ModeTask, Cleanup: v1alpha1.CleanupDelete},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func newInstance(opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
	i := &v1alpha1.SympoziumInstance{ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "ns", UID: "inst-uid"}}
	for _, o := range opts {
		o(i)
	}
	return i
}
