package agentrun

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	core "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/phase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/result"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/runcache"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

const reportJSON = `{"status":"success","response":"the cluster is healthy","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":45000}}`

func TestSyncNewRunCreatesJobAndWritesPending(t *testing.T) {
	type transition struct {
		from   v1alpha1.AgentRunPhase
		to     v1alpha1.AgentRunPhase
		reason string
	}
	var transitions []transition
	f := newFixture(t, func(o *Options) {
		o.OnTransition = func(run *v1alpha1.AgentRun, next *v1alpha1.AgentRunStatus, reason string) {
			transitions = append(transitions, transition{run.Status.Phase, next.Phase, reason})
		}
	})
	run := newRun("run")
	f.add(newInstance("inst"), run)

	require.NoError(t, f.sync("run"))

	kw := f.kubeWrites()
	require.Equal(t, []string{"create jobs ns/run"}, describe(kw))
	create := kw[0].(core.CreateAction)
	assert.Equal(t, v1alpha1.FieldManager, create.(core.CreateActionImpl).CreateOptions.FieldManager)
	job := object[*batchv1.Job](t, kw[0])
	assert.Equal(t, "run", job.Name)
	assert.Equal(t, testNS, job.Namespace)
	assert.Equal(t, []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun", Name: "run", UID: "run-uid",
		Controller: new(true), BlockOwnerDeletion: new(true)}}, job.OwnerReferences)
	assert.Equal(t, map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelAgentRun:  "run",
		v1alpha1.LabelComponent: workload.ComponentAgent,
		v1alpha1.LabelInstance:  "inst",
	}, job.Labels)
	require.Len(t, job.Spec.Template.Spec.Containers, 1)
	agent := job.Spec.Template.Spec.Containers[0]
	assert.Equal(t, v1alpha1.AgentContainerName, agent.Name)
	assert.Equal(t, "agent:test", agent.Image)
	assert.Contains(t, agent.Env, corev1.EnvVar{Name: workload.EnvAgentRunID, Value: "run"})
	assert.Contains(t, agent.Env, corev1.EnvVar{Name: workload.EnvTask, Value: "do it"})
	assert.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)
	assert.Equal(t, ptr.To[int32](2), job.Spec.BackoffLimit, "the default infrastructure retry budget")
	assert.NotNil(t, job.Spec.PodFailurePolicy)

	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
	traceID, _ := workload.TraceParent(run)
	want := v1alpha1.AgentRunStatus{
		ObservedGeneration: 1, Phase: v1alpha1.PhasePending, JobName: "run", TraceID: traceID,
		Conditions: []metav1.Condition{cond(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, "Job run created", t0.Add(time.Minute))},
	}
	assert.Equal(t, want, object[*v1alpha1.AgentRun](t, cw[0]).Status)
	assert.Equal(t, run.Spec, object[*v1alpha1.AgentRun](t, cw[0]).Spec, "a status write carries the cached spec unchanged")
	assert.Empty(t, f.events(), "the Admitted condition says it; no Event unless --progress-events")
	assert.Equal(t, []transition{{"", v1alpha1.PhasePending, v1alpha1.ReasonJobCreated}}, transitions)

	// Second sync once the cache caught up: nothing to write.
	f.refresh()
	f.clearActions()
	require.NoError(t, f.sync("run"))
	assert.Empty(t, describe(f.clientWrites()))
	assert.Empty(t, describe(f.kubeWrites()))
	assert.Empty(t, f.events())
	assert.Len(t, transitions, 1)
}

func TestSyncStaleCacheJobAlreadyExists(t *testing.T) {
	f := newFixture(t)
	run := newRun("run")
	f.add(newInstance("inst"), run)
	f.addToTracker(jobOf(run, "job-uid")) // the API server has it, the Job informer not yet

	require.NoError(t, f.sync("run"))

	assert.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()))
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
	st := object[*v1alpha1.AgentRun](t, cw[0]).Status
	assert.Equal(t, v1alpha1.PhasePending, st.Phase)
	assert.Equal(t, "run", st.JobName)
	c := findCond(st, v1alpha1.ConditionAdmitted)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	assert.Equal(t, v1alpha1.ReasonJobCreated, c.Reason)

	// The existing Job is the run's own: once cached, nothing more to do.
	f.refresh()
	assert.Equal(t, 1, f.converge("run", 3))
	job, err := f.trackedJob("run")
	require.NoError(t, err)
	assert.Equal(t, "job-uid", string(job.UID), "the existing Job was not replaced")
}

func TestSyncStatusConflict(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"), newRun("run"))
	conflicts := 0
	f.client.PrependReactor("update", "agentruns", func(a core.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		conflicts++
		return true, nil, apierrors.NewConflict(agentrunsGVR.GroupResource(), "run", errors.New("the object has been modified"))
	})

	err := f.sync("run")
	require.Error(t, err)
	assert.True(t, apierrors.IsConflict(err), "got %v", err)
	assert.Equal(t, 1, conflicts)
	assert.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()))
	assert.Equal(t, []string{"update agentruns/status ns/run"}, describe(f.clientWrites()))
	assert.Empty(t, f.trackedRun("run").Status.Phase, "the conflicting write was not stored")
	assert.Empty(t, f.events(), "no event for a transition that was not written")

	f.client.ReactionChain = f.client.ReactionChain[1:]
	creates := countVerb(f.kube.Actions(), "create", "jobs")

	// Resync from the same (stale) cache, then converge.
	f.clearActions()
	require.NoError(t, f.sync("run"))
	creates += countVerb(f.kube.Actions(), "create", "jobs")
	assert.Equal(t, []string{"update agentruns/status ns/run"}, describe(f.clientWrites()))
	assert.Equal(t, v1alpha1.PhasePending, f.trackedRun("run").Status.Phase, "Pending is written")
	f.refresh()
	for range 5 {
		f.clearActions()
		require.NoError(t, f.sync("run"))
		creates += countVerb(f.kube.Actions(), "create", "jobs")
		n := len(f.clientWrites()) + len(f.kubeWrites())
		f.refresh()
		if n == 0 {
			break
		}
	}
	assert.Equal(t, 1, creates, "one Job create across every sync")
	assert.Equal(t, 0, len(f.clientWrites())+len(f.kubeWrites()), "converged")
	st := f.trackedRun("run").Status
	assert.Equal(t, v1alpha1.PhasePending, st.Phase)
	assert.Equal(t, "run", st.JobName)
	c := findCond(st, v1alpha1.ConditionAdmitted)
	require.NotNil(t, c)
	assert.Equal(t, metav1.ConditionTrue, c.Status)
	traceID, _ := workload.TraceParent(newRun("run"))
	assert.Equal(t, traceID, st.TraceID, "the trace ID is recorded even though the admitting write was lost")
}

// TestSyncWaitsForOwnWrite: a sync that finds in the cache a copy of the
// run older than the controller's own last write does nothing and waits for
// the informer (read-your-writes). The fake tracker does not assign
// resourceVersions, so a reactor does.
func TestSyncWaitsForOwnWrite(t *testing.T) {
	f := newFixture(t)
	run := newRun("run")
	run.ResourceVersion = "10"
	f.add(newInstance("inst"), run)
	rv := 10
	f.client.PrependReactor("update", "agentruns", func(a core.Action) (bool, runtime.Object, error) {
		rv++
		a.(core.UpdateAction).GetObject().(*v1alpha1.AgentRun).ResourceVersion = strconv.Itoa(rv)
		return false, nil, nil // on to the tracker
	})

	require.NoError(t, f.sync("run"))
	require.Equal(t, []string{"update agentruns/status ns/run"}, describe(f.clientWrites()))
	assert.Equal(t, "11", f.trackedRun("run").ResourceVersion)
	f.clearActions()

	// The Job is cached, the run's own write is not: nothing is decided on
	// the old copy (which would otherwise rewrite the same status).
	job, err := f.trackedJob("run")
	require.NoError(t, err)
	f.addToCache(job)
	require.NoError(t, f.sync("run"))
	assert.Empty(t, describe(f.clientWrites()))
	assert.Empty(t, describe(f.kubeWrites()))

	f.refresh()
	assert.Equal(t, 1, f.converge("run", 3))
}

func countVerb(actions []core.Action, verb, resource string) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

func TestSyncInjectedErrors(t *testing.T) {
	parent := newRun("parent", withStatus(runningStatus("parent", "parent-pod")))
	cases := map[string]struct {
		setup     func(f *fixture) string
		inject    func(f *fixture) func()
		wantWrite []string // the writes of the failing sync
		wantPhase v1alpha1.AgentRunPhase
		check     func(t *testing.T, f *fixture)
	}{
		"create jobs": {
			setup: func(f *fixture) string {
				f.add(newInstance("inst"), newRun("run"))
				return "run"
			},
			inject:    func(f *fixture) func() { return injectError(&f.kube.Fake, "create", "jobs", "") },
			wantWrite: []string{"create jobs ns/run"},
			wantPhase: v1alpha1.PhasePending,
		},
		"update agentruns/status": {
			setup: func(f *fixture) string {
				f.add(newInstance("inst"), newRun("run"))
				return "run"
			},
			inject:    func(f *fixture) func() { return injectError(&f.client.Fake, "update", "agentruns", "status") },
			wantWrite: []string{"update agentruns/status ns/run", "create jobs ns/run"},
			wantPhase: v1alpha1.PhasePending,
		},
		"delete jobs": {
			setup: func(f *fixture) string {
				run := newRun("run", withStatus(runningStatus("run", "run-pod")))
				job := jobOf(run, "job-uid")
				f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentExited(0, reportJSON)))
				return "run"
			},
			inject:    func(f *fixture) func() { return injectError(&f.kube.Fake, "delete", "jobs", "") },
			wantWrite: []string{"update agentruns/status ns/run", "delete jobs ns/run"},
			wantPhase: v1alpha1.PhaseSucceeded,
			check: func(t *testing.T, f *fixture) {
				_, err := f.trackedJob("run")
				assert.True(t, apierrors.IsNotFound(err), "the Job is deleted once the API works again: %v", err)
				assert.Equal(t, "the cluster is healthy", f.trackedRun("run").Status.Result)
			},
		},
		"patch agentruns (owner reference)": {
			setup: func(f *fixture) string {
				f.add(newInstance("inst"), parent, newRun("child", withParent(parent, 1)))
				return "child"
			},
			inject:    func(f *fixture) func() { return injectError(&f.client.Fake, "patch", "agentruns", "") },
			wantWrite: []string{"patch agentruns ns/child"},
			wantPhase: v1alpha1.PhasePending,
			check: func(t *testing.T, f *fixture) {
				r := f.trackedRun("child")
				require.Len(t, r.OwnerReferences, 1)
				assert.Equal(t, parent.UID, r.OwnerReferences[0].UID)
				assert.Equal(t, "child", r.Status.JobName)
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			run := tc.setup(f)
			remove := tc.inject(f)

			var err error
			require.NotPanics(t, func() { err = f.sync(run) })
			require.Error(t, err)
			assert.True(t, apierrors.IsInternalError(err), "the API error is returned: %v", err)
			assert.ElementsMatch(t, tc.wantWrite, append(describe(f.clientWrites()), describe(f.kubeWrites())...))

			remove()
			f.converge(run, 5)
			assert.Equal(t, tc.wantPhase, f.trackedRun(run).Status.Phase)
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestSyncTaskLifecycle(t *testing.T) {
	cases := map[string]struct {
		cleanup    v1alpha1.CleanupPolicy
		exit       int32
		message    string
		wantPhase  v1alpha1.AgentRunPhase
		wantReason string
		wantDelete bool
		wantEvent  string
		check      func(t *testing.T, st v1alpha1.AgentRunStatus)
	}{
		"exit 0: Succeeded, Job deleted": {
			cleanup: v1alpha1.CleanupDelete, exit: 0, message: reportJSON,
			wantPhase: v1alpha1.PhaseSucceeded, wantReason: v1alpha1.ReasonSucceeded, wantDelete: true,
			wantEvent: "Normal Succeeded agent container exited with code 0",
			check: func(t *testing.T, st v1alpha1.AgentRunStatus) {
				assert.Equal(t, "the cluster is healthy", st.Result)
				assert.Equal(t, &v1alpha1.TokenUsage{InputTokens: 1500, OutputTokens: 800, TotalTokens: 2300, ToolCalls: 5, DurationMs: 45000}, st.TokenUsage)
				assert.Equal(t, ptr.To[int32](0), st.ExitCode)
				assert.Empty(t, st.Error)
				c := findCond(st, v1alpha1.ConditionComplete)
				require.NotNil(t, c)
				assert.Equal(t, metav1.ConditionTrue, c.Status)
			},
		},
		"exit 0 with cleanup keep: Succeeded, Job kept": {
			cleanup: v1alpha1.CleanupKeep, exit: 0, message: reportJSON,
			wantPhase: v1alpha1.PhaseSucceeded, wantReason: v1alpha1.ReasonSucceeded,
			wantEvent: "Normal Succeeded agent container exited with code 0",
		},
		"exit 2: Failed AgentFailed": {
			cleanup: v1alpha1.CleanupDelete, exit: 2, message: `{"status":"error","error":"model refused","metrics":{"inputTokens":10,"outputTokens":2}}`,
			wantPhase: v1alpha1.PhaseFailed, wantReason: v1alpha1.ReasonAgentFailed, wantDelete: true,
			wantEvent: "Warning AgentFailed agent container exited with code 2 (Error): model refused",
			check: func(t *testing.T, st v1alpha1.AgentRunStatus) {
				assert.Equal(t, ptr.To[int32](2), st.ExitCode)
				assert.Equal(t, "AgentFailed: agent container exited with code 2 (Error): model refused", st.Error)
				assert.EqualValues(t, 12, st.TokenUsage.TotalTokens)
				c := findCond(st, v1alpha1.ConditionComplete)
				assert.Nil(t, c)
			},
		},
	}
	for name, tc := range cases {
		for _, progress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/progress events %t", name, progress), func(t *testing.T) {
				f := newFixture(t, func(o *Options) { o.ProgressEvents = progress })
				run := newRun("run", withCleanup(tc.cleanup))
				f.add(newInstance("inst"), run)

				// Admitted.
				require.NoError(t, f.sync("run"))
				require.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()))
				require.Equal(t, []string{"update agentruns/status ns/run"}, describe(f.clientWrites()))
				f.refresh()
				f.clearActions()

				// The Job controller made a pod; the agent runs.
				job, err := f.trackedJob("run")
				require.NoError(t, err)
				job.UID = "job-uid"
				f.update(job)
				f.add(podOf(job, "run-abcde", agentRunning(t0.Add(5*time.Second))))
				f.setNow(t0.Add(2 * time.Minute))
				require.NoError(t, f.sync("run"))
				assert.Empty(t, describe(f.kubeWrites()))
				cw := f.clientWrites()
				require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
				st := object[*v1alpha1.AgentRun](t, cw[0]).Status
				assert.Equal(t, v1alpha1.PhaseRunning, st.Phase)
				assert.Equal(t, "run-abcde", st.PodName)
				assert.Equal(t, "run", st.JobName)
				require.NotNil(t, st.StartedAt)
				assert.Equal(t, t0.Add(5*time.Second), st.StartedAt.Time)
				assert.Equal(t, cond(v1alpha1.ConditionRunning, metav1.ConditionTrue, v1alpha1.ReasonStarted, "agent container started in pod run-abcde", t0.Add(2*time.Minute)),
					*findCond(st, v1alpha1.ConditionRunning))
				f.refresh()
				f.clearActions()

				// The agent terminates.
				pod := podOf(job, "run-abcde", agentExited(tc.exit, tc.message))
				f.update(pod)
				f.setNow(t0.Add(3 * time.Minute))
				require.NoError(t, f.sync("run"))
				kw := f.kubeWrites()
				if tc.wantDelete {
					require.Equal(t, []string{"delete jobs ns/run"}, describe(kw))
					opts := kw[0].(core.DeleteActionImpl).GetDeleteOptions()
					require.NotNil(t, opts.Preconditions)
					assert.Equal(t, ptr.To[types.UID]("job-uid"), opts.Preconditions.UID)
					assert.Equal(t, ptr.To(metav1.DeletePropagationBackground), opts.PropagationPolicy)
				} else {
					// Kept: the Job and its pod are retired, a merge patch of
					// one label with the UID as precondition.
					require.Equal(t, []string{"patch jobs ns/run", "patch pods ns/run-abcde"}, describe(kw))
					for i, uid := range []string{"job-uid", string(pod.UID)} {
						p := kw[i].(core.PatchActionImpl)
						assert.Equal(t, types.MergePatchType, p.GetPatchType())
						assert.JSONEq(t, `{"metadata":{"uid":"`+uid+`","labels":{"sympozium.ai/retired":"true"}}}`, string(p.GetPatch()))
					}
				}
				cw = f.clientWrites()
				require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
				st = object[*v1alpha1.AgentRun](t, cw[0]).Status
				assert.Equal(t, tc.wantPhase, st.Phase)
				require.NotNil(t, st.CompletedAt)
				assert.Equal(t, t0.Add(3*time.Minute), st.CompletedAt.Time)
				terminal := v1alpha1.ConditionComplete
				if tc.wantPhase == v1alpha1.PhaseFailed {
					terminal = v1alpha1.ConditionFailed
				}
				c := findCond(st, terminal)
				require.NotNil(t, c)
				assert.Equal(t, metav1.ConditionTrue, c.Status)
				assert.Equal(t, tc.wantReason, c.Reason)
				if tc.check != nil {
					tc.check(t, st)
				}
				// The outcome is an Event; admission and start are in the
				// conditions, and Events only with --progress-events.
				want := []string{tc.wantEvent}
				if progress {
					want = []string{"Normal JobCreated Job run created", "Normal Started agent container started in pod run-abcde", tc.wantEvent}
				}
				assert.Equal(t, want, f.events())

				// Done: nothing more to write, and the Job stays as cleanup says.
				f.refresh()
				assert.Equal(t, 1, f.converge("run", 3))
				_, err = f.trackedJob("run")
				if tc.wantDelete {
					assert.True(t, apierrors.IsNotFound(err))
				} else {
					assert.NoError(t, err)
				}
				assert.Empty(t, f.events())
			})
		}
	}
}

func TestSyncWorkloadLost(t *testing.T) {
	t.Run("Job deleted while Running: JobLost", func(t *testing.T) {
		f := newFixture(t)
		f.add(newInstance("inst"), newRun("run", withStatus(runningStatus("run", "run-pod"))))

		require.NoError(t, f.sync("run"))

		assert.Empty(t, describe(f.kubeWrites()), "no Job to create again nor to delete")
		cw := f.clientWrites()
		require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
		st := object[*v1alpha1.AgentRun](t, cw[0]).Status
		assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
		assert.Equal(t, "JobLost: Job run was deleted before the run finished", st.Error)
		assert.Equal(t, v1alpha1.ReasonJobLost, findCond(st, v1alpha1.ConditionFailed).Reason)
		running := findCond(st, v1alpha1.ConditionRunning)
		assert.Equal(t, metav1.ConditionFalse, running.Status)
		assert.Equal(t, v1alpha1.ReasonJobLost, running.Reason)
		assert.Equal(t, []string{"Warning JobLost Job run was deleted before the run finished"}, f.events())
		f.refresh()
		assert.Equal(t, 1, f.converge("run", 3))
	})
	t.Run("Job not in the cache but on the API server: the run waits for the cache", func(t *testing.T) {
		// The Job's watch lags the run's, and the expectation of its create
		// is gone (a restart, or past its TTL): the API server is asked
		// before the run fails.
		f := newFixture(t)
		run := newRun("run", withStatus(runningStatus("run", "run-pod")))
		f.add(newInstance("inst"), run)
		f.addToTracker(jobOf(run, "job-uid"))
		f.kube.ClearActions()

		require.NoError(t, f.sync("run"))

		assert.Equal(t, []string{"get jobs ns/run"}, describe(f.kube.Actions()))
		assert.Empty(t, f.clientWrites(), "the run does not fail")
		assert.Empty(t, f.events())
	})
	t.Run("pod missing while Running: PodLost", func(t *testing.T) {
		f := newFixture(t)
		run := newRun("run", withStatus(runningStatus("run", "run-pod")))
		f.add(newInstance("inst"), run, jobOf(run, "job-uid"))

		require.NoError(t, f.sync("run"))

		kw := f.kubeWrites()
		require.Equal(t, []string{"delete jobs ns/run"}, describe(kw))
		pre := kw[0].(core.DeleteActionImpl).GetDeleteOptions().Preconditions
		require.NotNil(t, pre)
		assert.Equal(t, ptr.To[types.UID]("job-uid"), pre.UID)
		cw := f.clientWrites()
		require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
		st := object[*v1alpha1.AgentRun](t, cw[0]).Status
		assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
		assert.Equal(t, v1alpha1.ReasonPodLost, findCond(st, v1alpha1.ConditionFailed).Reason)
		assert.Contains(t, st.Error, "run-pod")
		f.refresh()
		assert.Equal(t, 1, f.converge("run", 3))
	})
}

// A pod being deleted because its Job was deleted (background cascade)
// may reach the cache before the Job's deletion: the API server, asked,
// says whether the run lost its Job or only its pod.
func TestSyncDeletedPodConfirmsTheJob(t *testing.T) {
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = new(metav1.NewTime(t0.Add(time.Minute))) }
	for _, tc := range []struct {
		name       string
		jobOnAPI   bool
		wantReason string
	}{
		{"the Job is gone on the API server: JobLost", false, v1alpha1.ReasonJobLost},
		{"the Job is there, the pod alone was deleted: PodLost", true, v1alpha1.ReasonPodLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			run := newRun("run", withStatus(runningStatus("run", "run-pod")))
			job := jobOf(run, "job-uid")
			f.add(newInstance("inst"), run)
			f.addToCache(job, podOf(job, "run-pod", agentExited(137, ""), deleting))
			if tc.jobOnAPI {
				f.addToTracker(job)
			}
			f.kube.ClearActions()

			require.NoError(t, f.sync("run"))

			assert.Contains(t, describe(f.kube.Actions()), "get jobs ns/run", "the API server is asked")
			cw := f.clientWrites()
			require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
			st := object[*v1alpha1.AgentRun](t, cw[0]).Status
			assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
			assert.Equal(t, tc.wantReason, findCond(st, v1alpha1.ConditionFailed).Reason, st.Error)
		})
	}
}

// admittedJobUnseen syncs a new run "run" once (its Job is created) and
// lets the run's admitted status reach the cache but not the Job; it
// returns the run as cached.
func admittedJobUnseen(t *testing.T, f *fixture) *v1alpha1.AgentRun {
	t.Helper()
	f.add(newInstance("inst"), newRun("run"))
	require.NoError(t, f.sync("run"))
	require.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()))
	o, err := f.client.Tracker().Get(agentrunsGVR, testNS, "run")
	require.NoError(t, err)
	f.addToCache(o)
	return o.(*v1alpha1.AgentRun)
}

func TestSyncJobExpectationExpires(t *testing.T) {
	f := newFixture(t)
	admittedJobUnseen(t, f)
	f.clearActions()

	require.NoError(t, f.sync("run"))
	assert.Empty(t, describe(f.clientWrites()), "a Job created and not seen yet is not lost")
	assert.Empty(t, describe(f.kubeWrites()))

	// Past the expectation's TTL the API server is asked: the Job is
	// there, so the run is not failed for its loss.
	f.setNow(f.clock().Add(expectationTTL + time.Second))
	require.NoError(t, f.sync("run"))
	assert.Empty(t, describe(f.kubeWrites()), "no second Job")
	assert.Empty(t, describe(f.clientWrites()), "a Job the API server has is not lost")

	// Gone from the API server too: lost.
	require.NoError(t, f.kube.Tracker().Delete(jobsGVR, testNS, "run"))
	f.clearActions()
	require.NoError(t, f.sync("run"))
	assert.Empty(t, describe(f.kubeWrites()), "no second Job")
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
	assert.Equal(t, v1alpha1.ReasonJobLost, findCond(object[*v1alpha1.AgentRun](t, cw[0]).Status, v1alpha1.ConditionFailed).Reason)
}

func TestSyncDeletedRun(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"))
	f.addToTracker(newRun("gone")) // only in the API server: the lister says NotFound

	require.NoError(t, f.sync("gone"))
	assert.Empty(t, f.client.Actions())
	assert.Empty(t, f.kube.Actions())
	assert.Empty(t, f.events())
}

func TestSyncSubagentCapacity(t *testing.T) {
	f := newFixture(t)
	parent := newRun("parent", withStatus(runningStatus("parent", "parent-pod")))
	older := newRun("child-a", withParent(parent, 1), withOwner(parent), withCreated(t0))
	younger := newRun("child-b", withParent(parent, 1), withOwner(parent), withCreated(t0.Add(time.Second)))
	f.add(newInstance("inst", withLimits(2, 1, 3)), parent, older, younger)

	waiting := func(t *testing.T, name string) {
		t.Helper()
		assert.Empty(t, describe(f.kubeWrites()), "no Job for %s", name)
		cw := f.clientWrites()
		require.Equal(t, []string{"update agentruns/status ns/" + name}, describe(cw))
		st := object[*v1alpha1.AgentRun](t, cw[0]).Status
		assert.Equal(t, v1alpha1.PhasePending, st.Phase)
		assert.Empty(t, st.JobName)
		c := findCond(st, v1alpha1.ConditionAdmitted)
		require.NotNil(t, c)
		assert.Equal(t, metav1.ConditionFalse, c.Status)
		assert.Equal(t, v1alpha1.ReasonWaitingForCapacity, c.Reason)
	}

	// The younger run waits behind the older one, even though no slot is taken.
	require.NoError(t, f.sync("child-b"))
	waiting(t, "child-b")
	f.clearActions()

	// The older run takes the only slot.
	require.NoError(t, f.sync("child-a"))
	assert.Equal(t, []string{"create jobs ns/child-a"}, describe(f.kubeWrites()))
	assert.Equal(t, []string{"update agentruns/status ns/child-a"}, describe(f.clientWrites()))
	f.clearActions()

	// Right after, with a cache that still shows child-a not admitted, the
	// in-memory admission keeps child-b out.
	require.NoError(t, f.sync("child-b"))
	waiting(t, "child-b")
	f.clearActions()

	// Once the cache caught up, both are settled: child-b still waits.
	f.refresh()
	f.converge("child-a", 3)
	f.converge("child-b", 3)
	assert.Equal(t, "child-a", f.trackedRun("child-a").Status.JobName)
	assert.Empty(t, f.trackedRun("child-b").Status.JobName)
	assert.Equal(t, v1alpha1.ReasonWaitingForCapacity, findCond(f.trackedRun("child-b").Status, v1alpha1.ConditionAdmitted).Reason)
	_, err := f.trackedJob("child-b")
	assert.True(t, apierrors.IsNotFound(err))
}

// TestSyncSubagentAdmissionsInMemory isolates the in-memory admissions: the
// run admitted first is the younger one (the older one reached the cache
// late), so only the admission the cache does not show yet keeps the older
// one out of the single slot.
func TestSyncSubagentAdmissionsInMemory(t *testing.T) {
	f := newFixture(t)
	parent := newRun("parent", withStatus(runningStatus("parent", "parent-pod")))
	older := newRun("child-a", withParent(parent, 1), withOwner(parent), withCreated(t0))
	younger := newRun("child-b", withParent(parent, 1), withOwner(parent), withCreated(t0.Add(time.Second)))
	f.add(newInstance("inst", withLimits(2, 1, 3)), parent, younger)

	require.NoError(t, f.sync("child-b"))
	assert.Equal(t, []string{"create jobs ns/child-b"}, describe(f.kubeWrites()))
	f.clearActions()

	// child-a reaches the cache; child-b still shows as not admitted there.
	f.add(older)
	require.NoError(t, f.sync("child-a"))
	assert.Empty(t, describe(f.kubeWrites()), "the only slot is taken by child-b")
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/child-a"}, describe(cw))
	assert.Equal(t, v1alpha1.ReasonWaitingForCapacity,
		findCond(object[*v1alpha1.AgentRun](t, cw[0]).Status, v1alpha1.ConditionAdmitted).Reason)

	// The same holds once the cache shows child-b admitted.
	f.refresh()
	f.converge("child-a", 3)
	f.converge("child-b", 3)
	assert.Empty(t, f.trackedRun("child-a").Status.JobName)
	assert.Equal(t, "child-b", f.trackedRun("child-b").Status.JobName)
}

func TestSyncSubagentSpawnDepthExceeded(t *testing.T) {
	f := newFixture(t)
	parent := newRun("parent", withStatus(runningStatus("parent", "parent-pod")))
	f.add(newInstance("inst", withLimits(2, 5, 3)), parent, newRun("deep", withParent(parent, 3), withOwner(parent)))

	require.NoError(t, f.sync("deep"))

	assert.Empty(t, describe(f.kubeWrites()))
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/deep"}, describe(cw))
	st := object[*v1alpha1.AgentRun](t, cw[0]).Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	assert.Equal(t, "SpawnDepthExceeded: spawnDepth 3 exceeds the instance's maxDepth 2", st.Error)
	assert.Equal(t, v1alpha1.ReasonSpawnDepthExceeded, findCond(st, v1alpha1.ConditionFailed).Reason)
	admitted := findCond(st, v1alpha1.ConditionAdmitted)
	require.NotNil(t, admitted)
	assert.Equal(t, metav1.ConditionFalse, admitted.Status)
	f.refresh()
	assert.Equal(t, 1, f.converge("deep", 3))
}

func TestSyncSubagentOwnedByParent(t *testing.T) {
	f := newFixture(t)
	parent := newRun("parent", withStatus(runningStatus("parent", "parent-pod")))
	child := newRun("child", withParent(parent, 1))
	child.ResourceVersion = "7"
	f.add(newInstance("inst"), parent, child)

	require.NoError(t, f.sync("child"))

	cw := f.clientWrites()
	require.Equal(t, []string{"patch agentruns ns/child", "update agentruns/status ns/child"}, describe(cw))
	patch := cw[0].(core.PatchAction)
	assert.Equal(t, types.MergePatchType, patch.GetPatchType())
	var got struct {
		Metadata map[string]json.RawMessage `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(patch.GetPatch(), &got))
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(patch.GetPatch(), &top))
	assert.Equal(t, []string{"metadata"}, slices.Sorted(maps.Keys(top)), "only metadata is patched: the spec is never written back")
	assert.JSONEq(t, `"7"`, string(got.Metadata["resourceVersion"]), "guarded by the cached resourceVersion")
	var refs []metav1.OwnerReference
	require.NoError(t, json.Unmarshal(got.Metadata["ownerReferences"], &refs))
	wantRefs := []metav1.OwnerReference{{APIVersion: "sympozium.ai/v1alpha1", Kind: "AgentRun", Name: "parent", UID: "parent-uid"}}
	assert.Equal(t, wantRefs, refs, "owned by the parent, not controlled (the parent does not reconcile it)")
	assert.Equal(t, wantRefs, object[*v1alpha1.AgentRun](t, cw[1]).OwnerReferences,
		"the status write starts from the patched object")
	assert.Equal(t, []string{"create jobs ns/child"}, describe(f.kubeWrites()))
	env := object[*batchv1.Job](t, f.kubeWrites()[0]).Spec.Template.Spec.Containers[0].Env
	assert.Contains(t, env, corev1.EnvVar{Name: workload.EnvParentRunName, Value: "parent"})
	assert.Contains(t, env, corev1.EnvVar{Name: workload.EnvSpawnDepth, Value: "1"})
	assert.Equal(t, wantRefs, f.trackedRun("child").OwnerReferences)

	f.refresh()
	assert.Equal(t, 1, f.converge("child", 3))
}

func TestSyncInvalidJobFailsOnce(t *testing.T) {
	f := newFixture(t)
	f.add(newInstance("inst"), newRun("run"))
	f.kube.PrependReactor("create", "jobs", func(a core.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInvalid(batchv1.SchemeGroupVersion.WithKind("Job").GroupKind(), "run",
			field.ErrorList{field.Invalid(field.NewPath("spec", "template", "spec", "containers").Index(0).Child("image"), "", "must not be empty")})
	})

	require.NoError(t, f.sync("run"))

	assert.Equal(t, []string{"create jobs ns/run"}, describe(f.kubeWrites()), "one create, no retry")
	cw := f.clientWrites()
	require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
	st := object[*v1alpha1.AgentRun](t, cw[0]).Status
	assert.Equal(t, v1alpha1.PhaseFailed, st.Phase)
	assert.Empty(t, st.JobName)
	assert.Equal(t, v1alpha1.ReasonInvalidSpec, findCond(st, v1alpha1.ConditionFailed).Reason)
	assert.Contains(t, st.Error, "InvalidSpec: the API server rejected the run's Job")
	assert.Contains(t, st.Error, "must not be empty")
	assert.Equal(t, 0, f.c.queue.Len())
	assert.False(t, f.c.expectations.workloadExpected("run-uid"), "a rejected Job is not expected")

	f.refresh()
	assert.Equal(t, 1, f.converge("run", 3))
}

func TestSyncLogFallback(t *testing.T) {
	marker := "starting\n" + result.MarkerStart + `{"status":"success","response":"from the log","metrics":{"inputTokens":3,"outputTokens":4}}` + result.MarkerEnd + "\nbye\n"
	cases := map[string]struct {
		message    string
		wantResult string
		wantCalls  []string
	}{
		"report in the termination message: the log is not read": {
			message: reportJSON, wantResult: "the cluster is healthy",
		},
		"no report in the termination message: the log tail is read": {
			message: "", wantResult: "from the log",
			wantCalls: []string{"ns/run-pod/agent/65536"},
		},
		"termination message without a report: the log tail is read": {
			message: "panic: something", wantResult: "from the log",
			wantCalls: []string{"ns/run-pod/agent/65536"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			logs := &fakeLogs{tail: marker}
			f := newFixture(t, withLogs(logs))
			run := newRun("run", withStatus(runningStatus("run", "run-pod")))
			job := jobOf(run, "job-uid")
			f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentExited(0, tc.message)))

			require.NoError(t, f.sync("run"))

			assert.Equal(t, tc.wantCalls, logs.calls)
			cw := f.clientWrites()
			require.Equal(t, []string{"update agentruns/status ns/run"}, describe(cw))
			st := object[*v1alpha1.AgentRun](t, cw[0]).Status
			assert.Equal(t, v1alpha1.PhaseSucceeded, st.Phase)
			assert.Equal(t, tc.wantResult, st.Result)
		})
	}
	t.Run("running agent: the log is not read", func(t *testing.T) {
		logs := &fakeLogs{tail: marker}
		f := newFixture(t, withLogs(logs))
		run := newRun("run", withStatus(runningStatus("run", "run-pod")))
		job := jobOf(run, "job-uid")
		f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentRunning(t0.Add(5*time.Second))))
		require.NoError(t, f.sync("run"))
		assert.Empty(t, logs.calls)
		assert.Empty(t, describe(f.clientWrites()))
	})
	t.Run("the log cannot be read: Succeeded without a result", func(t *testing.T) {
		logs := &fakeLogs{err: errors.New("kubelet unreachable")}
		f := newFixture(t, withLogs(logs))
		run := newRun("run", withStatus(runningStatus("run", "run-pod")))
		job := jobOf(run, "job-uid")
		f.add(newInstance("inst"), run, job, podOf(job, "run-pod", agentExited(0, "")))
		require.NoError(t, f.sync("run"))
		assert.Len(t, logs.calls, 1)
		cw := f.clientWrites()
		require.Len(t, cw, 1)
		st := object[*v1alpha1.AgentRun](t, cw[0]).Status
		assert.Equal(t, v1alpha1.PhaseSucceeded, st.Phase)
		assert.Empty(t, st.Result)
	})
}

func TestKubeLogReader(t *testing.T) {
	f := newFixture(t)
	out, err := KubeLogReader{Client: f.kube}.TailLog(f.ctx, testNS, "run-pod", "agent", 1024)
	require.NoError(t, err)
	assert.Equal(t, "fake logs", out)
	acts := f.kube.Actions()
	require.Len(t, acts, 1)
	gla, ok := acts[0].(core.GenericAction)
	require.True(t, ok)
	assert.Equal(t, "get", gla.GetVerb())
	assert.Equal(t, "log", gla.GetSubresource())
	opts, ok := gla.GetValue().(*corev1.PodLogOptions)
	require.True(t, ok, "%T", gla.GetValue())
	assert.Equal(t, "agent", opts.Container)
	assert.Nil(t, opts.LimitBytes, "a byte limit would cut the end of the log, where the marker is")
	assert.NotNil(t, opts.TailLines)
}

// The cache holds finished runs compacted (runcache.TrimForCache drops their
// result, error and messages). A finished run whose status must change (its
// spec was edited: observedGeneration) is written from the run as the API
// server has it, so that nothing the cache dropped is lost; one whose
// status stands costs no request at all.
func TestFinishedRunCompactedInCache(t *testing.T) {
	full := newRun("run", withCleanup(v1alpha1.CleanupKeep), withStatus(v1alpha1.AgentRunStatus{
		ObservedGeneration: 1, Phase: v1alpha1.PhaseSucceeded, JobName: "run", PodName: "run-pod",
		StartedAt: new(metav1.NewTime(t0.Add(5 * time.Second))), CompletedAt: new(metav1.NewTime(t0.Add(time.Minute))),
		Result: "the answer", ExitCode: ptr.To[int32](0), TokenUsage: &v1alpha1.TokenUsage{InputTokens: 3, OutputTokens: 4, TotalTokens: 7},
		Conditions: []metav1.Condition{
			cond(v1alpha1.ConditionAdmitted, metav1.ConditionTrue, v1alpha1.ReasonJobCreated, "Job run created", t0),
			cond(v1alpha1.ConditionComplete, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, "agent exited 0", t0.Add(time.Minute)),
		},
	}))
	// What the controller reads of the cache: the record rebuilt. addToCache
	// caches a run as the informer's transform does, as a record.
	cachedCopy := func(r *v1alpha1.AgentRun) *v1alpha1.AgentRun {
		rec, ok := asCached(t, r).(*runcache.FinishedRun)
		require.True(t, ok, "a finished run is cached as a record")
		return rec.AgentRun()
	}

	t.Run("status stands: nothing is read or written", func(t *testing.T) {
		f := newFixture(t)
		f.addToTracker(newInstance("inst"), full)
		f.addToCache(newInstance("inst"), full)
		require.Empty(t, cachedCopy(full).Status.Result, "the cache keeps no result")
		f.client.ClearActions()
		require.NoError(t, f.sync("run"))
		assert.Empty(t, f.client.Actions())
		assert.Empty(t, f.kubeWrites())
	})

	t.Run("status changes: written from a live read, nothing lost", func(t *testing.T) {
		f := newFixture(t)
		edited := full.DeepCopy()
		edited.Generation = 2
		f.addToTracker(newInstance("inst"), edited)
		f.addToCache(newInstance("inst"), edited)
		f.client.ClearActions()
		require.NoError(t, f.sync("run"))
		assert.Equal(t, []string{"get agentruns ns/run", "update agentruns/status ns/run"}, describe(f.client.Actions()))
		got := f.trackedRun("run").Status
		want := *full.Status.DeepCopy()
		want.ObservedGeneration = 2
		assert.Equal(t, want, got)
	})
}

// The expectation of a created workload is read before the cache: the
// informer stores the Job, then its handler observes the create; a sync
// whose cache read misses the Job must still see the expectation, whenever
// the Job arrives in between.
func TestSyncWorkloadArrivesBetweenReads(t *testing.T) {
	f := newFixture(t)
	run := admittedJobUnseen(t, f)
	// The Job arrives right after the cache read misses it: the handler
	// observes the create. (It is kept from the API server too, so that
	// only the order of the two reads decides.)
	require.NoError(t, f.kube.Tracker().Delete(jobsGVR, testNS, "run"))
	jobs := f.c.kinds[phase.KindJob]
	get := jobs.get
	jobs.get = func(ns, name string) (metav1.Object, error) {
		obj, err := get(ns, name)
		f.c.expectations.observed(run.UID)
		return obj, err
	}
	f.c.kinds[phase.KindJob] = jobs
	f.clearActions()

	require.NoError(t, f.sync("run"))
	assert.Empty(t, describe(f.clientWrites()), "the run is not failed for a Job it expects")
}
