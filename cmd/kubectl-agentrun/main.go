// Command kubectl-agentrun is a kubectl plugin for AgentRuns: put it on PATH
// and call it as `kubectl agentrun`.
//
//	kubectl agentrun run [--instance I] [--timeout 5m] [--env K=V] "task"   create a run and follow it to its result
//	kubectl agentrun result NAME                                            print a finished run's result
//	kubectl agentrun logs NAME                                              print the agent's log
//	kubectl agentrun cancel [--wait] NAME                                   stop a run, keeping its record
//	kubectl agentrun schedule NAME                                          a SympoziumSchedule's next tick and last runs
//	kubectl agentrun trigger NAME                                           create a run of a SympoziumSchedule now
//
// Every command takes kubectl's -n/--namespace, --context, --kubeconfig and
// -o json|yaml, and loads the kubeconfig by client-go's rules ($KUBECONFIG,
// else ~/.kube/config). Exit codes: 0 the run succeeded (or the command did
// its job), 1 the run failed, 2 the command itself failed (usage, API error,
// no log to show), 3 the run has not finished yet (result).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK         = 0
	exitRunFailed  = 1
	exitError      = 2
	exitNotDoneYet = 3
)

const usage = `kubectl agentrun: run agents and read their results (sympozium.ai AgentRuns)

Commands:
  run [flags] TASK   create a run of TASK with the instance's defaults and follow it to its result
                     (exit code 0 Succeeded, 1 Failed)
  result NAME        print the result of a finished run (exit 1 if it failed, 3 if it has not finished)
  logs NAME          print the agent's log (its pod's container "agent")
  cancel NAME        stop a run and keep its record (spec.cancel: it ends Failed, reason Cancelled);
                     --wait follows it until the controller recorded the end
  schedule NAME      print a SympoziumSchedule: its phase, next tick and last runs
  trigger NAME       create a run of a SympoziumSchedule now, as its tick would
                     (like kubectl create job --from=cronjob/NAME)

Flags of every command:
  -n, --namespace NS   namespace (default: the kubeconfig context's)
  --context NAME       kubeconfig context
  --kubeconfig PATH    kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)
  -o, --output FORMAT  json or yaml: print the run (run, result) instead of text

Run "kubectl agentrun COMMAND -h" for the flags of a command.
`

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// exitErr carries an exit code other than exitError with its message.
type exitErr struct {
	code int
	msg  string
}

func (e *exitErr) Error() string { return e.msg }

// runMain runs one command and returns the process's exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitError
		}
		return exitOK
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr)
	case "result":
		err = cmdResult(ctx, rest, stdout, stderr)
	case "logs", "log":
		err = cmdLogs(ctx, rest, stdout, stderr)
	case "cancel":
		err = cmdCancel(ctx, rest, stdout, stderr)
	case "schedule":
		err = cmdSchedule(ctx, rest, stdout, stderr)
	case "trigger":
		err = cmdTrigger(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "kubectl agentrun: unknown command %q\n\n%s", cmd, usage)
		return exitError
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if e, ok := errors.AsType[*exitErr](err); ok {
		if e.msg != "" {
			fmt.Fprintln(stderr, e.msg)
		}
		return e.code
	}
	fmt.Fprintln(stderr, "error:", err)
	return exitError
}
