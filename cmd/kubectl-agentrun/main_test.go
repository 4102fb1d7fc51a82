package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func TestParseFlagsAnywhere(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		ns   string
		env  map[string]string
		pos  []string
	}{
		"flags first":       {[]string{"-n", "a", "--env", "K=V", "the task"}, "a", map[string]string{"K": "V"}, []string{"the task"}},
		"flags after":       {[]string{"the task", "-n", "a", "--env=K=V"}, "a", map[string]string{"K": "V"}, []string{"the task"}},
		"flags around":      {[]string{"--namespace", "a", "x", "--env", "K=V", "y"}, "a", map[string]string{"K": "V"}, []string{"x", "y"}},
		"dash dash ends":    {[]string{"-n", "a", "--", "-n", "b"}, "a", map[string]string{}, []string{"-n", "b"}},
		"no positional arg": {[]string{"-n", "a"}, "a", map[string]string{}, []string{}},
	} {
		t.Run(name, func(t *testing.T) {
			fs, c := newFlags("run", "TASK", io.Discard)
			env := envFlag{}
			fs.Var(env, "env", "")
			require.NoError(t, parse(fs, tc.args))
			assert.Equal(t, tc.ns, c.namespace)
			assert.Equal(t, tc.env, map[string]string(env))
			assert.Equal(t, tc.pos, fs.Args())
		})
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, exitError, runMain(context.Background(), nil, &out, &errOut))
	assert.Contains(t, errOut.String(), "Commands:")
	errOut.Reset()
	assert.Equal(t, exitError, runMain(context.Background(), []string{"frobnicate"}, &out, &errOut))
	assert.Contains(t, errOut.String(), `unknown command "frobnicate"`)
	errOut.Reset()
	assert.Equal(t, exitError, runMain(context.Background(), []string{"result", "-o", "xml", "x"}, &out, &errOut))
	assert.Equal(t, "error: --output must be json or yaml, not \"xml\"\n", errOut.String())
	errOut.Reset()
	assert.Equal(t, exitError, runMain(context.Background(), []string{"run", "--env", "novalue", "x"}, &out, &errOut))
	assert.Contains(t, errOut.String(), `want KEY=VALUE, got "novalue"`)
	errOut.Reset()
	assert.Equal(t, exitError, runMain(context.Background(), []string{"cancel", "--wait"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "error: cancel takes one argument, the name of the run")
	errOut.Reset()
	assert.Equal(t, exitOK, runMain(context.Background(), []string{"cancel", "-h"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "wait until the controller recorded the run's end")
	errOut.Reset()
	assert.Equal(t, exitOK, runMain(context.Background(), []string{"logs", "-h"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "Usage: kubectl agentrun logs [flags] NAME")
	assert.Empty(t, out.String())
}

// fakeSource is a log source for tests of the fallback order.
type fakeSource struct {
	log string
	err error
}

func (f fakeSource) open(context.Context, *v1alpha1.AgentRun, bool) (io.ReadCloser, error) {
	if f.err != nil {
		return nil, f.err
	}
	return io.NopCloser(strings.NewReader(f.log)), nil
}

func TestWriteLogSources(t *testing.T) {
	run := &v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{Name: "r"},
		Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhaseSucceeded, PodName: "r-abc"}}
	var out bytes.Buffer
	// The first source with a log answers: a kept tail plugs in after the pod.
	require.NoError(t, writeLog(context.Background(), run, []logSource{fakeSource{err: errNoLog}, fakeSource{log: "kept tail\n"}}, false, &out))
	assert.Equal(t, "kept tail\n", out.String())

	err := writeLog(context.Background(), run, []logSource{fakeSource{err: errNoLog}}, false, &out)
	require.Error(t, err)
	assert.Equal(t, "agentrun/r finished (Succeeded) and its pod/r-abc is gone (cleanup: delete), and with it the agent's log; its outcome is kept: kubectl agentrun result r", err.Error())

	pending := &v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: v1alpha1.AgentRunStatus{Phase: v1alpha1.PhasePending,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionAdmitted, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonInstanceNotFound}}}}
	err = writeLog(context.Background(), pending, []logSource{fakeSource{err: errNoLog}}, false, &out)
	require.Error(t, err)
	assert.Equal(t, "agentrun/p has no pod yet (Pending (InstanceNotFound)): try again once it runs", err.Error())
}
