package manager

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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

// TestGzipFlag: the controller's clients, built as Run builds them, ask the
// API server for gzip by default and not with --kube-api-compression=false;
// over HTTP/2 with TLS, as in a cluster.
func TestGzipFlag(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Proto+" "+r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	base := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	assert.True(t, DefaultConfig().Compression, "gzip is the default")
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Compression = on
		kube, err := kubernetes.NewForConfig(protobuf(clientConfig(base, cfg)))
		require.NoError(t, err)
		_, err = kube.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		require.NoError(t, err)
		mu.Lock()
		got := seen[len(seen)-1]
		mu.Unlock()
		assert.True(t, strings.HasPrefix(got, "HTTP/2"), got)
		assert.Equal(t, on, strings.Contains(got, "gzip"), "compression %v: %q", on, got)
	}
}
