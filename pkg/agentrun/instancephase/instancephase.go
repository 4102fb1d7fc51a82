// Package instancephase is the SympoziumInstance's pure decision function
// for the objects sympozium's own instance controller ran for an instance
// (internal/controller/sympoziuminstance_controller.go at 25c0bb2; see
// ../shared/notes/sympozium-instance-and-schedules.md §1): the web
// endpoint's server-mode AgentRun, the memory ConfigMap, the memory
// server's PVC, Deployment and Service, and one Deployment per channel
// (with a PVC for WhatsApp). Given the instance and the objects it owns as
// the caches hold them, Next returns the actions (one function per object
// kind) and the channels' status. No I/O, no clock (Now is an input), no
// client-go.
//
// Same names, labels, images, env and owner references as the original,
// with its bugs fixed:
//   - a channel removed from the spec has its Deployment deleted; channel
//     Deployments, the memory server and the web-endpoint run are updated
//     when what they are built from changes (secret, observability, image
//     tag, model, skill params);
//   - the web-endpoint run is deleted when the instance no longer lists the
//     web-endpoint SkillPack, and the memory server (Deployment, Service)
//     when it no longer lists the memory skill; the memory ConfigMap when
//     memory is disabled;
//   - the memory Service is recreated when it is missing, whatever the
//     Deployment;
//   - EVENT_BUS_URL is the controller's --event-bus-url when set, and
//     OTEL_EXPORTER_OTLP_PROTOCOL the instance's otlpProtocol when set;
//   - a channel type without an image (not telegram, discord, slack or
//     whatsapp) gets status Error instead of a Deployment that cannot pull;
//   - the channels' health is also the ChannelsReady condition, and a
//     channel going into error (a missing Secret: status Error, no
//     Deployment, as the original) is a Warning Event.
//
// Data is kept: PVCs (the memory database, WhatsApp's pairing) are never
// deleted here (the garbage collector deletes them with the instance, as
// the original's), and the memory ConfigMap's data is never rewritten.
//
// Objects of the same name are adopted, never duplicated: one controlled by
// the instance (the original sets that owner reference too) or not
// controlled at all but labelled for the instance is updated to what this
// package builds (owner reference, labels, the AnnotationConfigHash
// annotation). One controlled by something else (a PersonaPack's memory
// ConfigMap) is left alone, as the original leaves it.
package instancephase

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Labels and values of the original's objects.
const (
	LabelChannel = "sympozium.ai/channel"

	ComponentChannel     = "channel"
	ComponentMemory      = "memory"
	ComponentMemoryDB    = "memory-db"
	ComponentWebEndpoint = "web-endpoint"

	// AnnotationConfigHash is the hash of what this package built an object
	// from: a different hash means the object is updated.
	AnnotationConfigHash = "sympozium.ai/config-hash"

	// MemorySkill is the SkillPack whose listing runs the memory server.
	MemorySkill = "memory"
	// DefaultImageRegistry and DefaultImageTag are the original's defaults
	// (SYMPOZIUM_IMAGE_REGISTRY, main.imageTag).
	DefaultImageRegistry = "ghcr.io/sympozium-ai/sympozium"
	DefaultImageTag      = "latest"
	// DefaultEventBusURL is the literal the original gives channels.
	DefaultEventBusURL = "nats://nats.sympozium-system.svc:4222"
	// MemoryMarkdown is the memory ConfigMap's initial MEMORY.md.
	MemoryMarkdown = "# Agent Memory\n\nNo memories recorded yet.\n"
)

// ChildSelector selects, for the controller's caches, every object kind
// this package builds (the web-endpoint run aside): the original's labels.
const ChildSelector = v1alpha1.LabelComponent + " in (" + ComponentChannel + "," + ComponentMemory + "," + ComponentMemoryDB + ")"

// ChannelTypes are the channel types the original ships an image for.
var ChannelTypes = []string{"discord", "slack", "telegram", "whatsapp"}

// WebEndpointSkills are the SkillPack names that turn the web endpoint on.
var WebEndpointSkills = []string{"web-endpoint", "skillpack-web-endpoint"}

// Config is the controller's configuration of these objects.
type Config struct {
	// ImageRegistry and ImageTag make the channel and memory-server images
	// <registry>/channel-<type>:<tag> and <registry>/skill-memory:<tag>.
	ImageRegistry, ImageTag string
	// EventBusURL is the channels' EVENT_BUS_URL; "" is the original's
	// DefaultEventBusURL.
	EventBusURL string
	// OTLPEndpoint is the controller's own OTEL_EXPORTER_OTLP_ENDPOINT, the
	// channels' default.
	OTLPEndpoint string
}

// Kind is an object kind Next acts on.
type Kind string

const (
	KindConfigMap  Kind = "ConfigMap"
	KindDeployment Kind = "Deployment"
	KindService    Kind = "Service"
	KindPVC        Kind = "PersistentVolumeClaim"
	KindAgentRun   Kind = "AgentRun"
)

// Verb is what an action does.
type Verb string

const (
	Create Verb = "create"
	// Update replaces the object (its resourceVersion set: a conflict is
	// retried by the next sync).
	Update Verb = "update"
	// Delete deletes the object with its UID as precondition.
	Delete Verb = "delete"
)

// Action is one write.
type Action struct {
	Verb   Verb
	Kind   Kind
	Object metav1.Object
}

// Observed is what the controller read from its caches.
type Observed struct {
	Instance *v1alpha1.SympoziumInstance
	// The objects labelled sympozium.ai/instance=<instance> in its
	// namespace, by name.
	ConfigMaps  map[string]*corev1.ConfigMap
	Deployments map[string]*appsv1.Deployment
	Services    map[string]*corev1.Service
	PVCs        map[string]*corev1.PersistentVolumeClaim
	// WebEndpoint is the live run <instance>-web-endpoint; nil when there
	// is none. WebEndpointFinished: a finished run of that name is kept
	// (the name is taken; the original does not replace it either).
	WebEndpoint         *v1alpha1.AgentRun
	WebEndpointFinished bool
	// WebEndpointFinishedUID is that finished run's UID, when it is of this
	// instance: it is deleted once the web endpoint is unlisted.
	WebEndpointFinishedUID types.UID
	// Secrets holds the names of the Secrets of the instance's namespace
	// that its channels name (configRef.secret) and that exist.
	Secrets map[string]bool
	Config  Config
	Now     time.Time
}

// Decision is what Next decided.
type Decision struct {
	Actions []Action
	// Channels is status.channels: one entry per channel of the spec.
	Channels []v1alpha1.ChannelStatus
	// ChannelsReady is the instance's ConditionChannelsReady; nil when it
	// has no channel (the condition is then removed).
	ChannelsReady *metav1.Condition
	// Events are recorded on the instance: only when a channel's status
	// changes to an error.
	Events []Event
}

// Event is an Event to record on the instance.
type Event struct {
	Type, Reason, Message string
}

// The instance's condition on its channels, and its reasons (also those of
// the Warning Events of a channel in error).
const (
	// ConditionChannelsReady is True when every channel of the instance is
	// Connected, False with the first problem otherwise.
	ConditionChannelsReady = "ChannelsReady"

	ReasonConnected      = "Connected"
	ReasonNotConnected   = "NotConnected"
	ReasonSecretNotFound = "SecretNotFound"
	ReasonChannelError   = "ChannelError"
)

// Names of the instance's objects.
func WebEndpointName(inst string) string      { return inst + "-web-endpoint" }
func MemoryName(inst string) string           { return inst + "-memory" }
func MemoryDBName(inst string) string         { return inst + "-memory-db" }
func ChannelName(inst, typ string) string     { return inst + "-channel-" + typ }
func ChannelDataName(inst, typ string) string { return ChannelName(inst, typ) + "-data" }

type decider struct {
	in  Observed
	d   Decision
	own metav1.OwnerReference
}

// Next decides the instance's objects and its channels' status.
func Next(in Observed) Decision {
	inst := in.Instance
	m := &decider{in: in, own: metav1.OwnerReference{
		APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "SympoziumInstance",
		Name: inst.Name, UID: inst.UID, Controller: new(true), BlockOwnerDeletion: new(true),
	}}
	if inst.DeletionTimestamp != nil {
		return m.d // the garbage collector removes what it owns
	}
	m.webEndpoint()
	m.memoryConfigMap()
	m.memoryServer()
	m.channels()
	return m.d
}

func (m *decider) act(v Verb, k Kind, o metav1.Object) {
	m.d.Actions = append(m.d.Actions, Action{Verb: v, Kind: k, Object: o})
}

// owner says how an existing object relates to the instance.
type owner int

const (
	absent  owner = iota
	ours          // controlled by the instance
	orphan        // not controlled, labelled for the instance: adopted
	foreign       // controlled by something else: left alone
)

func (m *decider) ownerOf(o metav1.Object) owner {
	if o == nil || reflect.ValueOf(o).IsNil() { // a typed nil from a map
		return absent
	}
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		if ref.UID == m.in.Instance.UID {
			return ours
		}
		return foreign
	}
	if o.GetLabels()[v1alpha1.LabelInstance] == m.in.Instance.Name {
		return orphan
	}
	return foreign
}

// meta is the metadata of a built object.
func (m *decider) meta(name string, labels map[string]string, hash string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: name, Namespace: m.in.Instance.Namespace, Labels: labels,
		Annotations:     map[string]string{AnnotationConfigHash: hash},
		OwnerReferences: []metav1.OwnerReference{m.own},
	}
}

// adopt sets on cur (a copy of the existing object) the built object's
// labels, hash annotation and, when it has none, the instance's controller
// reference.
func (m *decider) adopt(cur metav1.Object, built metav1.Object) {
	labels := maps.Clone(cur.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, built.GetLabels())
	cur.SetLabels(labels)
	ann := maps.Clone(cur.GetAnnotations())
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, built.GetAnnotations())
	cur.SetAnnotations(ann)
	if metav1.GetControllerOfNoCopy(cur) == nil {
		cur.SetOwnerReferences(append(slices.Clone(cur.GetOwnerReferences()), m.own))
	}
}

func stale(cur metav1.Object, hash string) bool {
	return cur.GetAnnotations()[AnnotationConfigHash] != hash
}

func hashOf(v ...any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // built values always encode
	}
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}

// deleteOurs deletes o when the instance controls it.
func (m *decider) deleteOurs(k Kind, o metav1.Object) {
	if m.ownerOf(o) == ours {
		m.act(Delete, k, o)
	}
}

func image(cfg Config, name string) string {
	reg, tag := cfg.ImageRegistry, cfg.ImageTag
	if reg == "" {
		reg = DefaultImageRegistry
	}
	if tag == "" {
		tag = DefaultImageTag
	}
	return fmt.Sprintf("%s/%s:%s", reg, name, tag)
}

// ---- web endpoint (reconcileWebEndpoint :693-771) ----

// webSkill is the instance's first web-endpoint skill; ok false for none.
func webSkill(inst *v1alpha1.SympoziumInstance) (v1alpha1.SkillRef, bool) {
	for _, s := range inst.Spec.Skills {
		if slices.Contains(WebEndpointSkills, s.SkillPackRef) {
			return s, true
		}
	}
	return v1alpha1.SkillRef{}, false
}

// WebEndpointRun is the server-mode run the original builds for the web
// endpoint (ensureWebEndpointAgentRun :725-756).
func WebEndpointRun(inst *v1alpha1.SympoziumInstance, skill v1alpha1.SkillRef) *v1alpha1.AgentRun {
	d := inst.Spec.Agents.Default
	run := &v1alpha1.AgentRun{
		ObjectMeta: metav1.ObjectMeta{
			Name: WebEndpointName(inst.Name), Namespace: inst.Namespace,
			Labels: map[string]string{v1alpha1.LabelInstance: inst.Name, v1alpha1.LabelComponent: ComponentWebEndpoint},
		},
		Spec: v1alpha1.AgentRunSpec{
			InstanceRef: inst.Name, AgentID: "web-endpoint", SessionKey: "web-endpoint",
			Task: "Serve HTTP requests for this instance", Mode: v1alpha1.ModeServer,
			Model: v1alpha1.ModelSpec{
				Provider: ResolveProvider(inst), Model: d.Model, AuthSecretRef: ResolveAuthSecret(inst),
				BaseURL: d.BaseURL, NodeSelector: maps.Clone(d.NodeSelector),
			},
			Skills: []v1alpha1.SkillRef{*skill.DeepCopy()},
		},
	}
	if len(run.Spec.Model.NodeSelector) == 0 {
		run.Spec.Model.NodeSelector = nil
	}
	return run
}

func (m *decider) webEndpoint() {
	inst := m.in.Instance
	cur := m.in.WebEndpoint
	skill, want := webSkill(inst)
	if !want {
		switch {
		case cur != nil && cur.DeletionTimestamp == nil:
			m.deleteOurs(KindAgentRun, cur)
		case cur == nil && m.in.WebEndpointFinished && m.in.WebEndpointFinishedUID != "":
			m.act(Delete, KindAgentRun, &v1alpha1.AgentRun{ObjectMeta: metav1.ObjectMeta{
				Name: WebEndpointName(inst.Name), Namespace: inst.Namespace, UID: m.in.WebEndpointFinishedUID}})
		}
		return
	}
	built := WebEndpointRun(inst, skill)
	built.OwnerReferences = []metav1.OwnerReference{m.own}
	switch {
	case cur == nil && !m.in.WebEndpointFinished:
		m.act(Create, KindAgentRun, built)
	case cur == nil || cur.DeletionTimestamp != nil:
		// a finished run keeps the name; one being deleted is recreated
		// after its delete event.
	case m.ownerOf(cur) == ours || m.ownerOf(cur) == orphan:
		if cur.Labels[v1alpha1.LabelComponent] != ComponentWebEndpoint && m.ownerOf(cur) == orphan {
			return // someone's own run of that name
		}
		up := cur.DeepCopy()
		m.adopt(up, built)
		up.Spec.Model.Provider, up.Spec.Model.Model = built.Spec.Model.Provider, built.Spec.Model.Model
		up.Spec.Model.AuthSecretRef, up.Spec.Model.BaseURL = built.Spec.Model.AuthSecretRef, built.Spec.Model.BaseURL
		up.Spec.Model.NodeSelector = built.Spec.Model.NodeSelector
		up.Spec.Skills = built.Spec.Skills
		if !equalJSON(up, cur) {
			m.act(Update, KindAgentRun, up)
		}
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// ResolveProvider is the original's resolveProvider (channel_router.go:72-98).
func ResolveProvider(inst *v1alpha1.SympoziumInstance) string {
	for _, ref := range inst.Spec.AuthRefs {
		if ref.Provider != "" {
			return ref.Provider
		}
	}
	for _, ref := range inst.Spec.AuthRefs {
		for _, p := range []string{"anthropic", "azure-openai", "bedrock", "lm-studio", "ollama", "openai"} {
			if strings.Contains(ref.Secret, p) {
				return p
			}
		}
	}
	if base := inst.Spec.Agents.Default.BaseURL; base != "" {
		switch {
		case strings.Contains(base, "ollama") || strings.Contains(base, ":11434"):
			return "ollama"
		case strings.Contains(base, "lm-studio") || strings.Contains(base, ":1234"):
			return "lm-studio"
		}
		return "custom"
	}
	return "openai"
}

// ResolveAuthSecret is the original's resolveAuthSecret
// (channel_router.go:101-108).
func ResolveAuthSecret(inst *v1alpha1.SympoziumInstance) string {
	for _, ref := range inst.Spec.AuthRefs {
		if strings.TrimSpace(ref.Secret) != "" {
			return ref.Secret
		}
	}
	return ""
}

// ---- memory (:400-688) ----

func (m *decider) memoryConfigMap() {
	inst := m.in.Instance
	name := MemoryName(inst.Name)
	cur := m.in.ConfigMaps[name]
	want := inst.Spec.Memory != nil && inst.Spec.Memory.Enabled
	if !want {
		if cur != nil {
			m.deleteOurs(KindConfigMap, cur)
		}
		return
	}
	labels := map[string]string{v1alpha1.LabelInstance: inst.Name, v1alpha1.LabelComponent: ComponentMemory}
	built := &corev1.ConfigMap{ObjectMeta: m.meta(name, labels, hashOf(labels)), Data: map[string]string{"MEMORY.md": MemoryMarkdown}}
	switch m.ownerOf(cur) {
	case absent:
		m.act(Create, KindConfigMap, built)
	case ours, orphan:
		if stale(cur, hashOf(labels)) {
			up := cur.DeepCopy() // the memories are kept: metadata only
			m.adopt(up, built)
			m.act(Update, KindConfigMap, up)
		}
	}
}

func wantsMemoryServer(inst *v1alpha1.SympoziumInstance) bool {
	return slices.ContainsFunc(inst.Spec.Skills, func(s v1alpha1.SkillRef) bool { return s.SkillPackRef == MemorySkill })
}

// MemoryPVC, MemoryDeployment and MemoryService are the memory server's
// objects as the original builds them (:461-666), without metadata's
// owner reference and hash.
func MemoryPVC(inst *v1alpha1.SympoziumInstance) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: MemoryDBName(inst.Name), Namespace: inst.Namespace,
			Labels: map[string]string{v1alpha1.LabelInstance: inst.Name, v1alpha1.LabelComponent: ComponentMemoryDB}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

func memoryLabels(inst *v1alpha1.SympoziumInstance) map[string]string {
	return map[string]string{v1alpha1.LabelComponent: ComponentMemory, v1alpha1.LabelInstance: inst.Name}
}

func MemoryDeployment(inst *v1alpha1.SympoziumInstance, cfg Config) *appsv1.Deployment {
	labels := memoryLabels(inst)
	probe := func(delay, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
			InitialDelaySeconds: delay, PeriodSeconds: period}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: MemoryName(inst.Name), Namespace: inst.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: maps.Clone(labels)},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "memory-server", Image: image(cfg, "skill-memory"), ImagePullPolicy: corev1.PullIfNotPresent,
						Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
						Env:            []corev1.EnvVar{{Name: "MEMORY_DB_PATH", Value: "/data/memory.db"}, {Name: "MEMORY_PORT", Value: "8080"}},
						VolumeMounts:   []corev1.VolumeMount{{Name: "memory-db", MountPath: "/data"}},
						ReadinessProbe: probe(2, 10),
						LivenessProbe:  probe(5, 30),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
					}},
					Volumes: []corev1.Volume{{Name: "memory-db", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: MemoryDBName(inst.Name)}}}},
				},
			},
		},
	}
}

func MemoryService(inst *v1alpha1.SympoziumInstance) *corev1.Service {
	labels := memoryLabels(inst)
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: MemoryName(inst.Name), Namespace: inst.Namespace, Labels: labels},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: maps.Clone(labels),
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func (m *decider) memoryServer() {
	inst := m.in.Instance
	name := MemoryName(inst.Name)
	dep, svc := m.in.Deployments[name], m.in.Services[name]
	if !wantsMemoryServer(inst) {
		// The database's PVC is kept (data), as a StatefulSet keeps its claims.
		if dep != nil {
			m.deleteOurs(KindDeployment, dep)
		}
		if svc != nil {
			m.deleteOurs(KindService, svc)
		}
		return
	}
	m.pvc(MemoryPVC(inst))
	m.deployment(MemoryDeployment(inst, m.in.Config))
	m.service(MemoryService(inst))
}

// pvc creates p when absent and adopts an orphan; a PVC's spec is never
// updated (immutable, and data).
func (m *decider) pvc(p *corev1.PersistentVolumeClaim) {
	h := hashOf(p.Labels)
	built := p.DeepCopy()
	built.ObjectMeta = m.meta(p.Name, p.Labels, h)
	cur := m.in.PVCs[p.Name]
	switch m.ownerOf(cur) {
	case absent:
		m.act(Create, KindPVC, built)
	case ours, orphan:
		if stale(cur, h) {
			up := cur.DeepCopy()
			m.adopt(up, built)
			m.act(Update, KindPVC, up)
		}
	}
}

// deployment creates d when absent and otherwise updates its labels,
// replicas, strategy and pod template (the selector is immutable, and the
// original's is the same) when what it is built from changed. It returns
// the existing Deployment, and whether something else controls it.
func (m *decider) deployment(d *appsv1.Deployment) (cur *appsv1.Deployment, notOurs bool) {
	h := hashOf(d.Labels, d.Spec)
	built := d.DeepCopy()
	built.ObjectMeta = m.meta(d.Name, d.Labels, h)
	cur = m.in.Deployments[d.Name]
	switch m.ownerOf(cur) {
	case absent:
		m.act(Create, KindDeployment, built)
	case ours, orphan:
		if stale(cur, h) {
			up := cur.DeepCopy()
			m.adopt(up, built)
			up.Spec.Replicas = built.Spec.Replicas
			up.Spec.Strategy = built.Spec.Strategy
			up.Spec.Template = built.Spec.Template
			m.act(Update, KindDeployment, up)
		}
	case foreign:
		return cur, true
	}
	return cur, false
}

// service creates s when absent and otherwise updates its labels, type,
// selector and ports (the cluster IP is kept).
func (m *decider) service(s *corev1.Service) {
	h := hashOf(s.Labels, s.Spec)
	built := s.DeepCopy()
	built.ObjectMeta = m.meta(s.Name, s.Labels, h)
	cur := m.in.Services[s.Name]
	switch m.ownerOf(cur) {
	case absent:
		m.act(Create, KindService, built)
	case ours, orphan:
		if stale(cur, h) {
			up := cur.DeepCopy()
			m.adopt(up, built)
			up.Spec.Type, up.Spec.Selector, up.Spec.Ports = built.Spec.Type, built.Spec.Selector, built.Spec.Ports
			m.act(Update, KindService, up)
		}
	}
}

// ---- channels (reconcileChannels :140-351) ----

// otlpEndpoint is the original's resolveOTelEndpoint
// (agentrun_controller.go:96-106).
func otlpEndpoint(inst *v1alpha1.SympoziumInstance, cfg Config) string {
	if o := inst.Spec.Observability; o != nil {
		if !o.Enabled {
			return ""
		}
		if o.OTLPEndpoint != "" {
			return o.OTLPEndpoint
		}
	}
	return cfg.OTLPEndpoint
}

// ChannelDeployment is the Deployment the original builds for channel ch
// (buildChannelDeployment :210-311), with --event-bus-url and the
// instance's OTLP protocol when set.
func ChannelDeployment(inst *v1alpha1.SympoziumInstance, ch v1alpha1.ChannelSpec, cfg Config) *appsv1.Deployment {
	labels := map[string]string{v1alpha1.LabelComponent: ComponentChannel, LabelChannel: ch.Type, v1alpha1.LabelInstance: inst.Name}
	bus := cfg.EventBusURL
	if bus == "" {
		bus = DefaultEventBusURL
	}
	proto := "grpc"
	if o := inst.Spec.Observability; o != nil && o.OTLPProtocol != "" {
		proto = o.OTLPProtocol
	}
	c := corev1.Container{
		Name: "channel", Image: image(cfg, "channel-"+ch.Type), ImagePullPolicy: corev1.PullIfNotPresent,
		Env: []corev1.EnvVar{
			{Name: "INSTANCE_NAME", Value: inst.Name},
			{Name: "EVENT_BUS_URL", Value: bus},
			{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: otlpEndpoint(inst, cfg)},
			{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: proto},
			{Name: "OTEL_SERVICE_NAME", Value: "sympozium-channel-" + ch.Type},
		},
	}
	if ch.ConfigRef.Secret != "" {
		c.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: ch.ConfigRef.Secret}}}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: ChannelName(inst.Name, ch.Type), Namespace: inst.Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: maps.Clone(labels)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}},
		},
	}
	if ch.Type == "whatsapp" {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		d.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "whatsapp-data", MountPath: "/data"}}
		d.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "whatsapp-data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: ChannelDataName(inst.Name, ch.Type)}}}}
	}
	return d
}

// WhatsAppPVC is the WhatsApp channel's data PVC (:314-351).
func WhatsAppPVC(inst *v1alpha1.SympoziumInstance) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: ChannelDataName(inst.Name, "whatsapp"), Namespace: inst.Namespace,
			Labels: map[string]string{v1alpha1.LabelComponent: ComponentChannel, LabelChannel: "whatsapp", v1alpha1.LabelInstance: inst.Name}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("256Mi")}},
		},
	}
}

func (m *decider) channels() {
	inst := m.in.Instance
	wanted := map[string]bool{}
	for _, ch := range inst.Spec.Channels {
		st := v1alpha1.ChannelStatus{Type: ch.Type}
		switch {
		case !slices.Contains(ChannelTypes, ch.Type):
			st.Status, st.Message = "Error", fmt.Sprintf("no channel image for type %q: sympozium ships %s", ch.Type, strings.Join(ChannelTypes, ", "))
		case wanted[ChannelName(inst.Name, ch.Type)]:
			st.Status, st.Message = "Error", fmt.Sprintf("channel type %q is listed twice; the first entry is run", ch.Type)
		case ch.ConfigRef.Secret != "" && !m.in.Secrets[ch.ConfigRef.Secret]:
			// As the original (:147-160): no Deployment work while the
			// Secret is missing, whose pod could only wait for it. One
			// that exists is kept as it is (its running pod has the
			// values), and is not deleted as a removed channel's would be.
			wanted[ChannelName(inst.Name, ch.Type)] = true
			st.Status, st.Message = "Error", SecretNotFoundMessage(ch.ConfigRef.Secret)
		default:
			name := ChannelName(inst.Name, ch.Type)
			wanted[name] = true
			if ch.Type == "whatsapp" {
				m.pvc(WhatsAppPVC(inst))
			}
			cur, foreign := m.deployment(ChannelDeployment(inst, ch, m.in.Config))
			switch {
			case foreign:
				st.Status, st.Message = "Error", fmt.Sprintf("Deployment %s exists and is controlled by another object", name)
			case cur == nil:
				st.Status, st.Message = "Pending", fmt.Sprintf("creating Deployment %s", name)
			case cur.Status.ReadyReplicas > 0:
				st.Status = "Connected"
			default:
				st.Status, st.Message = "Disconnected", fmt.Sprintf("Deployment %s has no ready replica", name)
				if ch.ConfigRef.Secret != "" {
					st.Message += fmt.Sprintf(" (its credentials come from Secret %s)", ch.ConfigRef.Secret)
				}
			}
		}
		m.d.Channels = append(m.d.Channels, m.checked(st))
	}
	m.channelsReady()
	// Channels removed from the spec (the original's bug: kept running).
	for _, name := range slices.Sorted(maps.Keys(m.in.Deployments)) {
		d := m.in.Deployments[name]
		if d.Labels[v1alpha1.LabelComponent] == ComponentChannel && !wanted[name] {
			m.deleteOurs(KindDeployment, d)
		}
	}
}

// checked sets the entry's lastHealthCheck: Now when its status or message
// changed, else the time it last changed (a status write per change, not
// per sync).
func (m *decider) checked(st v1alpha1.ChannelStatus) v1alpha1.ChannelStatus {
	for _, old := range m.in.Instance.Status.Channels {
		if old.Type == st.Type && old.Status == st.Status && old.Message == st.Message && old.LastHealthCheck != nil {
			st.LastHealthCheck = old.LastHealthCheck.DeepCopy()
			return st
		}
	}
	now := metav1.NewTime(m.in.Now.Truncate(time.Second))
	st.LastHealthCheck = &now
	return st
}

// SecretNotFoundMessage is a channel's status message when its Secret is
// missing: the original's (:155).
func SecretNotFoundMessage(secret string) string {
	return fmt.Sprintf("secret %q not found", secret)
}

// channelsReady sets the ChannelsReady condition from the channels' status,
// and a Warning Event for each channel that has just gone into error.
func (m *decider) channelsReady() {
	inst := m.in.Instance
	if len(m.d.Channels) == 0 {
		return
	}
	cond := &metav1.Condition{Type: ConditionChannelsReady, Status: metav1.ConditionTrue, Reason: ReasonConnected,
		Message: "every channel is connected", ObservedGeneration: inst.Generation,
		// kept by meta.SetStatusCondition while the status stays the same
		LastTransitionTime: metav1.NewTime(m.in.Now.Truncate(time.Second))}
	var errs, waiting []string
	reason := ""
	for _, st := range m.d.Channels {
		switch st.Status {
		case "Connected":
		case "Error":
			r := ReasonChannelError
			if secret := channelSecret(inst, st.Type); secret != "" && st.Message == SecretNotFoundMessage(secret) {
				r = ReasonSecretNotFound
			}
			if reason == "" {
				reason = r
			}
			errs = append(errs, st.Type+": "+st.Message)
			if !m.wasError(st) {
				m.d.Events = append(m.d.Events, Event{Type: corev1.EventTypeWarning, Reason: r, Message: "channel " + st.Type + ": " + st.Message})
			}
		default:
			waiting = append(waiting, st.Type+" "+st.Status)
		}
	}
	switch {
	case len(errs) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, reason, strings.Join(errs, "; ")
	case len(waiting) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonNotConnected, "not connected: "+strings.Join(waiting, ", ")
	}
	m.d.ChannelsReady = cond
}

// channelSecret is the Secret of the instance's first channel of type typ.
func channelSecret(inst *v1alpha1.SympoziumInstance, typ string) string {
	for _, ch := range inst.Spec.Channels {
		if ch.Type == typ {
			return ch.ConfigRef.Secret
		}
	}
	return ""
}

// wasError reports whether the status already held st (the same error).
func (m *decider) wasError(st v1alpha1.ChannelStatus) bool {
	for _, old := range m.in.Instance.Status.Channels {
		if old.Type == st.Type && old.Status == st.Status && old.Message == st.Message {
			return true
		}
	}
	return false
}
