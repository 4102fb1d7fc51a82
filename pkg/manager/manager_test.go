package manager

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sympozium-ai/sympozium-controller/pkg/metrics"
)

func TestProfilingOnlyWhenAsked(t *testing.T) {
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Profiling = on
		h := (&process{cfg: cfg, metrics: metrics.New()}).metricsHandler()
		assert.Equal(t, http.StatusOK, get(h, "/metrics"))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		assert.Equal(t, want, get(h, "/debug/pprof/"), "profiling %v", on)
		assert.Equal(t, want, get(h, "/debug/pprof/heap"), "profiling %v", on)
	}
}
