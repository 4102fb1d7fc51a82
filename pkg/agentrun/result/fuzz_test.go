package result

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		okJSON,
		marked(okJSON),
		"log\r\n" + marked(okJSON) + "\r\n",
		`{"status":"success","metrics":{"inputTokens":1e400,"outputTokens":-3,"toolCalls":"9","durationMs":1.5}}`,
		`{"status":"error","response":{"x":"}"},"error":"\"quoted\" {"}`,
		MarkerStart + `{"status":"success","response":"` + MarkerEnd + `"}` + MarkerEnd,
		MarkerStart + `{"status":"success"`,
		"\xff\xfe" + marked(`{"status":"success","response":"\xff"}`),
		strings.Repeat(MarkerStart+"{", 10),
	} {
		f.Add(seed, 16)
	}
	f.Fuzz(func(t *testing.T, msg string, maxBytes int) {
		r, ok := Parse(msg)
		r2, ok2 := Parse(msg)
		if ok != ok2 || r != r2 {
			t.Fatalf("Parse is not deterministic")
		}
		if !ok && r != (Report{}) {
			t.Fatalf("no report, yet %+v", r)
		}
		if ok && r.Status != StatusSuccess && r.Status != StatusError {
			t.Fatalf("status %q", r.Status)
		}
		if m, mok := FindMarker([]byte(msg)); mok && !ok {
			t.Fatalf("FindMarker found %+v where Parse found none", m)
		}
		checkOutcome(t, r, maxBytes)
	})
}

func checkOutcome(t *testing.T, r Report, maxBytes int) {
	t.Helper()
	o := Status(r, maxBytes)
	limit := maxBytes
	if limit <= 0 {
		limit = DefaultMaxResultBytes
	}
	if len(o.Result) > limit || !utf8.ValidString(o.Result) {
		t.Fatalf("result of %d bytes (limit %d), valid=%v", len(o.Result), limit, utf8.ValidString(o.Result))
	}
	if len(o.Error) > MaxErrorBytes || !utf8.ValidString(o.Error) {
		t.Fatalf("error of %d bytes", len(o.Error))
	}
	if o.Truncated != (len(strings.ToValidUTF8(r.Response, "\uFFFD")) > limit) {
		t.Fatalf("truncated=%v for a response of %d bytes, limit %d", o.Truncated, len(r.Response), limit)
	}
	u := o.Usage
	for _, c := range []struct{ v, max int64 }{
		{u.InputTokens, MaxTokens}, {u.OutputTokens, MaxTokens}, {u.ToolCalls, MaxToolCalls}, {u.DurationMs, MaxDurationMs},
	} {
		if c.v < 0 || c.v > c.max {
			t.Fatalf("usage out of bounds: %+v", u)
		}
	}
	if u.TotalTokens != u.InputTokens+u.OutputTokens || u.TotalTokens < 0 {
		t.Fatalf("total %d != %d + %d", u.TotalTokens, u.InputTokens, u.OutputTokens)
	}
}
