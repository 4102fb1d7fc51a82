package v1alpha1

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestWorkloadCoversEveryName: every status field that names a run's
// workload (a string field ending in Name, but the pod, which runs inside
// the workload, and the Service, which comes with the Deployment) is read
// by Workload, so that a new backend's field cannot be left out of it.
func TestWorkloadCoversEveryName(t *testing.T) {
	kind, name := (&AgentRunStatus{}).Workload()
	assert.Empty(t, kind)
	assert.Empty(t, name)
	typ := reflect.TypeFor[AgentRunStatus]()
	seen := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() != reflect.String || !strings.HasSuffix(f.Name, "Name") || f.Name == "PodName" || f.Name == "ServiceName" {
			continue
		}
		var st AgentRunStatus
		reflect.ValueOf(&st).Elem().Field(i).SetString("w-" + f.Name)
		kind, name := st.Workload()
		assert.Equal(t, "w-"+f.Name, name, "Workload does not read status.%s", f.Name)
		assert.Equal(t, strings.TrimSuffix(f.Name, "Name"), kind, "the kind of status.%s", f.Name)
		seen[kind] = true
	}
	assert.Len(t, seen, 4, "the workload kinds: Job, Deployment, Sandbox, SandboxClaim")
}
