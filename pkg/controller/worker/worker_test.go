package worker

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/client-go/tools/cache"
)

func TestAllSynced(t *testing.T) {
	yes := func() bool { return true }
	no := func() bool { return false }
	assert.True(t, AllSynced())
	assert.True(t, AllSynced(yes, yes))
	assert.False(t, AllSynced(yes, no))
	assert.False(t, AllSynced([]cache.InformerSynced{no}...))
}
