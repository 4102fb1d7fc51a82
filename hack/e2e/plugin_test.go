package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var (
	pluginOnce sync.Once
	pluginPath string
	pluginErr  error
)

// plugin builds cmd/kubectl-agentrun once per test binary.
func (e *env) plugin(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		pluginPath = filepath.Join(filepath.Dir(e.controllerPath), "kubectl-agentrun")
		build := exec.Command("go", "build", "-trimpath", "-o", pluginPath, "./cmd/kubectl-agentrun")
		build.Dir = e.root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			pluginErr = errors.New(string(out))
		}
	})
	require.NoError(t, pluginErr)
	return pluginPath
}

// agentrun runs the plugin with the cluster's kubeconfig in $KUBECONFIG and
// returns its stdout, stderr and exit code.
func (e *env) agentrun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(e.plugin(t), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.cluster.Kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

// TestKubectlPlugin: kubectl agentrun against the real API server and the
// controller: run follows a run to its result with the exit code of its
// outcome, result reads it back, logs says why a finished run has no log,
// cancel stops a run keeping its record, and the kubectl flags behave as kubectl's.
func TestKubectlPlugin(t *testing.T) {
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	e.startController(t, ns)
	e.kubectl(t, "-n", ns, "create", "secret", "generic", "openai-key", "--from-literal=OPENAI_API_KEY=sk-test")
	e.apply(t, instanceYAML(ns, "inst", `  agents: {default: {model: gpt-4o, runTimeout: 2m}}
  authRefs: [{provider: openai, secret: openai-key}]
`))

	// run: the instance's defaults, env for the simulated agent, the result
	// on stdout and the phases on stderr.
	out, errOut, code := e.agentrun(t, "run", "-n", ns, "--name", "ok", "check the cluster",
		"--env", "SIM_MESSAGE="+successReport, "--env", "SIM_DURATION=1s")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Equal(t, "the cluster is healthy\n", out)
	assert.Contains(t, errOut, "agentrun/ok created in namespace "+ns)
	assert.Contains(t, errOut, "agentrun/ok Succeeded")
	r := e.getRun(t, ns, "ok")
	assert.Equal(t, "inst", r.Spec.InstanceRef)
	assert.Equal(t, v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o"}, r.Spec.Model)
	assert.Equal(t, "check the cluster", r.Spec.Task)
	assert.True(t, strings.HasPrefix(r.Spec.SessionKey, "kubectl-"), r.Spec.SessionKey)

	// A failing run: exit code 1, the reason and the agent's error on stderr.
	out, errOut, code = e.agentrun(t, "run", "check the cluster", "-n", ns, "--name", "bad", "--env", "SIM_EXIT_CODE=3",
		"--env", `SIM_MESSAGE={"status":"error","error":"model refused the task"}`)
	assert.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "agentrun/bad Failed (AgentFailed)\n")
	assert.Contains(t, errOut, "agentrun/bad Failed (exit code 3): AgentFailed: ")
	assert.Contains(t, errOut, "model refused the task")

	// result reads both back; -o json prints the run.
	out, _, code = e.agentrun(t, "result", "ok", "-n", ns)
	assert.Equal(t, 0, code)
	assert.Equal(t, "the cluster is healthy\n", out)
	_, errOut, code = e.agentrun(t, "result", "-n", ns, "bad")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "agentrun/bad Failed (exit code 3): AgentFailed: ")
	out, _, code = e.agentrun(t, "result", "-n", ns, "-o", "json", "ok")
	assert.Equal(t, 0, code)
	var got v1alpha1.AgentRun
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	assert.Equal(t, "AgentRun", got.Kind)
	assert.Equal(t, v1alpha1.PhaseSucceeded, got.Status.Phase)
	out, _, code = e.agentrun(t, "result", "-n", ns, "-o", "yaml", "ok")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "kind: AgentRun\n")
	_, errOut, code = e.agentrun(t, "result", "-n", ns, "nosuch")
	assert.Equal(t, 2, code)
	assert.Equal(t, "error: agentrun/nosuch not found in namespace "+ns+"\n", errOut)

	// A run that has not finished: result says so with exit code 3; --wait=false returns at once.
	out, errOut, code = e.agentrun(t, "run", "-n", ns, "--name", "slow", "--wait=false", "--env", "SIM_DURATION=1h", "--timeout", "90s", "wait")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "agentrun/slow created\n", out)
	e.waitPhase(t, ns, "slow", v1alpha1.PhaseRunning, 30*time.Second)
	_, errOut, code = e.agentrun(t, "result", "-n", ns, "slow")
	assert.Equal(t, 3, code)
	assert.Contains(t, errOut, "agentrun/slow has not finished: Running pod/")

	// logs: the pod of a finished run with cleanup delete is gone, and the
	// plugin says so rather than failing obscurely.
	e.waitNoChildren(t, ns, "ok", 60*time.Second)
	_, errOut, code = e.agentrun(t, "logs", "-n", ns, "ok")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "agentrun/ok finished (Succeeded) and its pod/ok-")
	assert.Contains(t, errOut, "is gone (cleanup: delete)")

	// cancel stops the run and keeps its record (TestCancel has the rest).
	out, errOut, code = e.agentrun(t, "cancel", "--wait", "-n", ns, "slow")
	assert.Equal(t, 0, code, errOut)
	assert.Equal(t, "agentrun/slow cancelled: the run was cancelled (spec.cancel) while running\n", out)
	assert.Equal(t, v1alpha1.ReasonCancelled, failedReason(e.getRun(t, ns, "slow")))
	_, errOut, code = e.agentrun(t, "cancel", "-n", ns, "nosuch")
	assert.Equal(t, 2, code)
	assert.Equal(t, "error: agentrun/nosuch not found in namespace "+ns+"\n", errOut)

	// kubectl's flags: --kubeconfig and --context are honoured, a missing
	// context is an error, and the namespace defaults to the context's.
	_, errOut, code = e.agentrun(t, "result", "--kubeconfig", e.cluster.Kubeconfig, "--context", "nosuch", "-n", ns, "ok")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `context "nosuch" does not exist`)
	_, errOut, code = e.agentrun(t, "result", "ok")
	assert.Equal(t, 2, code)
	assert.Equal(t, "error: agentrun/ok not found in namespace default\n", errOut)

	// Bad usage.
	_, errOut, code = e.agentrun(t, "run", "-n", ns)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "run takes one argument, the task")
	e.apply(t, instanceYAML(ns, "other", ""))
	_, errOut, code = e.agentrun(t, "run", "-n", ns, "x")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "several SympoziumInstances (inst, other): pass --instance")
	_, errOut, code = e.agentrun(t, "run", "-n", ns, "--instance", "other", "x")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "sympoziuminstance/other sets no agents.default.model: pass --model")
}
