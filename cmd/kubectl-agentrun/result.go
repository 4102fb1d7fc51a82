package main

import (
	"context"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

func cmdResult(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("result", "NAME", stderr)
	_, _, r, err := oneRun(ctx, fs, c, args)
	if err != nil {
		return err
	}
	if !r.Status.Phase.IsTerminal() {
		if c.output != "" {
			if err := printObject(stdout, r, c.output); err != nil {
				return err
			}
		}
		return &exitErr{code: exitNotDoneYet, msg: fmt.Sprintf("agentrun/%s has not finished: %s", r.Name, describePhase(r))}
	}
	return report(r, c.output, stdout)
}

// getRun reads a run, with a not-found error that names the namespace.
func getRun(ctx context.Context, client clientset.Interface, ns, name string) (*v1alpha1.AgentRun, error) {
	r, err := client.SympoziumV1alpha1().AgentRuns(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("agentrun/%s not found in namespace %s", name, ns)
	}
	return r, err
}
