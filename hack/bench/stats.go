package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sympozium-ai/sympozium-controller/hack/localcp"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type metricSet []sample

// parseMetrics reads the Prometheus text exposition format (no timestamps,
// no exemplars: what client_golang's handler writes).
func parseMetrics(r io.Reader) (metricSet, error) {
	var out metricSet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			s.name = line[:i]
			rest = line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			end, err := parseLabels(rest[1:], s.labels)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
			rest = rest[1+end:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels parses `k="v",...}` into m and returns the index just past '}'.
func parseLabels(s string, m map[string]string) (int, error) {
	i := 0
	for {
		for i < len(s) && (s[i] == ',' || s[i] == ' ') {
			i++
		}
		if i < len(s) && s[i] == '}' {
			return i + 1, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return 0, fmt.Errorf("bad labels")
		}
		key := s[i : i+eq]
		i += eq + 2
		var val strings.Builder
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return 0, fmt.Errorf("unterminated label value")
		}
		i++ // closing quote
		m[key] = val.String()
	}
}

func (ms metricSet) match(name string, want map[string]string) []sample {
	var out []sample
	for _, s := range ms {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

func (ms metricSet) sum(name string, want map[string]string) float64 {
	t := 0.0
	for _, s := range ms.match(name, want) {
		t += s.value
	}
	return t
}

// apiCounts sums sympozium_api_requests_total by verb/resource[/subresource].
func (ms metricSet) apiCounts() map[string]float64 {
	out := map[string]float64{}
	for _, s := range ms.match("sympozium_api_requests_total", nil) {
		out[requestKey(s.labels["verb"], s.labels["resource"], s.labels["subresource"])] += s.value
	}
	return out
}

func requestKey(verb, resource, sub string) string {
	k := verb + " " + resource
	if sub != "" {
		k += "/" + sub
	}
	return k
}

func isWrite(key string) bool {
	verb, _, _ := strings.Cut(key, " ")
	switch verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

func isEvents(key string) bool {
	_, res, _ := strings.Cut(key, " ")
	return res == "events"
}

func diffCounts(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// histogram is a cumulative Prometheus histogram: upper bounds and counts.
type histogram struct {
	le     []float64
	counts []float64
}

func (ms metricSet) histogram(name string, want map[string]string) histogram {
	var h histogram
	type b struct{ le, n float64 }
	var bs []b
	for _, s := range ms.match(name+"_bucket", want) {
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		bs = append(bs, b{le, s.value})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	for _, x := range bs {
		h.le = append(h.le, x.le)
		h.counts = append(h.counts, x.n)
	}
	return h
}

func (h histogram) minus(o histogram) histogram {
	d := histogram{le: h.le, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		d.counts[i] = h.counts[i]
		if i < len(o.counts) {
			d.counts[i] -= o.counts[i]
		}
	}
	return d
}

func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile interpolates linearly inside the bucket, as Prometheus'
// histogram_quantile does; the answer is only as fine as the buckets.
func (h histogram) quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return math.NaN()
	}
	rank := q * n
	lower, prev := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if math.IsInf(h.le[i], 1) {
				return lower
			}
			if c == prev {
				return h.le[i]
			}
			return lower + (h.le[i]-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = h.le[i], c
	}
	return lower
}

// bucketOf returns the bounds of the bucket holding quantile q.
func (h histogram) bucketOf(q float64) (lo, hi float64) {
	rank := q * h.total()
	lo = 0
	for i, c := range h.counts {
		if c >= rank {
			return lo, h.le[i]
		}
		lo = h.le[i]
	}
	return lo, math.Inf(1)
}

// durations is a set of measured latencies.
type durations []time.Duration

func (d durations) quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

func (d durations) pcts() string {
	if len(d) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s / %s / %s", ms(d.quantile(0.5)), ms(d.quantile(0.9)), ms(d.quantile(0.99)))
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

// auditCounts counts the completed requests of the audit log that match
// keep, by verb/resource[/subresource].
func auditCounts(path string, keep func(*localcp.AuditEvent) bool) (map[string]float64, error) {
	out := map[string]float64{}
	err := localcp.ReadAuditLog(path, func(ev *localcp.AuditEvent) {
		if keep(ev) {
			out[requestKey(ev.Verb, ev.ObjectRef.Resource, ev.ObjectRef.Subresource)]++
		}
	})
	return out, err
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
