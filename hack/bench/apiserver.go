package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// apiTimes is what the API server's own /metrics say it spent, by request
// kind ("verb resource[/subresource]"): seconds (the sum of
// apiserver_request_duration_seconds) and requests; and the watch events it
// sent by resource (apiserver_watch_events_total).
type apiTimes struct {
	seconds, requests, watchEvents map[string]float64
}

// apiserverTimes scrapes the API server's /metrics; on a failure it logs and
// returns empty maps (the rows that read it then say n/a).
func (e *env) apiserverTimes(ctx context.Context) apiTimes {
	raw, err := e.watchKube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		logf("scraping the API server's /metrics: %v", err)
		return apiTimesFrom(nil)
	}
	ms, err := parseMetrics(bytes.NewReader(raw))
	if err != nil {
		logf("parsing the API server's /metrics: %v", err)
		return apiTimesFrom(nil)
	}
	return apiTimesFrom(ms)
}

// apiTimesFrom sums the API server's metrics ms by request kind.
func apiTimesFrom(ms metricSet) apiTimes {
	t := apiTimes{seconds: map[string]float64{}, requests: map[string]float64{}, watchEvents: map[string]float64{}}
	for _, s := range ms {
		switch s.name {
		case "apiserver_request_duration_seconds_sum", "apiserver_request_duration_seconds_count":
			verb := strings.ToLower(s.labels["verb"])
			if verb == "watch" || verb == "connect" {
				continue // long-running: their duration is how long they stayed open
			}
			k := requestKey(verb, s.labels["resource"], s.labels["subresource"])
			if strings.HasSuffix(s.name, "_sum") {
				t.seconds[k] += s.value
			} else {
				t.requests[k] += s.value
			}
		case "apiserver_watch_events_total":
			t.watchEvents[s.labels["resource"]] += s.value
		}
	}
	return t
}

func (t apiTimes) minus(o apiTimes) apiTimes {
	return apiTimes{seconds: diffCounts(t.seconds, o.seconds), requests: diffCounts(t.requests, o.requests), watchEvents: diffCounts(t.watchEvents, o.watchEvents)}
}

// apiTime adds the row of the API server's request time per run of one
// workload of the burst, the largest kinds first.
func (b *bench) apiTime(n int, what string, r burstResult) {
	if len(r.api.seconds) == 0 {
		b.add("2", "API-server request time per run, "+what, "n/a", "", "the API server's /metrics could not be read")
		return
	}
	total := 0.0
	for _, v := range r.api.seconds {
		total += v
	}
	keys := slices.SortedFunc(maps.Keys(r.api.seconds), func(x, y string) int {
		if c := cmp.Compare(r.api.seconds[y], r.api.seconds[x]); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	var parts []string
	for _, k := range keys {
		per := r.api.seconds[k] * 1000 / float64(n)
		if per < 0.05 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f (%.2f requests, %.1f ms each)", k, per, r.api.requests[k]/float64(n), r.api.seconds[k]*1000/max(1, r.api.requests[k])))
	}
	var watch []string
	for _, k := range slices.Sorted(maps.Keys(r.api.watchEvents)) {
		if v := r.api.watchEvents[k] / float64(n); v >= 0.05 {
			watch = append(watch, fmt.Sprintf("%s %.1f", k, v))
		}
	}
	b.add("2", "API-server request time per run, "+what, fmt.Sprintf("%.1f ms", total*1000/float64(n)), "",
		fmt.Sprintf("apiserver_request_duration_seconds (watches apart) from the first create to the last run terminal, every client, by request: %s; watch events sent per run: %s; "+
			"on a loaded machine this includes waiting for the CPU: compare shares, not absolute times", strings.Join(parts, ", "), strings.Join(watch, ", ")))
}

// profileAPIServer saves CPU profiles of the API server (its
// /debug/pprof/profile, 5 s each, one after another) into the work directory
// as apiserver-<name>-NN.pb.gz until the returned function is called; that
// waits for the profile under way. Nothing without -apiserver-profile.
// `go tool pprof -top <binary> apiserver-<name>-*.pb.gz` merges them.
func (b *bench) profileAPIServer(ctx context.Context, name string) (stop func()) {
	if !b.o.apiserverProfile {
		return func() {}
	}
	var stopped atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stopped.Load() && ctx.Err() == nil; i++ {
			raw, err := b.e.watchKube.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "5").DoRaw(ctx)
			if err != nil {
				logf("API server profile %s-%02d: %v", name, i, err)
				return
			}
			if err := os.WriteFile(filepath.Join(b.e.dir, fmt.Sprintf("apiserver-%s-%02d.pb.gz", name, i)), raw, 0o644); err != nil {
				logf("saving the API server profile: %v", err)
				return
			}
		}
	})
	return func() {
		stopped.Store(true)
		wg.Wait()
	}
}
