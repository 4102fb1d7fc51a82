package workload

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/instancephase"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// The warm-pool contract: what a run on a SandboxWarmPool hands to the
// agent of an already running pod, and what the pool's SandboxTemplate must
// do to receive it.
//
// agent-sandbox (v0.5.x) starts a claim that carries env or volume claim
// templates cold, bypassing the pool, and admits claim labels only in an
// allowlisted domain (by default sandbox.users.io). A claim without them
// adopts a warm Sandbox, merges the claim's additionalPodMetadata into the
// adopted Sandbox's pod template, and the Sandbox controller copies the
// template's annotations onto the running pod. So the run's values travel
// as annotations in the sympozium.ai domain:
//
//   - AnnotationWarmRun: the run's name (its identity);
//   - AnnotationWarmEnv: the agent container's environment of the agent pod
//     contract (AGENT_RUN_ID, TASK, MODEL_NAME, RUN_TIMEOUT, ..., then
//     spec.env) as one JSON object of name to value;
//   - AnnotationWarmTask: the task, set in the same write as the others: the
//     agent waits for it.
//
// The pool's template exposes the pod's annotations through a downward API
// volume (field metadata.annotations, file WarmPodInfoFile) mounted in
// container "agent" at WarmPodInfoPath; its agent waits until the file
// holds AnnotationWarmTask, exports AnnotationWarmEnv and runs the task,
// ending with the agent pod contract's termination message. The template
// provides what cannot be changed on a running pod: the API key Secret,
// runtime class, resources, security context, node selection.
const (
	AnnotationWarmRun  = "sympozium.ai/agent-run"
	AnnotationWarmTask = "sympozium.ai/task"
	AnnotationWarmEnv  = "sympozium.ai/env"

	// WarmPodInfoPath is where the pool's template mounts the downward API
	// volume in container "agent"; WarmPodInfoFile the file of the pod's
	// annotations in it.
	WarmPodInfoPath = "/var/run/sympozium/podinfo"
	WarmPodInfoFile = "annotations"
)

// SandboxClaim builds the SandboxClaim (extensions.agents.x-k8s.io/v1beta1)
// of a run with agentSandbox.warmPoolRef: named naming.SandboxClaimName,
// controlled by the run, claiming a sandbox of the warm pool, with the
// run's values as additionalPodMetadata annotations (see the warm-pool
// contract above) and no labels, env or volume claim templates, so that a
// stock agent-sandbox adopts a warm Sandbox.
//
// What a running pod cannot take is refused rather than dropped: skills
// (volumes and sidecars) and a node selector (spec.agentSandbox's
// runtimeClass and resources are refused with warmPoolRef at admission).
// Only v1beta1 claims name a warm pool (v1alpha1 claims name a
// SandboxTemplate), so apiVersion must be that version.
func SandboxClaim(cfg Config, in Inputs, apiVersion string) (*unstructured.Unstructured, error) {
	if apiVersion != SandboxClaimGroup+"/v1beta1" {
		return nil, fmt.Errorf("warm-pool claims need %s/v1beta1, not %s", SandboxClaimGroup, apiVersion)
	}
	run := in.Run
	as := run.Spec.AgentSandbox
	if as == nil || as.WarmPoolRef == "" {
		return nil, fmt.Errorf("agentSandbox.warmPoolRef is not set")
	}
	annotations, err := WarmAnnotations(cfg, in)
	if err != nil {
		return nil, err
	}
	spec := map[string]any{
		"warmPoolRef":           map[string]any{"name": as.WarmPoolRef},
		"additionalPodMetadata": map[string]any{"annotations": stringMap(annotations)},
	}
	return runObject(run, apiVersion, SandboxClaimKind, naming.SandboxClaimName(run.Name), spec), nil
}

// WarmAnnotations are the annotations that carry a run to the agent of a
// warm pod (see the warm-pool contract above). Errors name what a running
// pod cannot take.
func WarmAnnotations(cfg Config, in Inputs) (map[string]string, error) {
	if cms := SkillConfigMaps(in); len(cms) > 0 {
		return nil, fmt.Errorf("skills (%s) cannot be mounted on a warm pool's running pod: run without agentSandbox.warmPoolRef, or mount them in the pool's SandboxTemplate and drop them from the run and its instance",
			strings.Join(cms, ", "))
	}
	if LegacyMemory(in.Instance) {
		return nil, fmt.Errorf("the instance's memory (ConfigMap %s at %s) cannot be mounted on a warm pool's running pod: run without agentSandbox.warmPoolRef, or mount it in the pool's SandboxTemplate and disable memory on the instance",
			instancephase.MemoryName(in.Run.Spec.InstanceRef), MemoryPath)
	}
	if sel := nodeSelector(in.Run, in.Instance); len(sel) > 0 {
		return nil, fmt.Errorf("a node selector (%s) cannot move a warm pool's running pod: run without agentSandbox.warmPoolRef, or set it in the pool's SandboxTemplate and drop it from model.nodeSelector and the instance",
			strings.Join(slices.Sorted(maps.Keys(sel)), ", "))
	}
	tmpl, err := PodTemplate(cfg, in)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, c := range tmpl.Spec.Containers {
		if c.Name != v1alpha1.AgentContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				env[e.Name] = e.Value
			}
		}
	}
	b, err := json.Marshal(env) // keys sorted: deterministic
	if err != nil {
		return nil, fmt.Errorf("encoding the agent's environment: %w", err)
	}
	return map[string]string{
		AnnotationWarmRun:  in.Run.Name,
		AnnotationWarmTask: in.Run.Spec.Task,
		AnnotationWarmEnv:  string(b),
	}, nil
}
