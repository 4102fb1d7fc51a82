package workload

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// TestMemoryWiring: the agent pod of a run whose instance lists the memory
// skill is told about the memory server and waits for it, and one whose
// instance has memory.enabled mounts the memory ConfigMap, as the
// original's buildContainers/buildVolumes do
// (internal/controller/agentrun_controller.go:1428-1474, :1895-1909 at
// 25c0bb2). Fixtures: the values are the original's, written out.
func TestMemoryWiring(t *testing.T) {
	const url = "http://inst-memory.team-a.svc:8080"
	wantInit := corev1.Container{
		Name:            "wait-for-memory",
		Image:           "busybox:1.36",
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"sh", "-c", "elapsed=0; until wget -q --spider --timeout=2 " + url + "/health; do echo 'waiting for memory server...'; sleep 2; " +
			"elapsed=$((elapsed+2)); if [ $elapsed -ge 60 ]; then echo 'ERROR: memory server not ready after 60s'; exit 1; fi; done"},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          restrictedContainerSecurityContext(),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
	}
	wantVolume := corev1.Volume{Name: "memory", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "inst-memory"}, Optional: new(true)}}}
	wantMount := corev1.VolumeMount{Name: "memory", MountPath: "/memory", ReadOnly: true}
	memorySkill := v1alpha1.SkillRef{SkillPackRef: "memory"}
	legacy := func(i *v1alpha1.SympoziumInstance) { i.Spec.Memory = &v1alpha1.MemorySpec{Enabled: true} }

	for _, tc := range []struct {
		name           string
		inst           *v1alpha1.SympoziumInstance
		run            *v1alpha1.AgentRun
		server, legacy bool
	}{
		{name: "no instance", run: newRun(withSkills(memorySkill))},
		{name: "instance without memory", inst: newInstance(), run: newRun()},
		{name: "memory skill on the instance", inst: newInstance(withInstanceSkills(memorySkill)), run: newRun(), server: true},
		{name: "memory skill on the run alone: no server to wait for", inst: newInstance(), run: newRun(withSkills(memorySkill))},
		{name: "another skill whose name contains memory", inst: newInstance(withInstanceSkills(v1alpha1.SkillRef{SkillPackRef: "memory-extra"})), run: newRun()},
		{name: "memory.enabled", inst: newInstance(legacy), run: newRun(), legacy: true},
		{name: "memory disabled", inst: newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.Memory = &v1alpha1.MemorySpec{} }), run: newRun()},
		{name: "both", inst: newInstance(legacy, withInstanceSkills(memorySkill)), run: newRun(), server: true, legacy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := PodTemplate(testCfg, Inputs{Run: tc.run, Instance: tc.inst, Now: now})
			require.NoError(t, err)
			agent := container(tmpl.Spec, v1alpha1.AgentContainerName)
			env := envMap(agent.Env)
			if tc.server {
				assert.Equal(t, url, env["MEMORY_SERVER_URL"])
				assert.Equal(t, []corev1.Container{wantInit}, tmpl.Spec.InitContainers)
			} else {
				assert.NotContains(t, env, "MEMORY_SERVER_URL")
				assert.Empty(t, tmpl.Spec.InitContainers)
			}
			if tc.legacy {
				assert.Equal(t, "true", env["MEMORY_ENABLED"])
				assert.Contains(t, tmpl.Spec.Volumes, wantVolume)
				assert.Contains(t, agent.VolumeMounts, wantMount)
			} else {
				assert.NotContains(t, env, "MEMORY_ENABLED")
				assert.NotContains(t, tmpl.Spec.Volumes, wantVolume)
				assert.NotContains(t, agent.VolumeMounts, wantMount)
			}
			assertRestricted(t, tmpl.Spec)
		})
	}

	// The image is configurable (--memory-wait-image); spec.env cannot
	// override the URL; a task run's Job carries it.
	cfg := testCfg
	cfg.MemoryWaitImage = "registry.local/busybox:1.36"
	in := Inputs{Run: newRun(withEnv("MEMORY_SERVER_URL", "http://elsewhere")), Instance: newInstance(withInstanceSkills(memorySkill)), Now: now}
	job, err := Job(cfg, in)
	require.NoError(t, err)
	require.Len(t, job.Spec.Template.Spec.InitContainers, 1)
	assert.Equal(t, "registry.local/busybox:1.36", job.Spec.Template.Spec.InitContainers[0].Image)
	assert.Equal(t, []string{url}, envValues(container(job.Spec.Template.Spec, v1alpha1.AgentContainerName).Env, "MEMORY_SERVER_URL"))
}

// TestMemoryWarmPoolRefused: a warm pool's running pod cannot mount the
// instance's memory ConfigMap: the claim is refused, saying so.
func TestMemoryWarmPoolRefused(t *testing.T) {
	inst := newInstance(func(i *v1alpha1.SympoziumInstance) { i.Spec.Memory = &v1alpha1.MemorySpec{Enabled: true} })
	_, err := SandboxClaim(testCfg, Inputs{Run: warmRun(), Instance: inst, Now: now}, SandboxClaimGroup+"/v1beta1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ConfigMap inst-memory at /memory")
}

func envValues(env []corev1.EnvVar, name string) []string {
	var out []string
	for _, e := range env {
		if e.Name == name {
			out = append(out, e.Value)
		}
	}
	return out
}
