package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Drop-in for sympozium's own clients (issue 11). Every object that
// sympozium's clients create (its samples, its nine shipped SkillPacks, and
// objects exactly as its Go code paths build them) is tried on the same API
// server against sympozium's own CRDs (installed under another group and
// kind names) and against ours. Whatever the original admits under strict
// field validation, ours must admit and read back with every field it was
// written with; and our Go types must hold every field, so that a typed
// client's read-modify-write loses nothing.

const (
	originalDir   = "testdata/sympozium-25c0bb2"
	originalGroup = "sympozium-25c0bb2.test"
)

// originalKind is the name the original's kind is installed under, so that
// kubectl's names (agentruns, ...) keep meaning ours for the other tests.
func originalKind(kind string) string { return "Original" + kind }

// installOriginalCRDs installs sympozium's CRDs, unchanged but for their
// group and names.
func installOriginalCRDs(t *testing.T, e *env) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(originalDir, "crds", "*.yaml"))
	require.NoError(t, err)
	require.Len(t, files, 4)
	var names []string
	for _, f := range files {
		docs := readDocs(t, f)
		require.Len(t, docs, 1, f)
		crd := docs[0]
		spec := crd["spec"].(map[string]any)
		n := spec["names"].(map[string]any)
		for _, k := range []string{"kind", "listKind"} {
			n[k] = originalKind(n[k].(string))
		}
		for _, k := range []string{"plural", "singular"} {
			n[k] = "original" + n[k].(string)
		}
		spec["group"] = originalGroup
		name := n["plural"].(string) + "." + originalGroup
		crd["metadata"] = map[string]any{"name": name}
		names = append(names, "crd/"+name)
		e.kubectlJSON(t, crd, "apply", "--server-side", "--force-conflicts", "--field-manager=sympozium-e2e", "-f", "-")
	}
	e.kubectl(t, append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, names...)...)
}

// readDocs reads every YAML document of a file as JSON-like maps.
func readDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return decodeDocs(t, string(b))
}

func decodeDocs(t *testing.T, s string) []map[string]any {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	var out []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		if len(m) > 0 {
			out = append(out, m)
		}
	}
}

func (e *env) kubectlJSON(t *testing.T, obj map[string]any, args ...string) string {
	t.Helper()
	out, err := e.kubectlJSONErr(obj, args...)
	require.NoError(t, err, "kubectl %s:\n%s", strings.Join(args, " "), out)
	return out
}

func (e *env) kubectlJSONErr(obj map[string]any, args ...string) (string, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	return e.kubectlInput(string(b), args...)
}

// sympoziumObject is one object a sympozium client creates.
type sympoziumObject struct {
	source string // where it comes from in sympozium's tree
	obj    map[string]any
	// originalRefuses: sympozium's own CRDs refuse it too (a stale sample).
	// The test checks this against the original's CRDs, not only ours.
	originalRefuses bool
}

func (o sympoziumObject) kind() string { return o.obj["kind"].(string) }
func (o sympoziumObject) name() string {
	return o.obj["metadata"].(map[string]any)["name"].(string)
}

// Samples of the original that its own CRDs refuse under strict validation
// (agentID, model.name, skills as strings, channels[].secretRef,
// authRefs[].secretName...): written for an older schema.
var staleSamples = map[string]bool{
	"agentrun_sample.yaml/alice-run-001":  true,
	"sympoziuminstance_sample.yaml/alice": true,
}

func sympoziumObjects(t *testing.T) []sympoziumObject {
	t.Helper()
	var out []sympoziumObject
	for _, dir := range []string{"skills", "samples"} {
		files, err := filepath.Glob(filepath.Join(originalDir, dir, "*.yaml"))
		require.NoError(t, err)
		for _, f := range files {
			for _, d := range readDocs(t, f) {
				o := sympoziumObject{source: "config/" + dir + "/" + filepath.Base(f), obj: d}
				o.originalRefuses = staleSamples[filepath.Base(f)+"/"+o.name()]
				out = append(out, o)
			}
		}
	}
	for i, doc := range goBuiltObjects {
		docs := decodeDocs(t, doc.yaml)
		require.Len(t, docs, 1, "goBuiltObjects[%d]", i)
		out = append(out, sympoziumObject{source: doc.source, obj: docs[0]})
	}
	return out
}

func TestSympoziumClientsObjectsAdmittedAndKept(t *testing.T) {
	e := requireE2E(t)
	installOriginalCRDs(t, e)
	ns := e.namespace(t, nil)
	objs := sympoziumObjects(t)

	skillPacks := 0
	for _, o := range objs {
		if strings.HasPrefix(o.source, "config/skills/") {
			skillPacks++
		}
	}
	require.Equal(t, 9, skillPacks, "the nine SkillPacks sympozium ships")

	seen := map[string]bool{}
	for _, o := range objs {
		key := o.kind() + "/" + o.name()
		require.False(t, seen[key], "two objects named %s", key)
		seen[key] = true
		t.Run(o.source+"/"+key, func(t *testing.T) {
			written := prepare(o.obj, ns)

			// The original's schema first: the expectation is checked, not
			// assumed.
			orig := prepare(o.obj, ns)
			orig["apiVersion"] = originalGroup + "/v1alpha1"
			orig["kind"] = originalKind(o.kind())
			out, err := e.kubectlJSONErr(orig, "create", "--validate=strict", "-f", "-")
			if o.originalRefuses {
				require.Error(t, err, "sympozium's CRD admits it now; drop it from staleSamples")
				t.Logf("sympozium's own CRD refuses it too: %s", strings.TrimSpace(out))
				return
			}
			require.NoError(t, err, "sympozium's own CRD refuses it:\n%s", out)

			out, err = e.kubectlJSONErr(written, "create", "--validate=strict", "-f", "-")
			require.NoError(t, err, "refused by ours:\n%s", out)
			stored := e.getJSON(t, ns, o.kind(), o.name())
			assertKept(t, written, stored, false)

			// A typed client: our Go types know every field of the stored
			// object, and writing it back through them keeps each one.
			typed := decodeTyped(t, o.kind(), stored)
			typedName := o.name() + "-typed"
			e.createTyped(t, typed, ns, typedName)
			restored := e.getJSON(t, ns, o.kind(), typedName)
			assertKept(t, renamed(written, typedName), restored, true)
		})
	}
}

// prepare returns a copy of the object in namespace ns.
func prepare(obj map[string]any, ns string) map[string]any {
	cp := deepCopyJSON(obj).(map[string]any)
	md := cp["metadata"].(map[string]any)
	md["namespace"] = ns
	return cp
}

func renamed(obj map[string]any, name string) map[string]any {
	cp := deepCopyJSON(obj).(map[string]any)
	cp["metadata"].(map[string]any)["name"] = name
	return cp
}

func deepCopyJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func (e *env) getJSON(t *testing.T, ns, kind, name string) map[string]any {
	t.Helper()
	out := e.kubectl(t, "get", strings.ToLower(kind)+".sympozium.ai", name, "-n", ns, "-o", "json")
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	return m
}

// assertKept checks that every field written (spec, labels, annotations)
// is stored with the value written; the server may add defaults. With
// zeroIsAbsent, a zero value written ("" / false / 0 / {} / []) may be
// absent: a Go client's omitempty drops those, which changes nothing.
func assertKept(t *testing.T, written, stored map[string]any, zeroIsAbsent bool) {
	t.Helper()
	var problems []string
	subset("spec", written["spec"], stored["spec"], zeroIsAbsent, &problems)
	wm, sm := written["metadata"].(map[string]any), stored["metadata"].(map[string]any)
	for _, k := range []string{"labels", "annotations"} {
		subset("metadata."+k, wm[k], sm[k], zeroIsAbsent, &problems)
	}
	sort.Strings(problems)
	assert.Empty(t, problems, "fields lost or changed")
}

func subset(path string, want, got any, zeroIsAbsent bool, problems *[]string) {
	if want == nil {
		return
	}
	if got == nil {
		if zeroIsAbsent && isZero(want) {
			return
		}
		*problems = append(*problems, fmt.Sprintf("%s: written %v, not stored", path, want))
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: written an object, stored %v", path, got))
			return
		}
		for k, v := range w {
			subset(path+"."+k, v, g[k], zeroIsAbsent, problems)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			*problems = append(*problems, fmt.Sprintf("%s: written %v, stored %v", path, want, got))
			return
		}
		for i := range w {
			subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], zeroIsAbsent, problems)
		}
	default:
		if !reflect.DeepEqual(want, got) {
			*problems = append(*problems, fmt.Sprintf("%s: written %#v, stored %#v", path, want, got))
		}
	}
}

func isZero(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case bool:
		return !x
	case float64:
		return x == 0
	case map[string]any:
		for _, e := range x {
			if !isZero(e) {
				return false
			}
		}
		return true
	case []any:
		return len(x) == 0
	}
	return v == nil
}

// decodeTyped decodes a stored object into our Go type, refusing any field
// the type does not know.
func decodeTyped(t *testing.T, kind string, stored map[string]any) any {
	t.Helper()
	var obj any
	switch kind {
	case "AgentRun":
		obj = &v1alpha1.AgentRun{}
	case "SympoziumInstance":
		obj = &v1alpha1.SympoziumInstance{}
	case "SkillPack":
		obj = &v1alpha1.SkillPack{}
	case "SympoziumSchedule":
		obj = &v1alpha1.SympoziumSchedule{}
	default:
		t.Fatalf("unexpected kind %s", kind)
	}
	b, err := json.Marshal(stored)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(obj), "our Go type lacks a field of the stored object")
	return obj
}

// createTyped creates a copy of a decoded object through the typed client.
func (e *env) createTyped(t *testing.T, obj any, ns, name string) {
	t.Helper()
	fresh := func(m *metav1.ObjectMeta) {
		*m = metav1.ObjectMeta{Name: name, Namespace: ns, Labels: m.Labels, Annotations: m.Annotations}
	}
	ctx := context.Background()
	c := e.client.SympoziumV1alpha1()
	var err error
	switch o := obj.(type) {
	case *v1alpha1.AgentRun:
		fresh(&o.ObjectMeta)
		_, err = c.AgentRuns(ns).Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"})
	case *v1alpha1.SympoziumInstance:
		fresh(&o.ObjectMeta)
		_, err = c.SympoziumInstances(ns).Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"})
	case *v1alpha1.SkillPack:
		fresh(&o.ObjectMeta)
		_, err = c.SkillPacks(ns).Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"})
	case *v1alpha1.SympoziumSchedule:
		fresh(&o.ObjectMeta)
		_, err = c.SympoziumSchedules(ns).Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"})
	default:
		t.Fatalf("unexpected type %T", obj)
	}
	require.NoError(t, err)
}

// Switching from sympozium's controller: an instance and a SkillPack as it
// leaves them (its finalizers, its status) are taken over: the finalizers
// go, so the objects can be deleted; the status fields sympozium's UI reads
// are written with sympozium's values, and what only its other components
// write is kept.
func TestSwitchFromSympoziumController(t *testing.T) {
	t.Parallel()
	e := requireE2E(t)
	ns := e.namespace(t, nil)
	ctx := context.Background()
	c := e.client.SympoziumV1alpha1()

	e.apply(t, fmt.Sprintf(`apiVersion: sympozium.ai/v1alpha1
kind: SympoziumInstance
metadata:
  name: alice
  namespace: %[1]s
  finalizers: [sympozium.ai/finalizer]
spec:
  agents: {default: {model: gpt-4o}}
  authRefs: [{secret: alice-openai-key}]
  channels:
  - {type: telegram, configRef: {secret: alice-telegram}}
  - {type: whatsapp, configRef: {secret: ""}}
---
apiVersion: sympozium.ai/v1alpha1
kind: SkillPack
metadata:
  name: k8s-ops
  namespace: %[1]s
  finalizers: [sympozium.ai/skillpack-finalizer]
spec:
  category: kubernetes
  skills: [{name: overview, content: "# Overview", requires: {bins: [kubectl]}}]
  sidecar:
    image: ghcr.io/sympozium-ai/sympozium/skill-k8s-ops:latest
    resources: {cpu: 100m, memory: 128Mi}
    rbac: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
`, ns))
	inst, err := c.SympoziumInstances(ns).Get(ctx, "alice", metav1.GetOptions{})
	require.NoError(t, err)
	// What sympozium's web-endpoint reconciler had written.
	inst.Status = v1alpha1.SympoziumInstanceStatus{Phase: "Running", TotalAgentRuns: 12,
		WebEndpoint: &v1alpha1.WebEndpointStatus{Status: "Ready", URL: "https://alice.example.com", AuthSecretName: "alice-web-key"}}
	_, err = c.SympoziumInstances(ns).UpdateStatus(ctx, inst, metav1.UpdateOptions{})
	require.NoError(t, err)

	e.startController(t, ns)

	// The channels' gateways run here now (issue 24): each channel has an
	// entry with its gateway's health.
	require.Eventually(t, func() bool {
		i, err := c.SympoziumInstances(ns).Get(ctx, "alice", metav1.GetOptions{})
		if err != nil || len(i.Finalizers) != 0 || i.Status.Phase != "Running" || len(i.Status.Channels) != 2 {
			return false
		}
		for n, typ := range []string{"telegram", "whatsapp"} {
			ch := i.Status.Channels[n]
			if ch.Type != typ || !slices.Contains([]string{"Pending", "Connected", "Disconnected"}, ch.Status) || ch.LastHealthCheck == nil {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "sympozium's finalizer removed and its status written")
	for _, d := range []string{"alice-channel-telegram", "alice-channel-whatsapp"} {
		_, err := e.kube.AppsV1().Deployments(ns).Get(ctx, d, metav1.GetOptions{})
		assert.NoError(t, err, "the channel's gateway")
	}
	i, err := c.SympoziumInstances(ns).Get(ctx, "alice", metav1.GetOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 0, i.Status.ActiveAgentPods)
	assert.EqualValues(t, 12, i.Status.TotalAgentRuns, "kept as found")
	assert.Equal(t, &v1alpha1.WebEndpointStatus{Status: "Ready", URL: "https://alice.example.com", AuthSecretName: "alice-web-key"},
		i.Status.WebEndpoint, "kept as found")

	require.Eventually(t, func() bool {
		p, err := c.SkillPacks(ns).Get(ctx, "k8s-ops", metav1.GetOptions{})
		return err == nil && len(p.Finalizers) == 0 && p.Status.Phase == "Ready" && p.Status.ConfigMapName == "k8s-ops"
	}, 30*time.Second, 100*time.Millisecond, "sympozium's finalizer removed and phase Ready")

	// A serving run of the instance: Serving, one active agent pod.
	e.apply(t, runYAML(ns, "srv", "alice", map[string]string{"SIM_DURATION": "1h"}, "  mode: server\n  timeout: 2m\n"))
	require.Eventually(t, func() bool {
		i, err := c.SympoziumInstances(ns).Get(ctx, "alice", metav1.GetOptions{})
		return err == nil && i.Status.Phase == "Serving" && i.Status.ActiveAgentPods == 1
	}, 60*time.Second, 100*time.Millisecond, "instance Serving with one active agent pod")
	e.kubectl(t, "delete", "agentrun", "srv", "-n", ns, "--timeout=60s")
	require.Eventually(t, func() bool {
		i, err := c.SympoziumInstances(ns).Get(ctx, "alice", metav1.GetOptions{})
		return err == nil && i.Status.Phase == "Running" && i.Status.ActiveAgentPods == 0
	}, 30*time.Second, 100*time.Millisecond, "instance back to Running")

	// Nothing holds them any more.
	e.kubectl(t, "delete", "sympoziuminstance/alice", "skillpack/k8s-ops", "-n", ns, "--timeout=30s")
}
