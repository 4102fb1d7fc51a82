package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sympozium-ai/sympozium-controller/pkg/schedule"
)

func TestParseSteps(t *testing.T) {
	got, err := parseSteps("10000, 50000")
	require.NoError(t, err)
	assert.Equal(t, []int{10000, 50000}, got)
	for _, bad := range []string{"", "0", "-5", "100,100", "600,200", "10k"} {
		_, err := parseSteps(bad)
		assert.Error(t, err, bad)
	}
}

func TestControllerWorkers(t *testing.T) {
	for flags, want := range map[string]int{
		"":                              32, // pkg/manager's default
		"--workers=8":                   8,
		"--profiling --workers 4":       4,
		"-workers=2 --kube-api-qps=500": 2,
		"--workers-extra=9":             32,
	} {
		got, err := controllerWorkers(flags)
		require.NoError(t, err, flags)
		assert.Equal(t, want, got, flags)
	}
	_, err := controllerWorkers("--workers=none")
	assert.Error(t, err)
}

func TestInversions(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tr := &tracker{items: map[string]*item{
		"a": {added: at(0), jobSeen: at(5)},   // oldest, admitted last
		"b": {added: at(1), jobSeen: at(2)},   // 3 s before a: counted
		"c": {added: at(2), jobSeen: at(4.5)}, // 0.5 s before a: within the slack
		"d": {added: at(3), jobSeen: at(6)},   // after every older run
		"e": {added: at(4)},                   // no Job yet: ignored
	}}
	n, worst := tr.inversions(time.Second)
	assert.Equal(t, 1, n)
	assert.Equal(t, 3*time.Second, worst)
}

func TestCreateGated(t *testing.T) {
	var mu sync.Mutex
	done := map[int]bool{}
	allowed := 3 // at most 3 created ahead of the gate
	refused := make(chan struct{})
	var refusedOnce sync.Once
	gate := func(i int) bool {
		mu.Lock()
		defer mu.Unlock()
		if i >= allowed {
			refusedOnce.Do(func() { close(refused) })
		}
		return i < allowed
	}
	// The gate opens once a creator has been held at it (a condition, not
	// a sleep: the closed gate is really tried, however slow the machine).
	go func() {
		<-refused
		mu.Lock()
		allowed = 10
		mu.Unlock()
	}()
	err := createGated(context.Background(), 2, 8, 4, gate, func(_ context.Context, i int) error {
		mu.Lock()
		defer mu.Unlock()
		assert.Less(t, i, allowed, "created past the gate")
		done[i] = true
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, map[int]bool{2: true, 3: true, 4: true, 5: true, 6: true, 7: true}, done)
}

func TestAPITimesFrom(t *testing.T) {
	ms, err := parseMetrics(strings.NewReader(`# HELP apiserver_request_duration_seconds x
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="sympozium.ai",resource="agentruns",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 1.5
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="sympozium.ai",resource="agentruns",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 3
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 0.25
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 900
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1",le="0.005"} 7
apiserver_watch_events_total{group="",kind="Pod",version="v1"} 5
apiserver_watch_events_total{group="batch",kind="Job",resource="jobs",version="v1"} 4
`))
	require.NoError(t, err)
	got := apiTimesFrom(ms)
	assert.Equal(t, map[string]float64{"put agentruns/status": 1.5, "post events": 0.25}, got.seconds, "watches are left out: their duration is how long they stayed open")
	assert.Equal(t, map[string]float64{"put agentruns/status": 3}, got.requests)
	assert.Equal(t, map[string]float64{"": 5, "jobs": 4}, got.watchEvents)
	d := got.minus(apiTimesFrom(ms[:1]))
	assert.Equal(t, map[string]float64{"post events": 0.25}, d.seconds)
}

// The schedules phase's crons, as the controller parses them: the firing
// schedules tick at m and at no other time near it (none in the day before
// their creation, which a new schedule would fire at once), the idle ones
// not for months.
func TestScheduleCrons(t *testing.T) {
	for _, now := range []time.Time{
		time.Date(2026, 12, 31, 23, 58, 30, 0, time.UTC),
		time.Date(2026, 2, 28, 0, 0, 1, 0, time.UTC),
		time.Date(2026, 7, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600)),
	} {
		m := now.Add(time.Minute).Truncate(time.Minute).Add(time.Minute)
		c, err := schedule.Parse(minuteCron(m), "")
		require.NoError(t, err)
		assert.True(t, c.Next(now).Equal(m), "%s: next %s, want %s", now, c.Next(now), m)
		_, due := c.Latest(now.Add(-24*time.Hour), now)
		assert.False(t, due, "%s: a tick in the day before", now)
		assert.True(t, c.Next(m).Sub(m) > 300*24*time.Hour, "%s: the next after m, %s", now, c.Next(m))

		c, err = schedule.Parse(idleCron(now), "")
		require.NoError(t, err)
		assert.True(t, c.Next(now).Sub(now) > 100*24*time.Hour, "%s: idle next %s", now, c.Next(now))
		_, due = c.Latest(now.Add(-24*time.Hour), now)
		assert.False(t, due, "%s: an idle tick in the day before", now)
	}
}

func TestEstimateSchedules(t *testing.T) {
	o := options{phases: "schedules", schedules: 1000, idleSchedules: 10000, steadyWindow: 30 * time.Second, memorySteps: []int{10000}}
	assert.Equal(t, "10000 idle schedules, 1000 firing on one minute", o.estimateNote())
	small := o
	small.schedules, small.idleSchedules = 50, 300
	assert.Greater(t, o.estimate(), small.estimate())
	assert.Greater(t, small.estimate(), setupCost)
}

func TestMedian(t *testing.T) {
	assert.Equal(t, 0.0, median(nil))
	assert.Equal(t, 1.3, median([]float64{1.3}))
	xs := []float64{1.36, 1.14, 1.18}
	assert.Equal(t, 1.18, median(xs))
	assert.Equal(t, []float64{1.36, 1.14, 1.18}, xs, "the rounds keep their order")
	assert.InDelta(t, 1.16, median([]float64{1.36, 1.14, 1.18, 1.02}), 1e-9)
}

func TestRoundRatios(t *testing.T) {
	res := func(wall time.Duration, apiMs float64) burstResult {
		return burstResult{allDone: wall, cpu: cpuSnapshot{"kube-apiserver": apiMs}} // seconds over 1000 runs: apiMs ms a run
	}
	b := &bench{}
	b.roundRatios(1000, []round{
		{burst: res(60*time.Second, 70), minimal: res(40*time.Second, 50)},                     // 1.50×, 1.40×
		{burst: res(55*time.Second, 60), minimal: res(50*time.Second, 55), minimalFirst: true}, // 1.10×, 1.09×
		{burst: res(50*time.Second, 52), minimal: res(45*time.Second, 50)},                     // 1.11×, 1.04×
	}, nil)
	require.Len(t, b.rows, 2)
	assert.Equal(t, "1.11×", b.rows[0].value, "the median round, not the first or the mean")
	assert.True(t, strings.HasPrefix(b.rows[0].note, "met; median of 3 rounds"), b.rows[0].note)
	assert.Contains(t, b.rows[0].note, "1: 1.50× (60.0 s / 40.0 s, burst first), 2: 1.10× (55.0 s / 50.0 s, minimal first)")
	assert.Equal(t, "1.09×", b.rows[1].value)
	assert.Contains(t, b.rows[1].note, "1: 1.40× (70.0 / 50.0 ms)")

	b = &bench{}
	b.roundRatios(1000, []round{{burst: res(60*time.Second, 70), minimal: res(40*time.Second, 50)}}, nil)
	assert.Equal(t, "1.50×", b.rows[0].value)
	assert.True(t, strings.HasPrefix(b.rows[0].note, "**missed**; one round"), b.rows[0].note)
}

func TestExtraRounds(t *testing.T) {
	o := options{phases: "burst", runs: 1000, baselines: "lifecycle,minimal,bare", rounds: 3}
	assert.Equal(t, 2, o.extraRounds())
	one := o
	one.rounds = 1
	assert.Greater(t, o.estimate(), one.estimate())
	assert.Contains(t, o.estimateNote(), "2 more rounds")
	o.baselines = "lifecycle,bare"
	assert.Equal(t, 0, o.extraRounds(), "rounds need the minimal client")
	assert.NotContains(t, o.estimateNote(), "more rounds")
}
