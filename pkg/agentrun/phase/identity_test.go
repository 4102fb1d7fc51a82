package phase

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/naming"
	"github.com/sympozium-ai/sympozium-controller/pkg/agentrun/workload"
	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

func kubectlPack(ns string, cluster bool) *v1alpha1.SkillPack {
	sc := &v1alpha1.SkillSidecar{Image: "kubectl:test",
		RBAC: []v1alpha1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}
	if cluster {
		sc.ClusterRBAC = []v1alpha1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}}}
	}
	return &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "kube", Namespace: ns},
		Spec: v1alpha1.SkillPackSpec{Skills: []v1alpha1.Skill{{Name: "kube", Content: "# kube"}}, Sidecar: sc}}
}

func withSkill(name string) runOpt {
	return func(r *v1alpha1.AgentRun) {
		r.Spec.Skills = append(r.Spec.Skills, v1alpha1.SkillRef{SkillPackRef: name})
	}
}

func identityConfig() Config {
	c := testConfig
	c.Workload.RunIdentity = true
	c.SkillsNamespace = "skills"
	return c
}

func kinds(as []Action, verb Verb) []Kind {
	var out []Kind
	for _, a := range as {
		if a.Verb == verb {
			out = append(out, a.Kind)
		}
	}
	return out
}

// A run whose pack declares rules gets its ServiceAccount and grants,
// created before its Job, and its pod runs as that ServiceAccount.
func TestAdmissionCreatesTheRunsIdentityFirst(t *testing.T) {
	run := newRun(withSkill("kube"))
	d := Next(Observed{Run: run, Instance: newInstance(), Now: now, Config: identityConfig(),
		SkillPacks: map[string]*v1alpha1.SkillPack{"kube": kubectlPack("skills", true)}})
	require.Equal(t, v1alpha1.PhasePending, d.Status.Phase, d.Status.Error)
	assert.Equal(t, []Kind{KindServiceAccount, KindRole, KindClusterRole, KindRoleBinding, KindClusterRoleBinding, KindJob},
		kinds(d.Actions, Create))
	last := d.Actions[len(d.Actions)-1].Object.(*batchJob)
	assert.Equal(t, naming.IdentityName(run.Name), last.Spec.Template.Spec.ServiceAccountName)
}

// Runs without API-needing sidecars create nothing more than their Job.
func TestAdmissionWithoutRulesCreatesOnlyTheWorkload(t *testing.T) {
	pack := kubectlPack("ns", false)
	pack.Spec.Sidecar.RBAC = nil
	d := Next(Observed{Run: newRun(withSkill("kube")), Instance: newInstance(), Now: now, Config: identityConfig(),
		SkillPacks: map[string]*v1alpha1.SkillPack{"kube": pack}})
	assert.Equal(t, []Kind{KindJob}, kinds(d.Actions, Create))
}

// clusterRBAC from a pack outside the skills namespace, host access without
// the flag, and a grant the API server refused fail the run with their own
// reasons, creating nothing.
func TestRefusedIdentityFailsTheRun(t *testing.T) {
	host := kubectlPack("ns", false)
	host.Spec.Sidecar.RBAC = nil
	host.Spec.Sidecar.HostAccess = &v1alpha1.HostAccessSpec{Enabled: true}
	for _, tc := range []struct {
		name    string
		pack    *v1alpha1.SkillPack
		refused string
		reason  string
	}{
		{"clusterRBAC outside the skills namespace", kubectlPack("ns", true), "", v1alpha1.ReasonGrantRefused},
		{"host access without the flag", host, "", v1alpha1.ReasonHostAccessDenied},
		{"refused by the API server", kubectlPack("ns", false), "Role x (SkillPack kube): forbidden", v1alpha1.ReasonGrantRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Observed{Run: newRun(withSkill("kube")), Instance: newInstance(), Now: now, Config: identityConfig(),
				SkillPacks: map[string]*v1alpha1.SkillPack{"kube": tc.pack}}
			if tc.refused != "" {
				in.Refused = Refusal{Kind: RefusedGrant, Reason: tc.refused}
			}
			d := Next(in)
			assert.Equal(t, v1alpha1.PhaseFailed, d.Status.Phase)
			assert.Equal(t, tc.reason, failedReason(&d.Status), d.Status.Error)
			assert.Empty(t, kinds(d.Actions, Create))
		})
	}
}

// The grants are deleted as soon as the run is finished, whatever the
// outcome and even with cleanup: keep; bindings first. ServiceAccount and
// Roles are left to the garbage collector.
func TestGrantsRevokedWhenTheRunEnds(t *testing.T) {
	grants := []Grant{
		{KindClusterRole, &metav1.ObjectMeta{Name: "cr", UID: "cr-uid"}},
		{KindClusterRoleBinding, &metav1.ObjectMeta{Name: "crb", UID: "crb-uid"}},
		{KindRoleBinding, &metav1.ObjectMeta{Name: "rb", Namespace: "ns", UID: "rb-uid"}},
		{KindRoleBinding, &metav1.ObjectMeta{Name: "gone", Namespace: "ns", UID: "gone-uid", DeletionTimestamp: new(metav1.NewTime(t0))}},
	}
	want := []Kind{KindRoleBinding, KindClusterRoleBinding, KindClusterRole}
	cases := map[string]Observed{
		"succeeded, kept": {Run: newRun(running(), withCleanup(v1alpha1.CleanupKeep)),
			Pod: newPod(agentExited(0, "")), Objects: Objects{}},
		"failed": {Run: newRun(running()), Pod: newPod(agentExited(3, ""))},
		"finished earlier": {Run: newRun(running(), withPhase(v1alpha1.PhaseFailed),
			withCondition(v1alpha1.ConditionFailed, metav1.ConditionTrue, v1alpha1.ReasonTimeout))},
	}
	for name, obs := range cases {
		t.Run(name, func(t *testing.T) {
			if obs.Objects == nil {
				obs.Objects = Objects{}
			}
			obs.Objects[KindJob] = jobFor(obs.Run)
			obs.Instance, obs.Now, obs.Config, obs.Grants = newInstance(), now, identityConfig(), grants
			d := Next(obs)
			require.True(t, d.Status.Phase.IsTerminal())
			var got []Kind
			for _, a := range d.Actions {
				if a.Verb == Delete && a.Kind != KindJob {
					got = append(got, a.Kind)
					assert.NotEmpty(t, a.Object.GetUID(), "deleted with a UID precondition")
				}
			}
			assert.Equal(t, want, got)
		})
	}
	// A live run keeps them.
	d := Next(Observed{Run: newRun(running()), Pod: newPod(agentRunning(t0)), Objects: Objects{KindJob: jobFor(newRun())},
		Instance: newInstance(), Now: now, Config: identityConfig(), Grants: grants})
	assert.Empty(t, kinds(d.Actions, Delete))
}

func TestFailureReasons(t *testing.T) {
	assert.Equal(t, v1alpha1.ReasonHostAccessDenied, failureReason(&workload.HostAccessDeniedError{SkillPacks: []string{"llmfit"}}))
	assert.Equal(t, v1alpha1.ReasonGrantRefused, failureReason(&workload.ClusterRBACRefusedError{SkillPack: "x"}))
	assert.Equal(t, v1alpha1.ReasonInvalidSpec, failureReason(assert.AnError))
}

// A server running web-endpoint's web proxy gets its API-key Secret before
// its Deployment (created only if missing: the create's AlreadyExists
// keeps an earlier key), and its own identity for the proxy's rules; with
// auth_secret_ref naming the user's Secret, none is generated.
func TestServerAPIKeyAndIdentity(t *testing.T) {
	web := &v1alpha1.SkillPack{ObjectMeta: metav1.ObjectMeta{Name: "web-endpoint", Namespace: "ns"},
		Spec: v1alpha1.SkillPackSpec{Skills: []v1alpha1.Skill{{Name: "web", Content: "# web"}}, Sidecar: &v1alpha1.SkillSidecar{
			Image: "web-proxy:test", RequiresServer: true,
			RBAC: []v1alpha1.PolicyRule{{APIGroups: []string{"sympozium.ai"}, Resources: []string{"agentruns"}, Verbs: []string{"create"}}}}}}
	obs := Observed{Run: newRun(withMode(v1alpha1.ModeServer), withSkill("web-endpoint")), Instance: newInstance(), Now: now,
		Config: identityConfig(), SkillPacks: map[string]*v1alpha1.SkillPack{"web-endpoint": web}, NewAPIKey: "sk-0123"}
	d := Next(obs)
	require.Equal(t, []Kind{KindServiceAccount, KindRole, KindRoleBinding, KindSecret, KindDeployment, KindService}, kinds(d.Actions, Create))
	for _, a := range d.Actions {
		if a.Kind == KindSecret {
			assert.Equal(t, "inst-web-proxy-key", a.Object.GetName())
			assert.Equal(t, "sk-0123", a.Object.(*corev1.Secret).StringData["api-key"])
		}
	}

	obs.Run = newRun(withMode(v1alpha1.ModeServer), func(r *v1alpha1.AgentRun) {
		r.Spec.Skills = []v1alpha1.SkillRef{{SkillPackRef: "web-endpoint", Params: map[string]string{"auth_secret_ref": "mine"}}}
	})
	assert.NotContains(t, kinds(Next(obs).Actions, Create), KindSecret)
}

// A pack from the skills namespace has its ConfigMap mirrored before the
// workload; an up-to-date mirror the run already owns is left alone.
func TestSkillMirrors(t *testing.T) {
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube", Namespace: "skills"}, Data: map[string]string{"kube.md": "# kube"}}
	run := newRun(withSkill("kube"))
	obs := Observed{Run: run, Instance: newInstance(), Now: now, Config: identityConfig(),
		SkillPacks: map[string]*v1alpha1.SkillPack{"kube": kubectlPack("skills", false)}, SkillMirrors: []SkillMirror{{Source: src}}}
	d := Next(obs)
	assert.Equal(t, []Kind{KindConfigMap, KindServiceAccount, KindRole, KindRoleBinding, KindJob}, kinds(d.Actions, Create))
	mirror := workload.MirrorConfigMap(src, run)
	obs.SkillMirrors[0].Existing = mirror
	assert.NotContains(t, kinds(Next(obs).Actions, Create), KindConfigMap)
	assert.Empty(t, kinds(Next(obs).Actions, Update))
}

// A serving run whose packs changed keeps only the grants of the packs it
// mounts now.
func TestServerKeepsOnlyTheGrantsOfItsPacks(t *testing.T) {
	run := newRun(withMode(v1alpha1.ModeServer), withSkill("kube"))
	in := workload.Inputs{Run: run, Instance: newInstance(), SkillPacks: map[string]*v1alpha1.SkillPack{"kube": kubectlPack("skills", false)}}
	current := workload.RunGrants(in).RoleBindings[0]
	current.UID = "current-uid"
	grants := []Grant{
		{KindRoleBinding, current},
		{KindRoleBinding, &metav1.ObjectMeta{Name: "sympozium-run-run.old-0000", Namespace: "ns", UID: "old-uid"}},
	}
	var removed []string
	m := &machine{in: Observed{Run: run, Instance: in.Instance, SkillPacks: in.SkillPacks, Grants: grants, Config: identityConfig(), Now: now}}
	m.revokeStale()
	for _, a := range m.deletes {
		removed = append(removed, a.Object.GetName())
	}
	assert.Equal(t, []string{"sympozium-run-run.old-0000"}, removed)
}

// The cluster-scoped grants the garbage collector cannot take: an earlier
// run's of the same name are revoked by every decision, live or finished;
// a run being deleted without the server finalizer revokes its own (not
// its RoleBindings, which go with it) and changes nothing else, not even
// the observed generation.
func TestClusterGrantsTheCollectorCannotTake(t *testing.T) {
	orphans := []Grant{
		{KindClusterRoleBinding, &metav1.ObjectMeta{Name: "old-crb", UID: "old-crb-uid"}},
		{KindClusterRole, &metav1.ObjectMeta{Name: "old-cr", UID: "old-cr-uid"}},
	}
	own := []Grant{
		{KindClusterRole, &metav1.ObjectMeta{Name: "cr", UID: "cr-uid"}},
		{KindRoleBinding, &metav1.ObjectMeta{Name: "rb", Namespace: "ns", UID: "rb-uid"}},
	}
	deletes := func(d Decision) []string {
		var out []string
		for _, a := range d.Actions {
			if a.Verb == Delete {
				out = append(out, string(a.Kind)+"/"+a.Object.GetName())
			}
		}
		return out
	}
	t.Run("live run", func(t *testing.T) {
		run := newRun(running())
		d := Next(Observed{Run: run, Instance: newInstance(), Pod: newPod(agentRunning(t0)), Objects: Objects{KindJob: jobFor(run)},
			Now: now, Config: identityConfig(), Grants: own, OrphanGrants: orphans})
		assert.Equal(t, v1alpha1.PhaseRunning, d.Status.Phase)
		assert.Equal(t, []string{"ClusterRoleBinding/old-crb", "ClusterRole/old-cr"}, deletes(d))
	})
	t.Run("being deleted without the finalizer", func(t *testing.T) {
		run := newRun(running(), withDeleted())
		run.Generation = 3
		d := Next(Observed{Run: run, Instance: newInstance(), Pod: newPod(agentRunning(t0)), Objects: Objects{KindJob: jobFor(run)},
			Now: now, Config: identityConfig(), Grants: own, OrphanGrants: orphans})
		assert.Equal(t, run.Status, d.Status)
		assert.Equal(t, []string{"ClusterRole/cr", "ClusterRoleBinding/old-crb", "ClusterRole/old-cr"}, deletes(d))
		assert.Len(t, d.Actions, 3)
		assert.Empty(t, d.Events)
		assert.False(t, d.RemoveFinalizer || d.AddFinalizer || d.KeepLog != nil || d.RequeueAfter != 0)
	})
	t.Run("left by sympozium's controller", func(t *testing.T) {
		run := newRun(withDeleted())
		run.Finalizers = []string{v1alpha1.FinalizerServer, LegacyFinalizer}
		d := Next(Observed{Run: run, Instance: newInstance(), Now: now, Config: identityConfig(), Grants: own, OrphanGrants: orphans})
		assert.Equal(t, Decision{Status: run.Status, RemoveLegacyFinalizer: true}, d, "the finalizer goes first, alone")
	})
}
