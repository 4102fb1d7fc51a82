package instancephase

import (
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

var now = time.Date(2026, 12, 5, 16, 0, 0, 0, time.UTC)

func instance(opts ...func(*v1alpha1.SympoziumInstance)) *v1alpha1.SympoziumInstance {
	i := &v1alpha1.SympoziumInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "inst", Namespace: "ns", UID: "uid-inst"},
		Spec: v1alpha1.SympoziumInstanceSpec{
			Agents:   v1alpha1.AgentsSpec{Default: v1alpha1.AgentConfig{Model: "gpt-4o"}},
			AuthRefs: []v1alpha1.AuthRef{{Secret: "inst-openai-key"}},
		},
	}
	for _, o := range opts {
		o(i)
	}
	return i
}

func withSkills(s ...v1alpha1.SkillRef) func(*v1alpha1.SympoziumInstance) {
	return func(i *v1alpha1.SympoziumInstance) { i.Spec.Skills = s }
}

func withChannels(c ...v1alpha1.ChannelSpec) func(*v1alpha1.SympoziumInstance) {
	return func(i *v1alpha1.SympoziumInstance) { i.Spec.Channels = c }
}

// observed is what the caches hold for inst: none of its objects yet, and
// the channel Secrets the tests name (tg-token, tg-token-2).
func observed(inst *v1alpha1.SympoziumInstance) Observed {
	return Observed{Instance: inst, Now: now, Secrets: map[string]bool{"tg-token": true, "tg-token-2": true},
		ConfigMaps: map[string]*corev1.ConfigMap{}, Deployments: map[string]*appsv1.Deployment{},
		Services: map[string]*corev1.Service{}, PVCs: map[string]*corev1.PersistentVolumeClaim{}}
}

// settle applies the decision's actions to the observed objects, as the
// API server would, with the object kinds' own stores.
func settle(t *testing.T, in Observed, d Decision) Observed {
	t.Helper()
	out := in
	for _, a := range d.Actions {
		switch o := a.Object.(type) {
		case *corev1.ConfigMap:
			out.ConfigMaps = put(out.ConfigMaps, o, a.Verb)
		case *appsv1.Deployment:
			out.Deployments = put(out.Deployments, o, a.Verb)
		case *corev1.Service:
			out.Services = put(out.Services, o, a.Verb)
		case *corev1.PersistentVolumeClaim:
			out.PVCs = put(out.PVCs, o, a.Verb)
		case *v1alpha1.AgentRun:
			if a.Verb == Delete {
				out.WebEndpoint = nil
			} else {
				out.WebEndpoint = o
			}
		default:
			t.Fatalf("unexpected object %T", o)
		}
	}
	return out
}

func put[T metav1.Object](m map[string]T, o T, v Verb) map[string]T {
	out := map[string]T{}
	maps.Copy(out, m)
	if v == Delete {
		delete(out, o.GetName())
	} else {
		out[o.GetName()] = o
	}
	return out
}

// next decides and checks that the decision, once applied, is final: the
// next decision on its result acts no more.
func next(t *testing.T, in Observed) Decision {
	t.Helper()
	d := Next(in)
	again := Next(settle(t, in, d))
	assert.Empty(t, again.Actions, "a second pass after applying the actions does nothing")
	return d
}

type key struct {
	verb Verb
	kind Kind
	name string
}

func keys(d Decision) []key {
	var ks []key
	for _, a := range d.Actions {
		ks = append(ks, key{a.Verb, a.Kind, a.Object.GetName()})
	}
	return ks
}

func find[T metav1.Object](t *testing.T, d Decision, v Verb, name string) T {
	t.Helper()
	for _, a := range d.Actions {
		if o, ok := a.Object.(T); ok && a.Verb == v && a.Object.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s of %s in %v", v, name, keys(d))
	var zero T
	return zero
}

func assertOwned(t *testing.T, o metav1.Object) {
	t.Helper()
	ref := metav1.GetControllerOf(o)
	require.NotNil(t, ref, "%s has a controller reference", o.GetName())
	assert.Equal(t, metav1.OwnerReference{APIVersion: "sympozium.ai/v1alpha1", Kind: "SympoziumInstance", Name: "inst",
		UID: "uid-inst", Controller: new(true), BlockOwnerDeletion: new(true)}, *ref)
}

func TestNothingToRun(t *testing.T) {
	d := next(t, observed(instance()))
	assert.Empty(t, d.Actions)
	assert.Empty(t, d.Channels)
}

// TestWebEndpoint: the server-mode run the original builds
// (sympoziuminstance_controller.go:725-756), created when the instance lists
// the web-endpoint SkillPack, updated when what it is built from changes,
// deleted when it is unlisted (the original's bugs fixed).
func TestWebEndpoint(t *testing.T) {
	web := v1alpha1.SkillRef{SkillPackRef: "web-endpoint", Params: map[string]string{"RATE_LIMIT_RPM": "30"}}
	inst := instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "k8s"}, web), func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Agents.Default.BaseURL = "http://ollama:11434"
		i.Spec.Agents.Default.NodeSelector = map[string]string{"gpu": "yes"}
	})
	d := next(t, observed(inst))
	require.Equal(t, []key{{Create, KindAgentRun, "inst-web-endpoint"}}, keys(d))
	run := find[*v1alpha1.AgentRun](t, d, Create, "inst-web-endpoint")
	assert.Equal(t, "ns", run.Namespace)
	assert.Equal(t, map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/component": "web-endpoint"}, run.Labels)
	assertOwned(t, run)
	assert.Equal(t, v1alpha1.AgentRunSpec{
		InstanceRef: "inst", AgentID: "web-endpoint", SessionKey: "web-endpoint",
		Task: "Serve HTTP requests for this instance", Mode: v1alpha1.ModeServer,
		Model: v1alpha1.ModelSpec{Provider: "openai", Model: "gpt-4o", AuthSecretRef: "inst-openai-key",
			BaseURL: "http://ollama:11434", NodeSelector: map[string]string{"gpu": "yes"}},
		Skills: []v1alpha1.SkillRef{web},
	}, run.Spec, "provider from the secret's name before the baseURL, as resolveProvider")

	live := run.DeepCopy()
	live.UID = "uid-run"
	in := observed(inst)
	in.WebEndpoint = live
	assert.Empty(t, Next(in).Actions, "as built: nothing to do")

	t.Run("the skill's params and the model change: updated", func(t *testing.T) {
		i := inst.DeepCopy()
		i.Spec.Skills[1].Params = map[string]string{"RATE_LIMIT_RPM": "60"}
		i.Spec.Agents.Default.Model = "gpt-5"
		in := observed(i)
		in.WebEndpoint = live
		d := next(t, in)
		up := find[*v1alpha1.AgentRun](t, d, Update, "inst-web-endpoint")
		assert.Equal(t, "gpt-5", up.Spec.Model.Model)
		assert.Equal(t, "60", up.Spec.Skills[0].Params["RATE_LIMIT_RPM"])
		assert.EqualValues(t, "uid-run", up.UID)
	})
	t.Run("unlisted: deleted", func(t *testing.T) {
		in := observed(instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "k8s"})))
		in.WebEndpoint = live
		assert.Equal(t, []key{{Delete, KindAgentRun, "inst-web-endpoint"}}, keys(next(t, in)))
	})
	t.Run("unlisted, a run of that name the instance does not own: left alone", func(t *testing.T) {
		in := observed(instance())
		mine := live.DeepCopy()
		mine.OwnerReferences, mine.Labels = nil, nil
		in.WebEndpoint = mine
		assert.Empty(t, Next(in).Actions)
	})
	t.Run("a finished one keeps the name: not replaced", func(t *testing.T) {
		in := observed(inst)
		in.WebEndpointFinished = true
		assert.Empty(t, Next(in).Actions)
	})
	t.Run("unlisted, a finished one of the instance: deleted", func(t *testing.T) {
		in := observed(instance())
		in.WebEndpointFinished, in.WebEndpointFinishedUID = true, "uid-run"
		d := Next(in)
		assert.Equal(t, []key{{Delete, KindAgentRun, "inst-web-endpoint"}}, keys(d))
		assert.EqualValues(t, "uid-run", d.Actions[0].Object.GetUID())
	})
	t.Run("skillpack-web-endpoint also turns it on", func(t *testing.T) {
		d := next(t, observed(instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "skillpack-web-endpoint"}))))
		assert.Equal(t, []key{{Create, KindAgentRun, "inst-web-endpoint"}}, keys(d))
	})
}

func TestResolveProvider(t *testing.T) {
	cases := map[string]struct {
		refs []v1alpha1.AuthRef
		base string
		want string
	}{
		"explicit provider first":   {refs: []v1alpha1.AuthRef{{Secret: "x-openai"}, {Provider: "anthropic", Secret: "k"}}, want: "anthropic"},
		"from the secret's name":    {refs: []v1alpha1.AuthRef{{Secret: "my-azure-openai-key"}}, want: "azure-openai"},
		"ollama by port":            {base: "http://10.0.0.1:11434/v1", want: "ollama"},
		"lm-studio":                 {base: "http://lm-studio.local", want: "lm-studio"},
		"ollama by name":            {base: "http://ollama.local", want: "ollama"},
		"lm-studio by port":         {base: "http://x:1234/v1", want: "lm-studio"},
		"any other baseURL: custom": {base: "http://vllm:8000", want: "custom"},
		"nothing: openai":           {want: "openai"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			i := instance()
			i.Spec.AuthRefs, i.Spec.Agents.Default.BaseURL = tc.refs, tc.base
			assert.Equal(t, tc.want, ResolveProvider(i))
		})
	}
	i := instance()
	i.Spec.AuthRefs = []v1alpha1.AuthRef{{Secret: "  "}, {Secret: "b"}}
	assert.Equal(t, "b", ResolveAuthSecret(i))
}

// TestMemory: the memory ConfigMap for memory.enabled; the memory server
// (PVC, Deployment, Service) for the memory skill, as the original builds
// them; removed when turned off, the data kept.
func TestMemory(t *testing.T) {
	enabled := func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Memory = &v1alpha1.MemorySpec{Enabled: true, MaxSizeKB: 256}
	}
	t.Run("memory.enabled: the ConfigMap", func(t *testing.T) {
		d := next(t, observed(instance(enabled)))
		require.Equal(t, []key{{Create, KindConfigMap, "inst-memory"}}, keys(d))
		cm := find[*corev1.ConfigMap](t, d, Create, "inst-memory")
		assert.Equal(t, map[string]string{"MEMORY.md": "# Agent Memory\n\nNo memories recorded yet.\n"}, cm.Data)
		assert.Equal(t, map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/component": "memory"}, cm.Labels)
		assertOwned(t, cm)
	})
	t.Run("memory disabled: the instance's ConfigMap is deleted", func(t *testing.T) {
		in := settle(t, observed(instance(enabled)), Next(observed(instance(enabled))))
		in.Instance = instance(func(i *v1alpha1.SympoziumInstance) { i.Spec.Memory = &v1alpha1.MemorySpec{Enabled: false} })
		assert.Equal(t, []key{{Delete, KindConfigMap, "inst-memory"}}, keys(next(t, in)))
	})
	t.Run("a PersonaPack's memory ConfigMap is left alone, its memories kept", func(t *testing.T) {
		in := observed(instance(enabled))
		in.ConfigMaps["inst-memory"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inst-memory", Namespace: "ns",
			Labels: map[string]string{"sympozium.ai/persona-pack": "p", "sympozium.ai/memory": "true"}}, Data: map[string]string{"MEMORY.md": "# Memory\n\n- seed"}}
		assert.Empty(t, Next(in).Actions)
		in.Instance = instance()
		assert.Empty(t, Next(in).Actions, "not the instance's: not deleted either")
	})
	t.Run("the memory skill: PVC, Deployment, Service", func(t *testing.T) {
		in := observed(instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "memory"})))
		in.Config = Config{ImageRegistry: "registry.example/sz", ImageTag: "v0.5.2"}
		d := next(t, in)
		require.Equal(t, []key{{Create, KindPVC, "inst-memory-db"}, {Create, KindDeployment, "inst-memory"}, {Create, KindService, "inst-memory"}}, keys(d))
		pvc := find[*corev1.PersistentVolumeClaim](t, d, Create, "inst-memory-db")
		assert.Equal(t, map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/component": "memory-db"}, pvc.Labels)
		assert.Equal(t, "1Gi", pvc.Spec.Resources.Requests.Storage().String())
		assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, pvc.Spec.AccessModes)
		assert.Nil(t, pvc.Spec.StorageClassName)
		dep := find[*appsv1.Deployment](t, d, Create, "inst-memory")
		assertOwned(t, dep)
		labels := map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/component": "memory"}
		assert.Equal(t, labels, dep.Spec.Selector.MatchLabels)
		assert.Equal(t, labels, dep.Spec.Template.Labels)
		assert.Equal(t, appsv1.RecreateDeploymentStrategyType, dep.Spec.Strategy.Type)
		c := dep.Spec.Template.Spec.Containers[0]
		assert.Equal(t, "memory-server", c.Name)
		assert.Equal(t, "registry.example/sz/skill-memory:v0.5.2", c.Image)
		assert.Equal(t, []corev1.EnvVar{{Name: "MEMORY_DB_PATH", Value: "/data/memory.db"}, {Name: "MEMORY_PORT", Value: "8080"}}, c.Env)
		assert.Equal(t, "/health", c.ReadinessProbe.HTTPGet.Path)
		assert.EqualValues(t, 30, c.LivenessProbe.PeriodSeconds)
		assert.Equal(t, "200m", c.Resources.Limits.Cpu().String())
		assert.Equal(t, "inst-memory-db", dep.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)
		svc := find[*corev1.Service](t, d, Create, "inst-memory")
		assert.Equal(t, labels, svc.Spec.Selector)
		assert.EqualValues(t, 8080, svc.Spec.Ports[0].Port)
		assert.Equal(t, "http", svc.Spec.Ports[0].Name)

		// Defaults: the original's registry and tag.
		d = Next(observed(instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "memory"}))))
		assert.Equal(t, "ghcr.io/sympozium-ai/sympozium/skill-memory:latest",
			find[*appsv1.Deployment](t, d, Create, "inst-memory").Spec.Template.Spec.Containers[0].Image)

		// A missing Service is recreated, whatever the Deployment (a bug of the original).
		running := settle(t, in, Next(in))
		delete(running.Services, "inst-memory")
		assert.Equal(t, []key{{Create, KindService, "inst-memory"}}, keys(next(t, running)))

		// A new image tag reaches the Deployment.
		running = settle(t, in, Next(in))
		running.Config.ImageTag = "v0.5.3"
		up := find[*appsv1.Deployment](t, next(t, running), Update, "inst-memory")
		assert.Equal(t, "registry.example/sz/skill-memory:v0.5.3", up.Spec.Template.Spec.Containers[0].Image)

		// Unlisted: the server goes, the database's PVC stays.
		running = settle(t, in, Next(in))
		running.Instance = instance()
		assert.Equal(t, []key{{Delete, KindDeployment, "inst-memory"}, {Delete, KindService, "inst-memory"}}, keys(next(t, running)))
	})
	t.Run("memory-tools is not the memory skill", func(t *testing.T) {
		assert.Empty(t, Next(observed(instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "memory-tools"})))).Actions)
	})
}

// TestChannels: one Deployment per channel as the original builds it, a PVC
// for WhatsApp, updated when the channel's Secret changes and deleted when
// the channel is removed; the channel's health in status.
func TestChannels(t *testing.T) {
	tg := v1alpha1.ChannelSpec{Type: "telegram", ConfigRef: v1alpha1.ChannelConfigRef{Secret: "tg-token"}}
	wa := v1alpha1.ChannelSpec{Type: "whatsapp"}
	inst := instance(withChannels(tg, wa), func(i *v1alpha1.SympoziumInstance) {
		i.Spec.Observability = &v1alpha1.ObservabilitySpec{Enabled: true, OTLPEndpoint: "otel:4317"}
	})
	in := observed(inst)
	in.Config = Config{EventBusURL: "nats://nats.custom:4222"}
	d := next(t, in)
	require.Equal(t, []key{{Create, KindDeployment, "inst-channel-telegram"}, {Create, KindPVC, "inst-channel-whatsapp-data"},
		{Create, KindDeployment, "inst-channel-whatsapp"}}, keys(d))
	dep := find[*appsv1.Deployment](t, d, Create, "inst-channel-telegram")
	assertOwned(t, dep)
	labels := map[string]string{"sympozium.ai/component": "channel", "sympozium.ai/channel": "telegram", "sympozium.ai/instance": "inst"}
	assert.Equal(t, labels, dep.Labels)
	assert.Equal(t, labels, dep.Spec.Selector.MatchLabels)
	assert.Equal(t, labels, dep.Spec.Template.Labels)
	c := dep.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "channel", c.Name)
	assert.Equal(t, "ghcr.io/sympozium-ai/sympozium/channel-telegram:latest", c.Image)
	assert.Equal(t, []corev1.EnvVar{
		{Name: "INSTANCE_NAME", Value: "inst"}, {Name: "EVENT_BUS_URL", Value: "nats://nats.custom:4222"},
		{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "otel:4317"}, {Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: "grpc"},
		{Name: "OTEL_SERVICE_NAME", Value: "sympozium-channel-telegram"},
	}, c.Env)
	assert.Equal(t, "tg-token", c.EnvFrom[0].SecretRef.Name)
	assert.Empty(t, c.Ports)
	assert.Empty(t, dep.Spec.Strategy.Type)
	wdep := find[*appsv1.Deployment](t, d, Create, "inst-channel-whatsapp")
	assert.Equal(t, appsv1.RecreateDeploymentStrategyType, wdep.Spec.Strategy.Type)
	assert.Equal(t, "inst-channel-whatsapp-data", wdep.Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName)
	assert.Empty(t, wdep.Spec.Template.Spec.Containers[0].EnvFrom)
	pvc := find[*corev1.PersistentVolumeClaim](t, d, Create, "inst-channel-whatsapp-data")
	assert.Equal(t, "256Mi", pvc.Spec.Resources.Requests.Storage().String())
	assert.Equal(t, []v1alpha1.ChannelStatus{
		{Type: "telegram", Status: "Pending", Message: "creating Deployment inst-channel-telegram", LastHealthCheck: &metav1.Time{Time: now}},
		{Type: "whatsapp", Status: "Pending", Message: "creating Deployment inst-channel-whatsapp", LastHealthCheck: &metav1.Time{Time: now}},
	}, d.Channels)

	running := settle(t, in, d)
	running.Deployments["inst-channel-telegram"].Status.ReadyReplicas = 1
	running.Now = now.Add(time.Minute)
	running.Instance = inst.DeepCopy()
	running.Instance.Status.Channels = d.Channels
	d = Next(running)
	assert.Empty(t, d.Actions)
	assert.Equal(t, v1alpha1.ChannelStatus{Type: "telegram", Status: "Connected", LastHealthCheck: &metav1.Time{Time: now.Add(time.Minute)}}, d.Channels[0])
	assert.Equal(t, v1alpha1.ChannelStatus{Type: "whatsapp", Status: "Disconnected", Message: "Deployment inst-channel-whatsapp has no ready replica",
		LastHealthCheck: &metav1.Time{Time: now.Add(time.Minute)}}, d.Channels[1])
	running.Instance.Status.Channels = d.Channels
	running.Now = now.Add(2 * time.Minute)
	assert.Equal(t, d.Channels, Next(running).Channels, "unchanged: lastHealthCheck is when it last changed")

	t.Run("a new Secret name reaches the Deployment", func(t *testing.T) {
		r := running
		r.Instance = instance(withChannels(v1alpha1.ChannelSpec{Type: "telegram", ConfigRef: v1alpha1.ChannelConfigRef{Secret: "tg-token-2"}}, wa),
			func(i *v1alpha1.SympoziumInstance) { i.Spec.Observability = inst.Spec.Observability })
		up := find[*appsv1.Deployment](t, next(t, r), Update, "inst-channel-telegram")
		assert.Equal(t, "tg-token-2", up.Spec.Template.Spec.Containers[0].EnvFrom[0].SecretRef.Name)
		assert.Equal(t, labels, up.Spec.Selector.MatchLabels)
	})
	t.Run("a removed channel's Deployment is deleted, WhatsApp's data kept", func(t *testing.T) {
		r := running
		r.Instance = instance(withChannels(tg), func(i *v1alpha1.SympoziumInstance) { i.Spec.Observability = inst.Spec.Observability })
		assert.Equal(t, []key{{Delete, KindDeployment, "inst-channel-whatsapp"}}, keys(next(t, r)))
	})
	t.Run("a type without an image: Error, no Deployment", func(t *testing.T) {
		d := next(t, observed(instance(withChannels(v1alpha1.ChannelSpec{Type: "matrix"}))))
		assert.Empty(t, d.Actions)
		assert.Equal(t, "Error", d.Channels[0].Status)
		assert.Equal(t, `no channel image for type "matrix": sympozium ships discord, slack, telegram, whatsapp`, d.Channels[0].Message)
	})
	t.Run("a Deployment of that name controlled by something else: Error, left alone", func(t *testing.T) {
		in := observed(instance(withChannels(tg)))
		in.Deployments["inst-channel-telegram"] = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "inst-channel-telegram", Namespace: "ns",
			Labels:          map[string]string{"sympozium.ai/instance": "inst", "sympozium.ai/component": "channel"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "PersonaPack", Name: "p", UID: "other", Controller: new(true)}}}}
		d := Next(in)
		assert.Empty(t, d.Actions)
		assert.Equal(t, "Error", d.Channels[0].Status)
	})
	t.Run("observability http/protobuf is passed on (grpc was forced)", func(t *testing.T) {
		i := instance(withChannels(tg), func(i *v1alpha1.SympoziumInstance) {
			i.Spec.Observability = &v1alpha1.ObservabilitySpec{Enabled: true, OTLPProtocol: "http/protobuf"}
		})
		in := observed(i)
		in.Config.OTLPEndpoint = "collector:4318"
		env := find[*appsv1.Deployment](t, Next(in), Create, "inst-channel-telegram").Spec.Template.Spec.Containers[0].Env
		assert.Contains(t, env, corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: "http/protobuf"})
		assert.Contains(t, env, corev1.EnvVar{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "collector:4318"})
		assert.Contains(t, env, corev1.EnvVar{Name: "EVENT_BUS_URL", Value: "nats://nats.sympozium-system.svc:4222"})
	})
}

// TestAdoption: objects the original created (same names, its labels, its
// controller reference to the instance, no hash) are taken over: updated
// once to what this package builds, never created again; an orphan labelled
// for the instance gets the instance's controller reference.
func TestAdoption(t *testing.T) {
	inst := instance(withSkills(v1alpha1.SkillRef{SkillPackRef: "memory"}, v1alpha1.SkillRef{SkillPackRef: "web-endpoint"}),
		withChannels(v1alpha1.ChannelSpec{Type: "whatsapp"}),
		func(i *v1alpha1.SympoziumInstance) { i.Spec.Memory = &v1alpha1.MemorySpec{Enabled: true} })
	// The original's objects: what this package builds, without the hash.
	fresh := Next(observed(inst))
	in := observed(inst)
	for _, a := range fresh.Actions {
		o := a.Object
		ann := o.GetAnnotations()
		delete(ann, AnnotationConfigHash)
		o.SetAnnotations(ann)
		o.SetUID(types.UID("uid-" + o.GetName()))
		o.SetResourceVersion("7")
	}
	in = settle(t, in, fresh)
	in.ConfigMaps["inst-memory"].Data["MEMORY.md"] = "- the user prefers short answers"
	// An orphan: the original's PVC with its owner reference lost.
	in.PVCs["inst-memory-db"].OwnerReferences = nil

	d := next(t, in)
	for _, a := range d.Actions {
		assert.Equal(t, Update, a.Verb, "%s %s: adopted, not created", a.Kind, a.Object.GetName())
		assert.Equal(t, "7", a.Object.GetResourceVersion())
		assertOwned(t, a.Object)
		assert.NotEmpty(t, a.Object.GetAnnotations()[AnnotationConfigHash])
	}
	assert.ElementsMatch(t, []key{{Update, KindConfigMap, "inst-memory"}, {Update, KindPVC, "inst-memory-db"},
		{Update, KindDeployment, "inst-memory"}, {Update, KindService, "inst-memory"}, {Update, KindPVC, "inst-channel-whatsapp-data"},
		{Update, KindDeployment, "inst-channel-whatsapp"}}, keys(d), "the web-endpoint run as built needs no update")
	assert.Equal(t, "- the user prefers short answers", find[*corev1.ConfigMap](t, d, Update, "inst-memory").Data["MEMORY.md"], "memories kept")
}

// TestChannelSecretMissing: a channel whose Secret is missing gets status
// Error with the original's message (sympoziuminstance_controller.go
// :147-160 at 25c0bb2) and no Deployment (whose pod could only wait); the
// instance's ChannelsReady condition says so, with one Warning Event when
// the channel goes into error. Once the Secret exists the Deployment is
// created; a Deployment that exists when the Secret goes is kept.
func TestChannelSecretMissing(t *testing.T) {
	tg := v1alpha1.ChannelSpec{Type: "telegram", ConfigRef: v1alpha1.ChannelConfigRef{Secret: "tg-token"}}
	wa := v1alpha1.ChannelSpec{Type: "whatsapp"}
	in := observed(instance(withChannels(tg, wa)))
	in.Secrets = nil
	d := next(t, in)
	assert.Equal(t, []key{{Create, KindPVC, "inst-channel-whatsapp-data"}, {Create, KindDeployment, "inst-channel-whatsapp"}}, keys(d),
		"no Deployment for the channel without its Secret")
	assert.Equal(t, v1alpha1.ChannelStatus{Type: "telegram", Status: "Error", Message: `secret "tg-token" not found`,
		LastHealthCheck: &metav1.Time{Time: now}}, d.Channels[0])
	assert.Equal(t, &metav1.Condition{Type: "ChannelsReady", Status: metav1.ConditionFalse, Reason: "SecretNotFound",
		Message: `telegram: secret "tg-token" not found`, LastTransitionTime: metav1.NewTime(now)}, d.ChannelsReady)
	assert.Equal(t, []Event{{Type: corev1.EventTypeWarning, Reason: "SecretNotFound", Message: `channel telegram: secret "tg-token" not found`}}, d.Events)

	// Recorded: the same error makes no second Event.
	again := settle(t, in, d)
	again.Instance = in.Instance.DeepCopy()
	again.Instance.Status.Channels = d.Channels
	again.Now = now.Add(time.Minute)
	d2 := Next(again)
	assert.Empty(t, d2.Events)
	assert.Equal(t, d.Channels[0], d2.Channels[0], "unchanged, lastHealthCheck included")

	// The Secret appears: the Deployment is created, the condition waits
	// for it.
	again.Secrets = map[string]bool{"tg-token": true}
	d3 := next(t, again)
	assert.Equal(t, []key{{Create, KindDeployment, "inst-channel-telegram"}}, keys(d3))
	assert.Equal(t, "Pending", d3.Channels[0].Status)
	assert.Equal(t, metav1.ConditionFalse, d3.ChannelsReady.Status)
	assert.Equal(t, "NotConnected", d3.ChannelsReady.Reason)
	assert.Empty(t, d3.Events)

	// Both connected: True.
	up := settle(t, again, d3)
	for _, n := range []string{"inst-channel-telegram", "inst-channel-whatsapp"} {
		up.Deployments[n] = up.Deployments[n].DeepCopy()
		up.Deployments[n].Status.ReadyReplicas = 1
	}
	d4 := Next(up)
	assert.Empty(t, d4.Actions)
	assert.Equal(t, &metav1.Condition{Type: "ChannelsReady", Status: metav1.ConditionTrue, Reason: "Connected", Message: "every channel is connected",
		LastTransitionTime: metav1.NewTime(now.Add(time.Minute))}, d4.ChannelsReady)

	// The Secret goes: the running Deployment is kept, not deleted nor
	// updated; the status says why its next pod would not start.
	up.Secrets = nil
	d5 := Next(up)
	assert.Empty(t, d5.Actions)
	assert.Equal(t, "Error", d5.Channels[0].Status)
	assert.Equal(t, "SecretNotFound", d5.ChannelsReady.Reason)

	// No channel: no condition.
	assert.Nil(t, Next(observed(instance())).ChannelsReady)
}
