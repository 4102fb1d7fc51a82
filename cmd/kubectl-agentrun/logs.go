package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// agentContainer is the container of the agent pod that runs the agent.
const agentContainer = "agent"

// errNoLog means a log source has nothing for the run; the next one is asked.
var errNoLog = errors.New("no log")

// logSource is one place an agent's log can come from. Sources are asked in
// order; the first that does not return errNoLog answers: the agent's pod,
// then the log tail the controller kept for a failed run whose pod is gone.
type logSource interface {
	// open returns the log of run, or errNoLog when this source has none.
	open(ctx context.Context, run *v1alpha1.AgentRun, follow bool) (io.ReadCloser, error)
}

// podLog reads the log of the agent container of the run's pod.
type podLog struct{ kube kubernetes.Interface }

func (p podLog) open(ctx context.Context, run *v1alpha1.AgentRun, follow bool) (io.ReadCloser, error) {
	if run.Status.PodName == "" {
		return nil, errNoLog
	}
	req := p.kube.CoreV1().Pods(run.Namespace).GetLogs(run.Status.PodName,
		&corev1.PodLogOptions{Container: agentContainer, Follow: follow})
	rc, err := req.Stream(ctx)
	if apierrors.IsNotFound(err) {
		return nil, errNoLog
	}
	if err != nil {
		return nil, fmt.Errorf("reading the log of pod/%s: %w", run.Status.PodName, err)
	}
	return rc, nil
}

// keptLog reads the end of the agent's log that the controller keeps in
// ConfigMap <run>-log when a run fails and its pod is deleted (cleanup:
// delete). It is asked after the pod, so a live pod's full log wins.
type keptLog struct{ kube kubernetes.Interface }

// keptLogKey is the ConfigMap key of the kept log (agentrun.KeptLogKey).
const keptLogKey = "agent.log"

func (k keptLog) open(ctx context.Context, run *v1alpha1.AgentRun, _ bool) (io.ReadCloser, error) {
	cm, err := k.kube.CoreV1().ConfigMaps(run.Namespace).Get(ctx, naming.LogName(run.Name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errNoLog
	}
	if err != nil {
		return nil, fmt.Errorf("reading the kept log configmap/%s: %w", naming.LogName(run.Name), err)
	}
	if !metav1.IsControlledBy(cm, run) {
		return nil, errNoLog // not this run's (an older run of the same name, or someone else's)
	}
	log, ok := cm.Data[keptLogKey]
	if !ok {
		return nil, errNoLog
	}
	return io.NopCloser(strings.NewReader(log)), nil
}

func cmdLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("logs", "NAME", stderr)
	follow := fs.Bool("follow", false, "stream the log while the agent runs")
	fs.BoolVar(follow, "f", false, "shorthand for --follow")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("logs takes one argument, the name of the run")
	}
	if c.output != "" {
		return errors.New("logs prints text: --output does not apply")
	}
	client, kube, ns, err := c.clients()
	if err != nil {
		return err
	}
	run, err := getRun(ctx, client, ns, fs.Arg(0))
	if err != nil {
		return err
	}
	return writeLog(ctx, run, []logSource{podLog{kube: kube}, keptLog{kube: kube}}, *follow, stdout)
}

// writeLog copies the run's log from the first source that has it, or says
// clearly why there is none.
func writeLog(ctx context.Context, run *v1alpha1.AgentRun, sources []logSource, follow bool, w io.Writer) error {
	for _, s := range sources {
		rc, err := s.open(ctx, run, follow)
		if errors.Is(err, errNoLog) {
			continue
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(w, rc)
		return err
	}
	return errors.New(noLogReason(run))
}

// noLogReason says why a run has no log to show.
func noLogReason(run *v1alpha1.AgentRun) string {
	name := "agentrun/" + run.Name
	switch {
	case run.Status.PodName == "" && !run.Status.Phase.IsTerminal():
		return fmt.Sprintf("%s has no pod yet (%s): try again once it runs", name, describePhase(run))
	case run.Status.PodName == "":
		return fmt.Sprintf("%s %s without a pod, so there is no log", name, describePhase(run))
	case run.Status.Phase.IsTerminal():
		return fmt.Sprintf("%s finished (%s) and its pod/%s is gone (cleanup: %s), and with it the agent's log; "+
			"its outcome is kept: kubectl agentrun result %s", name, describePhase(run), run.Status.PodName,
			cleanupOf(run), run.Name)
	default:
		return fmt.Sprintf("%s is %s but its pod/%s is gone", name, describePhase(run), run.Status.PodName)
	}
}

func cleanupOf(run *v1alpha1.AgentRun) string {
	if run.Spec.Cleanup == "" {
		return string(v1alpha1.CleanupDelete)
	}
	return string(run.Spec.Cleanup)
}
