package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	clientset "github.com/sympozium-ai/sympozium-controller/pkg/generated/clientset/versioned"
)

// envFlag collects repeated --env KEY=VALUE.
type envFlag map[string]string

func (e envFlag) String() string { return "" }
func (e envFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	e[k] = val
	return nil
}

type runOptions struct {
	instance, name, agentID, sessionKey string
	provider, model, authSecret         string
	timeout                             time.Duration
	cleanup                             string
	env                                 envFlag
	wait                                bool
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("run", "TASK", stderr)
	o := runOptions{env: envFlag{}}
	fs.StringVar(&o.instance, "instance", "", "SympoziumInstance of the run (default: the namespace's only one)")
	fs.StringVar(&o.name, "name", "", "name of the run (default: generated from the instance's name)")
	fs.StringVar(&o.agentID, "agent-id", "default", "agentId of the run")
	fs.StringVar(&o.sessionKey, "session-key", "", "sessionKey of the run (default: a new session)")
	fs.StringVar(&o.provider, "provider", "", "model provider (default: the instance's only authRefs provider)")
	fs.StringVar(&o.model, "model", "", "model name (default: the instance's agents.default.model)")
	fs.StringVar(&o.authSecret, "auth-secret", "", "Secret holding the API key (default: the instance's authRefs entry for the provider)")
	fs.DurationVar(&o.timeout, "timeout", 0, "the run's timeout (default: the instance's runTimeout, else the controller's)")
	fs.StringVar(&o.cleanup, "cleanup", "", "delete or keep the workload once the run finished (default: delete)")
	fs.Var(o.env, "env", "KEY=VALUE for the agent's environment (repeatable)")
	fs.BoolVar(&o.wait, "wait", true, "follow the run to its result; --wait=false prints its name and returns")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if fs.NArg() != 1 || strings.TrimSpace(fs.Arg(0)) == "" {
		fs.Usage()
		return errors.New(`run takes one argument, the task: kubectl agentrun run "check the cluster"`)
	}
	client, _, ns, err := c.clients()
	if err != nil {
		return err
	}
	run, err := o.build(ctx, client, ns, fs.Arg(0))
	if err != nil {
		return err
	}
	created, err := client.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, run, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if !o.wait {
		if c.output != "" {
			return printObject(stdout, created, c.output)
		}
		fmt.Fprintf(stdout, "agentrun/%s created\n", created.Name)
		return nil
	}
	fmt.Fprintf(stderr, "agentrun/%s created in namespace %s\n", created.Name, ns)
	final, err := follow(ctx, client, created, stderr)
	if err != nil {
		return fmt.Errorf("following agentrun/%s: %w (it keeps running; see kubectl agentrun result %s)", created.Name, err, created.Name)
	}
	return report(final, c.output, stdout)
}

// build makes the run from the flags and the instance's defaults.
func (o *runOptions) build(ctx context.Context, client clientset.Interface, ns, task string) (*v1alpha1.AgentRun, error) {
	inst, err := o.findInstance(ctx, client, ns)
	if err != nil {
		return nil, err
	}
	def := inst.Spec.Agents.Default
	model := o.model
	if model == "" {
		model = def.Model
	}
	if model == "" {
		return nil, fmt.Errorf("sympoziuminstance/%s sets no agents.default.model: pass --model", inst.Name)
	}
	provider := o.provider
	if provider == "" {
		providers := map[string]bool{}
		for _, a := range inst.Spec.AuthRefs {
			providers[a.Provider] = true
		}
		switch len(providers) {
		case 1:
			provider = inst.Spec.AuthRefs[0].Provider
		case 0:
			return nil, fmt.Errorf("sympoziuminstance/%s has no authRefs to take the provider from: pass --provider", inst.Name)
		default:
			return nil, fmt.Errorf("sympoziuminstance/%s has authRefs for %s: pass --provider", inst.Name,
				strings.Join(slices.Sorted(maps.Keys(providers)), ", "))
		}
	}
	session := o.sessionKey
	if session == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		session = "kubectl-" + hex.EncodeToString(b)
	}
	run := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: o.name},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: inst.Name,
			AgentID:     o.agentID,
			SessionKey:  session,
			Task:        task,
			Model: v1alpha1.ModelSpec{Provider: provider, Model: model, AuthSecretRef: o.authSecret,
				BaseURL: def.BaseURL, Thinking: def.Thinking},
			Cleanup: v1alpha1.CleanupPolicy(o.cleanup),
		},
	}
	if o.name == "" {
		run.GenerateName = inst.Name + "-"
	}
	if o.timeout != 0 {
		run.Spec.Timeout = &metav1.Duration{Duration: o.timeout}
	}
	if len(o.env) > 0 {
		run.Spec.Env = o.env
	}
	return run, nil
}

func (o *runOptions) findInstance(ctx context.Context, client clientset.Interface, ns string) (*v1alpha1.SympoziumInstance, error) {
	if o.instance != "" {
		inst, err := client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, o.instance, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("sympoziuminstance/%s not found in namespace %s", o.instance, ns)
		}
		return inst, err
	}
	list, err := client.SympoziumV1alpha1().SympoziumInstances(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	switch len(list.Items) {
	case 1:
		return &list.Items[0], nil
	case 0:
		return nil, fmt.Errorf("no SympoziumInstance in namespace %s: create one, or pass -n", ns)
	}
	names := make([]string, 0, len(list.Items))
	for _, i := range list.Items {
		names = append(names, i.Name)
	}
	return nil, fmt.Errorf("namespace %s has several SympoziumInstances (%s): pass --instance", ns, strings.Join(names, ", "))
}

// follow watches the run until it is Succeeded or Failed, printing each
// phase it reaches to w, and returns it finished.
func follow(ctx context.Context, client clientset.Interface, run *v1alpha1.AgentRun, w io.Writer) (*v1alpha1.AgentRun, error) {
	runs := client.SympoziumV1alpha1().AgentRuns(run.Namespace)
	last := ""
	show := func(r *v1alpha1.AgentRun) {
		line := describePhase(r)
		if line != last {
			fmt.Fprintf(w, "agentrun/%s %s\n", r.Name, line)
			last = line
		}
	}
	for {
		cur, err := runs.Get(ctx, run.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		show(cur)
		if cur.Status.Phase.IsTerminal() {
			return cur, nil
		}
		wi, err := runs.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", run.Name).String(),
			ResourceVersion: cur.ResourceVersion,
		})
		if err != nil {
			return nil, err
		}
		for ev := range wi.ResultChan() {
			if ev.Type == watch.Deleted {
				wi.Stop()
				return nil, fmt.Errorf("agentrun/%s was deleted", run.Name)
			}
			r, ok := ev.Object.(*v1alpha1.AgentRun)
			if !ok { // a watch error: start again from a fresh read
				break
			}
			show(r)
			if r.Status.Phase.IsTerminal() {
				wi.Stop()
				return r, nil
			}
		}
		wi.Stop()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// describePhase is the phase of a run with the reason of a waiting, failed
// or lost run, as one short line.
func describePhase(r *v1alpha1.AgentRun) string {
	p := string(r.Status.Phase)
	if p == "" {
		p = "(not seen by the controller yet)"
	}
	if c := waitingOrFailed(r); c != nil {
		p += " (" + c.Reason + ")"
	}
	if r.Status.PodName != "" && !r.Status.Phase.IsTerminal() {
		p += " pod/" + r.Status.PodName
	}
	return p
}

// waitingOrFailed is the condition that explains the run's phase: Failed
// when it failed, Admitted when it is False (waiting).
func waitingOrFailed(r *v1alpha1.AgentRun) *metav1.Condition {
	for i := range r.Status.Conditions {
		c := &r.Status.Conditions[i]
		if c.Type == v1alpha1.ConditionFailed && c.Status == metav1.ConditionTrue {
			return c
		}
		if c.Type == v1alpha1.ConditionAdmitted && c.Status == metav1.ConditionFalse {
			return c
		}
	}
	return nil
}

// report prints a finished run: its result on stdout (or the run as json or
// yaml), and for a failed run its reason and error, with exit code 1.
func report(r *v1alpha1.AgentRun, output string, stdout io.Writer) error {
	if output != "" {
		if err := printObject(stdout, r, output); err != nil {
			return err
		}
	} else if r.Status.Result != "" {
		fmt.Fprintln(stdout, strings.TrimRight(r.Status.Result, "\n"))
	}
	if r.Status.Phase == v1alpha1.PhaseFailed {
		msg := fmt.Sprintf("agentrun/%s Failed", r.Name)
		// status.error starts with the reason; say it once.
		if c := waitingOrFailed(r); c != nil && !strings.HasPrefix(r.Status.Error, c.Reason) {
			msg += ": " + c.Reason
		}
		if r.Status.ExitCode != nil {
			msg += fmt.Sprintf(" (exit code %d)", *r.Status.ExitCode)
		}
		if r.Status.Error != "" {
			msg += ": " + r.Status.Error
		}
		return &exitErr{code: exitRunFailed, msg: msg}
	}
	return nil
}

// printObject prints the run as kubectl -o json|yaml would.
func printObject(w io.Writer, r *v1alpha1.AgentRun, format string) error {
	obj := r.DeepCopy()
	obj.APIVersion, obj.Kind = v1alpha1.SchemeGroupVersion.String(), "AgentRun"
	obj.ManagedFields = nil
	s := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, nil, nil,
		kjson.SerializerOptions{Yaml: format == "yaml", Pretty: true})
	return s.Encode(obj, w)
}

var _ flag.Value = envFlag{}
