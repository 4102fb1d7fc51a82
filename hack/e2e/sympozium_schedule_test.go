package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SympoziumSchedule side by side with sympozium's own CRD (25c0bb2), whose
// web UI, TUI, API server, PersonaPack controller and schedule router write
// and read it (issue 27). The objects its code paths build are in
// goBuiltObjects and go through TestSympoziumClientsObjectsAdmittedAndKept
// with the other kinds; here: the schema, field by field (no API server
// needed), then the defaults, the status and the printer columns on a real
// API server, each kind given the same writes.

const originalScheduleCRD = "sympozium.ai_sympoziumschedules.yaml"

// scheduleLimitsOursAdds are the constraints our schema adds to a field
// sympozium's admits without any: each bounds a value sympozium's clients
// never come near. Any other added constraint fails the test.
var scheduleLimitsOursAdds = map[string]string{
	"spec.instanceRef": "maxLength=253",    // an object name
	"spec.schedule":    "maxLength=1024",   // a cron expression
	"spec.task":        "maxLength=120000", // as AgentRun's spec.task
}

func TestScheduleCRDMatchesTheOriginals(t *testing.T) {
	orig := readDocs(t, filepath.Join(originalDir, "crds", originalScheduleCRD))
	ours := readDocs(t, filepath.Join("..", "..", "manifests", "crds", originalScheduleCRD))
	require.Len(t, orig, 1)
	require.Len(t, ours, 1)
	oSpec, uSpec := orig[0]["spec"].(map[string]any), ours[0]["spec"].(map[string]any)

	assert.Equal(t, oSpec["group"], uSpec["group"])
	assert.Equal(t, oSpec["scope"], uSpec["scope"])
	on, un := oSpec["names"].(map[string]any), uSpec["names"].(map[string]any)
	for _, k := range []string{"kind", "listKind", "plural", "singular"} {
		assert.Equal(t, on[k], un[k], "names.%s", k)
	}

	ov, uv := onlyVersion(t, oSpec), onlyVersion(t, uSpec)
	for _, k := range []string{"name", "served", "storage", "subresources", "additionalPrinterColumns"} {
		assert.Equal(t, ov[k], uv[k], "versions[0].%s: the original's UI and TUI read them", k)
	}

	schema := func(v map[string]any) map[string]any {
		return v["schema"].(map[string]any)["openAPIV3Schema"].(map[string]any)
	}
	var problems []string
	added := map[string]string{}
	compareSchema("", schema(ov), schema(uv), &problems, added)
	sort.Strings(problems)
	assert.Empty(t, problems, "every field of the original's schema, as the original admits it")
	assert.Equal(t, scheduleLimitsOursAdds, added, "constraints ours adds to the original's fields")
}

func onlyVersion(t *testing.T, crdSpec map[string]any) map[string]any {
	t.Helper()
	vs := crdSpec["versions"].([]any)
	require.Len(t, vs, 1)
	return vs[0].(map[string]any)
}

// compareSchema checks that ours admits whatever orig admits, at path and
// below: every property of orig is in ours with the same type, format and
// default (the defaults are what a client that omits the field gets),
// every enum value of orig is one of ours, and ours requires nothing orig
// does not. Constraints ours adds (maxLength, pattern, CEL rules, ...) are
// recorded in added.
func compareSchema(path string, orig, ours map[string]any, problems *[]string, added map[string]string) {
	name := path
	if name == "" {
		name = "(root)"
	}
	for _, k := range []string{"type", "format", "default", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string"} {
		if !reflect.DeepEqual(orig[k], ours[k]) {
			*problems = append(*problems, fmt.Sprintf("%s: %s %v in the original's, %v in ours", name, k, orig[k], ours[k]))
		}
	}
	if oe, ok := orig["enum"].([]any); ok {
		ue, _ := ours["enum"].([]any)
		for _, v := range oe {
			if !slices.Contains(ue, v) {
				*problems = append(*problems, fmt.Sprintf("%s: ours refuses %v", name, v))
			}
		}
	} else if _, ok := ours["enum"]; ok {
		*problems = append(*problems, fmt.Sprintf("%s: ours has an enum, the original's none", name))
	}
	or, _ := orig["required"].([]any)
	ur, _ := ours["required"].([]any)
	for _, r := range ur {
		if !slices.Contains(or, r) {
			*problems = append(*problems, fmt.Sprintf("%s: ours requires %v, the original does not", name, r))
		}
	}
	var limits []string
	for _, k := range []string{"maxLength", "minLength", "pattern", "maximum", "minimum", "maxItems", "minItems", "maxProperties", "x-kubernetes-validations"} {
		if _, ok := ours[k]; ok && !reflect.DeepEqual(orig[k], ours[k]) {
			limits = append(limits, fmt.Sprintf("%s=%v", k, ours[k]))
		}
	}
	if len(limits) > 0 {
		added[path] = strings.Join(limits, ",")
	}
	op, _ := orig["properties"].(map[string]any)
	up, _ := ours["properties"].(map[string]any)
	for k, v := range op {
		p := strings.TrimPrefix(path+"."+k, ".")
		u, ok := up[k].(map[string]any)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: not in ours", p))
			continue
		}
		compareSchema(p, v.(map[string]any), u, problems, added)
	}
	if oi, ok := orig["items"].(map[string]any); ok {
		ui, ok := ours["items"].(map[string]any)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s[]: no items in ours", name))
		} else {
			compareSchema(path+"[]", oi, ui, problems, added)
		}
	}
}

// TestScheduleSideBySide: the same writes to sympozium's CRD and ours, on
// one API server, read back the same: the defaults a minimal schedule gets,
// every status field sympozium's controller writes (conditions included),
// and kubectl's columns.
func TestScheduleSideBySide(t *testing.T) {
	e := requireE2E(t)
	installOriginalCRDs(t, e)
	ns := e.namespace(t, nil)
	kinds := map[string]string{ // kind as kubectl names it -> apiVersion, kind
		"originalsympoziumschedules." + originalGroup: originalGroup + "/v1alpha1 " + originalKind("SympoziumSchedule"),
		"sympoziumschedules.sympozium.ai":             "sympozium.ai/v1alpha1 SympoziumSchedule",
	}
	read := func(res, name string) map[string]any {
		m := map[string]any{}
		out := e.kubectl(t, "get", res, name, "-n", ns, "-o", "json")
		require.NoError(t, json.Unmarshal([]byte(out), &m))
		return m
	}
	stored := map[string]map[string]any{}
	for res, gvk := range kinds {
		apiVersion, kind, _ := strings.Cut(gvk, " ")
		// As the API server's POST /api/v1/schedules writes one with only
		// what is required.
		e.kubectlJSON(t, map[string]any{
			"apiVersion": apiVersion, "kind": kind,
			"metadata": map[string]any{"name": "minimal", "namespace": ns},
			"spec":     map[string]any{"instanceRef": "alice", "schedule": "0 * * * *", "task": "check in"},
		}, "create", "--validate=strict", "-f", "-")
		// Every status field sympozium's controller writes, and a
		// condition (its CRD has them; nothing of sympozium writes one).
		e.kubectl(t, "patch", res, "minimal", "-n", ns, "--subresource=status", "--type=merge", "-p", `{"status":{
			"phase":"Active","lastRunTime":"2025-06-01T09:00:00Z","nextRunTime":"2025-06-01T10:00:00Z",
			"lastRunName":"minimal-7","totalRuns":7,
			"conditions":[{"type":"Ready","status":"True","reason":"Scheduled","message":"","lastTransitionTime":"2025-06-01T09:00:00Z","observedGeneration":1}]}}`)
		stored[res] = read(res, "minimal")
	}
	o, u := stored["originalsympoziumschedules."+originalGroup], stored["sympoziumschedules.sympozium.ai"]
	assert.Equal(t, map[string]any{"instanceRef": "alice", "schedule": "0 * * * *", "task": "check in",
		"type": "scheduled", "concurrencyPolicy": "Forbid", "includeMemory": true}, o["spec"], "the original's defaults")
	assert.Equal(t, o["spec"], u["spec"], "the same defaults")
	assert.Equal(t, o["status"], u["status"], "the same status kept")

	// kubectl's table: the same columns and cells (AGE aside: the two were
	// created a moment apart).
	table := func(res string) [][]string {
		out := e.kubectl(t, "get", res, "minimal", "-n", ns)
		var rows [][]string
		for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			rows = append(rows, f[:len(f)-1])
		}
		return rows
	}
	ot := table("originalsympoziumschedules." + originalGroup)
	assert.Equal(t, [][]string{{"NAME", "INSTANCE", "SCHEDULE", "TYPE", "PHASE", "LAST", "RUN"}}, ot[:1])
	assert.Equal(t, ot, table("sympoziumschedules.sympozium.ai"))
}
