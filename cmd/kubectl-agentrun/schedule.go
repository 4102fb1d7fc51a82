package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
	"github.com/sympozium-ai/sympozium-controller/pkg/schedule"
)

// lastRunsShown is how many of a schedule's runs `schedule` lists.
const lastRunsShown = 10

// cmdSchedule prints a SympoziumSchedule: its cron, phase (and why it
// cannot fire), its next tick and its last runs, newest first.
func cmdSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("schedule", "NAME", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("schedule takes one argument, the name of the SympoziumSchedule")
	}
	client, _, ns, err := c.clients()
	if err != nil {
		return err
	}
	s, err := client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(ctx, fs.Arg(0), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("sympoziumschedule/%s not found in namespace %s", fs.Arg(0), ns)
	}
	if err != nil {
		return err
	}
	runs, err := client.SympoziumV1alpha1().AgentRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: schedule.LabelSchedule + "=" + s.Name})
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, describeSchedule(s, runs.Items, time.Now()))
	return nil
}

// describeSchedule is the text of `schedule`.
func describeSchedule(s *v1alpha1.SympoziumSchedule, runs []v1alpha1.AgentRun, now time.Time) string {
	var b strings.Builder
	policy := s.Spec.ConcurrencyPolicy
	if policy == "" {
		policy = v1alpha1.ConcurrencyForbid
	}
	phase := s.Status.Phase
	if phase == "" {
		phase = "(not seen by the controller yet)"
	}
	fmt.Fprintf(&b, "sympoziumschedule/%s: %q", s.Name, s.Spec.Schedule)
	if s.Spec.TimeZone != nil {
		fmt.Fprintf(&b, " in %s", *s.Spec.TimeZone)
	}
	fmt.Fprintf(&b, ", instance %s, type %s, %s: %s\n", s.Spec.InstanceRef, s.Spec.Type, policy, phase)
	if c := apimeta.FindStatusCondition(s.Status.Conditions, schedule.ConditionReady); c != nil && c.Status == metav1.ConditionFalse && c.Message != "" {
		fmt.Fprintf(&b, "  %s: %s\n", c.Reason, c.Message)
	}
	if t := s.Status.NextRunTime; t != nil {
		fmt.Fprintf(&b, "next tick: %s (in %s)\n", t.UTC().Format(time.RFC3339), t.Sub(now).Round(time.Second))
	} else {
		b.WriteString("next tick: none\n")
	}
	fmt.Fprintf(&b, "runs created: %d", s.Status.TotalRuns)
	if s.Status.LastRunName != "" {
		fmt.Fprintf(&b, ", last %s", s.Status.LastRunName)
	}
	b.WriteString("\n")
	slices.SortFunc(runs, func(a, b v1alpha1.AgentRun) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	if len(runs) == 0 {
		return b.String()
	}
	b.WriteString("last runs (newest first):\n")
	for i := range runs[:min(len(runs), lastRunsShown)] {
		r := &runs[i]
		tick := r.Annotations[schedule.AnnotationScheduledAt]
		if r.Annotations[schedule.AnnotationTrigger] == schedule.TriggerManual {
			tick = "manual"
		}
		if tick == "" {
			tick = "-"
		}
		fmt.Fprintf(&b, "  %-30s %-10s tick %-20s created %s\n", r.Name, describePhase(r), tick, r.CreationTimestamp.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// cmdTrigger creates a run of a schedule now, as its tick would (like
// kubectl create job --from=cronjob/NAME): <schedule>-manual-<unix time>,
// annotated sympozium.ai/trigger=manual so that it never counts as a
// tick's run (but concurrencyPolicy Forbid sees it, like any unfinished
// run of the schedule).
func cmdTrigger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("trigger", "NAME", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("trigger takes one argument, the name of the SympoziumSchedule")
	}
	client, kube, ns, err := c.clients()
	if err != nil {
		return err
	}
	s, err := client.SympoziumV1alpha1().SympoziumSchedules(ns).Get(ctx, fs.Arg(0), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("sympoziumschedule/%s not found in namespace %s", fs.Arg(0), ns)
	}
	if err != nil {
		return err
	}
	inst, err := client.SympoziumV1alpha1().SympoziumInstances(ns).Get(ctx, s.Spec.InstanceRef, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the schedule's instance: %w", err)
	}
	memory := ""
	if schedule.IncludeMemory(s) {
		cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, schedule.MemoryConfigMap(s.Spec.InstanceRef), metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil {
			memory = cm.Data[schedule.MemoryKey]
		}
	}
	now := time.Now()
	run := schedule.BuildRun(s, inst, schedule.Fire{Name: fmt.Sprintf("%s-manual-%d", s.Name, now.Unix()), Tick: now}, memory)
	run.Annotations = map[string]string{schedule.AnnotationTrigger: schedule.TriggerManual, schedule.AnnotationScheduleUID: string(s.UID)}
	created, err := client.SympoziumV1alpha1().AgentRuns(ns).Create(ctx, run, metav1.CreateOptions{FieldManager: "kubectl-agentrun"})
	if err != nil {
		return fmt.Errorf("creating the run: %w", err)
	}
	if c.output != "" {
		return printObject(stdout, created, c.output)
	}
	fmt.Fprintf(stdout, "agentrun/%s created from sympoziumschedule/%s\n", created.Name, s.Name)
	return nil
}
