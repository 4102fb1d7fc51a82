// Package celbench measures what the AgentRun CRD's CEL rules cost the API
// server on one status write, with the API server's own validator
// (k8s.io/apiextensions-apiserver, the version hack/localcp runs), as
// statusStrategy.ValidateUpdate calls it: the whole object, old and new,
// with ratcheting. It is its own module because the controller does not
// depend on the API server's code (issue 26, docs/bench.md section 8):
//
//	cd hack/celbench
//	go test -bench . -benchmem                                  # the CRD of manifests/crds
//	CRD=/path/to/other.yaml go test -bench . -benchmem          # another version of it
//
// Allocations per write do not depend on the machine's load; ns/op does.
package celbench

import (
	"context"
	"os"
	"testing"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/model"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"sigs.k8s.io/yaml"
)

// load builds the structural schema and CEL validator of the CRD at path.
func load(tb testing.TB, path string) (*cel.Validator, *structuralschema.Structural) {
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		tb.Fatal(err)
	}
	var internal apiextensionsinternal.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(crd.Spec.Versions[0].Schema.OpenAPIV3Schema, &internal, nil); err != nil {
		tb.Fatal(err)
	}
	s, err := structuralschema.NewStructural(&internal)
	if err != nil {
		tb.Fatal(err)
	}
	v := cel.NewValidator(s, true, celconfig.PerCallLimit)
	if v == nil {
		tb.Fatal("no validator")
	}
	return v, s
}

// obj is the benchmark's run with status.
func obj(status map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "sympozium.ai/v1alpha1", "kind": "AgentRun",
		"metadata": map[string]any{"name": "run-00001", "namespace": "bench-burst", "uid": "8d1c0c6e-3f0e-4b7e-9d55-0f4c1e1b2a3c", "resourceVersion": "1234", "generation": int64(1), "creationTimestamp": "2026-12-05T19:12:43Z"},
		"spec": map[string]any{
			"instanceRef": "bench", "agentId": "default", "sessionKey": "s-00001",
			"task":    "summarise the state of the cluster",
			"model":   map[string]any{"provider": "openai", "model": "gpt-4o"},
			"cleanup": "delete", "mode": "task",
			"env": map[string]any{"SIM_DURATION": "0s", "SIM_MESSAGE": `{"status":"success"}`},
		},
		"status": status,
	}
}

func bench(b *testing.B, path string) {
	v, s := load(b, path)
	old := obj(map[string]any{"phase": "Pending", "jobName": "run-00001"})
	cur := obj(map[string]any{"phase": "Running", "jobName": "run-00001", "podName": "run-00001-abcde"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		co := common.NewCorrelatedObject(cur, old, &model.Structural{Structural: s})
		errs, _ := v.Validate(ctx, nil, s, cur, old, celconfig.RuntimeCELCostBudget, cel.WithRatcheting(co))
		if len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// BenchmarkStatusWrite validates a status write Pending → Running of a run
// as hack/bench creates it (with the CRD's defaults applied).
func BenchmarkStatusWrite(b *testing.B) {
	crd := os.Getenv("CRD")
	if crd == "" {
		crd = "../../manifests/crds/sympozium.ai_agentruns.yaml"
	}
	bench(b, crd)
}
