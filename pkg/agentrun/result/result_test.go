package result

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

const okJSON = `{"status":"success","response":"42","error":"","metrics":{"inputTokens":10,"outputTokens":5,"toolCalls":2,"durationMs":1500}}`

var okReport = Report{Status: "success", Response: "42", InputTokens: 10, OutputTokens: 5, ToolCalls: 2, DurationMs: 1500}

func marked(js string) string { return MarkerStart + js + MarkerEnd }

func TestParse(t *testing.T) {
	tests := map[string]struct {
		msg    string
		want   Report
		wantOK bool
	}{
		"object":                {msg: okJSON, want: okReport, wantOK: true},
		"surrounding space":     {msg: "\n\t " + okJSON + " \r\n", want: okReport, wantOK: true},
		"marker form":           {msg: marked(okJSON), want: okReport, wantOK: true},
		"marker in log tail":    {msg: "starting\nthinking...\n" + marked(okJSON) + "\nbye\n", want: okReport, wantOK: true},
		"empty":                 {msg: "", wantOK: false},
		"whitespace":            {msg: "  \n ", wantOK: false},
		"garbage":               {msg: "panic: runtime error: index out of range", wantOK: false},
		"invalid json":          {msg: `{"status":"success",`, wantOK: false},
		"json array":            {msg: `[1,2,3]`, wantOK: false},
		"json log line":         {msg: `{"level":"info","msg":"hello"}`, wantOK: false},
		"json log with status":  {msg: `{"level":"info","status":"200"}`, wantOK: false},
		"no status":             {msg: `{"response":"x"}`, wantOK: false},
		"status not a string":   {msg: `{"status":1,"response":"x"}`, wantOK: false},
		"status null":           {msg: `{"status":null,"response":"x"}`, wantOK: false},
		"error status":          {msg: `{"status":"error","error":"model unreachable"}`, want: Report{Status: "error", Error: "model unreachable"}, wantOK: true},
		"status case and space": {msg: `{"status":" SUCCESS ","response":"x"}`, want: Report{Status: "success", Response: "x"}, wantOK: true},
		"no metrics":            {msg: `{"status":"success","response":"x"}`, want: Report{Status: "success", Response: "x"}, wantOK: true},
		"null metrics":          {msg: `{"status":"success","metrics":null}`, want: Report{Status: "success"}, wantOK: true},
		"float metrics": {
			msg:    `{"status":"success","metrics":{"inputTokens":12.9,"outputTokens":1e3,"toolCalls":-0.5,"durationMs":2.5E2}}`,
			want:   Report{Status: "success", InputTokens: 12, OutputTokens: 1000, ToolCalls: 0, DurationMs: 250},
			wantOK: true,
		},
		"huge metrics clamp to int64": {
			msg:    `{"status":"success","metrics":{"inputTokens":99999999999999999999999,"outputTokens":-99999999999999999999999,"toolCalls":1e400,"durationMs":-1e400}}`,
			want:   Report{Status: "success", InputTokens: math.MaxInt64, OutputTokens: math.MinInt64, ToolCalls: math.MaxInt64, DurationMs: math.MinInt64},
			wantOK: true,
		},
		"metrics as strings and junk": {
			msg:    `{"status":"success","metrics":{"inputTokens":"7","outputTokens":"x","toolCalls":true,"durationMs":{"a":1}}}`,
			want:   Report{Status: "success", InputTokens: 7},
			wantOK: true,
		},
		"metrics not an object": {msg: `{"status":"success","metrics":5}`, wantOK: false},
		"response not a string": {
			msg:    `{"status":"error","response":{"a":[1,2]},"error":{"code":500}}`,
			want:   Report{Status: "error", Response: `{"a":[1,2]}`, Error: `{"code":500}`},
			wantOK: true,
		},
		"null strings": {msg: `{"status":"success","response":null,"error":null}`, want: Report{Status: "success"}, wantOK: true},
		"nested braces and escaped quotes": {
			msg:    `{"status":"success","response":"code: func f() { return \"}\" } and \\\" {{"}`,
			want:   Report{Status: "success", Response: `code: func f() { return "}" } and \" {{`},
			wantOK: true,
		},
		"unicode escapes": {msg: `{"status":"success","response":"\u017c\u00f3\u0142w \ud83d\ude00"}`, want: Report{Status: "success", Response: "żółw 😀"}, wantOK: true},
		"extra fields ignored": {
			msg:    `{"status":"success","response":"x","model":"gpt","metrics":{"inputTokens":1,"cost":0.2}}`,
			want:   Report{Status: "success", Response: "x", InputTokens: 1},
			wantOK: true,
		},
		"object then junk falls back to markers": {msg: okJSON + " trailing", wantOK: false},
		"object then marker": {
			msg:    `{"level":"info"}` + "\n" + marked(`{"status":"error","error":"e"}`),
			want:   Report{Status: "error", Error: "e"},
			wantOK: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := Parse(tc.msg)
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFindMarker(t *testing.T) {
	first := marked(`{"status":"error","error":"first"}`)
	second := marked(`{"status":"success","response":"second"}`)
	tests := map[string]struct {
		tail   string
		want   Report
		wantOK bool
	}{
		"none":          {tail: "just logs\n", wantOK: false},
		"empty":         {tail: "", wantOK: false},
		"single":        {tail: "a\n" + marked(okJSON) + "\n", want: okReport, wantOK: true},
		"crlf":          {tail: "a\r\n" + MarkerStart + " \r\n" + okJSON + "\r\n" + MarkerEnd + "\r\n", want: okReport, wantOK: true},
		"last wins":     {tail: first + "\n" + second + "\n", want: Report{Status: "success", Response: "second"}, wantOK: true},
		"last wins rev": {tail: second + "\n" + first + "\n", want: Report{Status: "error", Error: "first"}, wantOK: true},
		"truncated last marker skipped": {
			tail:   first + "\n" + MarkerStart + `{"status":"success","response":"cut off`,
			want:   Report{Status: "error", Error: "first"},
			wantOK: true,
		},
		"missing end skipped": {
			tail:   first + "\n" + MarkerStart + `{"status":"success"}` + "\n",
			want:   Report{Status: "error", Error: "first"},
			wantOK: true,
		},
		"tail starts mid marker": {
			tail:   `ULT__{"status":"success","response":"old"}` + MarkerEnd + "\nmore\n",
			wantOK: false,
		},
		"tail starts mid json": {
			tail:   `sponse":"old"}` + MarkerEnd + "\n" + second,
			want:   Report{Status: "success", Response: "second"},
			wantOK: true,
		},
		"end marker inside response": {
			tail:   marked(`{"status":"success","response":"see ` + MarkerEnd + ` here"}`),
			want:   Report{Status: "success", Response: "see " + MarkerEnd + " here"},
			wantOK: true,
		},
		"start marker inside response": {
			tail:   marked(`{"status":"success","response":"print ` + MarkerStart + `{} please"}`),
			want:   Report{Status: "success", Response: "print " + MarkerStart + "{} please"},
			wantOK: true,
		},
		"nested braces": {
			tail:   marked(`{"status":"success","response":"{\"a\":{\"b\":[1,{}]}}","metrics":{"toolCalls":3}}`),
			want:   Report{Status: "success", Response: `{"a":{"b":[1,{}]}}`, ToolCalls: 3},
			wantOK: true,
		},
		"invalid json between markers skipped": {
			tail:   first + "\n" + marked(`{"status":"success",}`),
			want:   Report{Status: "error", Error: "first"},
			wantOK: true,
		},
		"non-report json skipped": {
			tail:   first + "\n" + marked(`{"hello":"world"}`),
			want:   Report{Status: "error", Error: "first"},
			wantOK: true,
		},
		"marker without json": {tail: MarkerStart + MarkerEnd, wantOK: false},
		"unbalanced closers":  {tail: MarkerStart + `}}` + MarkerEnd, wantOK: false},
		"same line as text": {
			tail:   "INFO done " + marked(okJSON) + " exiting",
			want:   okReport,
			wantOK: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := FindMarker([]byte(tc.tail))
			assert.Equal(t, tc.wantOK, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestFindMarkerManyStartsIsBounded(t *testing.T) {
	// A valid marker followed by more start markers than FindMarker tries:
	// it gives up rather than scanning the whole tail again and again.
	tail := marked(okJSON) + strings.Repeat(MarkerStart+"{", maxMarkerAttempts+1)
	_, ok := FindMarker([]byte(tail))
	assert.False(t, ok)

	tail = marked(okJSON) + strings.Repeat(MarkerStart+"{", maxMarkerAttempts-1)
	got, ok := FindMarker([]byte(tail))
	assert.True(t, ok)
	assert.Equal(t, okReport, got)
}

func TestStatus(t *testing.T) {
	tests := map[string]struct {
		r    Report
		max  int
		want Outcome
	}{
		"plain": {
			r:   okReport,
			max: 100,
			want: Outcome{Result: "42", Usage: v1alpha1.TokenUsage{
				InputTokens: 10, OutputTokens: 5, TotalTokens: 15, ToolCalls: 2, DurationMs: 1500}},
		},
		"zero report": {r: Report{}, max: 10, want: Outcome{}},
		"exactly at bound": {
			r: Report{Response: "abcde"}, max: 5,
			want: Outcome{Result: "abcde"},
		},
		"cut ascii": {
			r: Report{Response: "abcdef"}, max: 5,
			want: Outcome{Result: "abcde", Truncated: true},
		},
		"cut on rune boundary": {
			// "ż" is 2 bytes, "😀" 4: a cut at 5 would split the emoji.
			r: Report{Response: "aż😀b"}, max: 5,
			want: Outcome{Result: "aż", Truncated: true},
		},
		"bound smaller than first rune": {
			r: Report{Response: "😀"}, max: 3,
			want: Outcome{Result: "", Truncated: true},
		},
		"default bound": {
			r: Report{Response: strings.Repeat("x", DefaultMaxResultBytes+1)}, max: 0,
			want: Outcome{Result: strings.Repeat("x", DefaultMaxResultBytes), Truncated: true},
		},
		"negative bound means default": {
			r: Report{Response: strings.Repeat("x", DefaultMaxResultBytes)}, max: -1,
			want: Outcome{Result: strings.Repeat("x", DefaultMaxResultBytes)},
		},
		"error bounded": {
			r: Report{Error: strings.Repeat("é", MaxErrorBytes)}, max: 10,
			want: Outcome{Error: strings.Repeat("é", MaxErrorBytes/2)},
		},
		"invalid utf8 replaced": {
			r: Report{Response: "a\xffb", Error: "\xc3"}, max: 10,
			want: Outcome{Result: "a\uFFFDb", Error: "\uFFFD"},
		},
		"negative metrics": {
			r:    Report{InputTokens: -1, OutputTokens: -5, ToolCalls: -2, DurationMs: math.MinInt64},
			max:  10,
			want: Outcome{},
		},
		"absurd metrics clamped without overflow": {
			r:   Report{InputTokens: math.MaxInt64, OutputTokens: math.MaxInt64, ToolCalls: math.MaxInt64, DurationMs: math.MaxInt64},
			max: 10,
			want: Outcome{Usage: v1alpha1.TokenUsage{
				InputTokens: MaxTokens, OutputTokens: MaxTokens, TotalTokens: 2 * MaxTokens,
				ToolCalls: MaxToolCalls, DurationMs: MaxDurationMs}},
		},
		"at the maxima": {
			r:   Report{InputTokens: MaxTokens, OutputTokens: 0, ToolCalls: MaxToolCalls, DurationMs: MaxDurationMs},
			max: 10,
			want: Outcome{Usage: v1alpha1.TokenUsage{
				InputTokens: MaxTokens, TotalTokens: MaxTokens, ToolCalls: MaxToolCalls, DurationMs: MaxDurationMs}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, Status(tc.r, tc.max))
		})
	}
}

func TestBoundsConstants(t *testing.T) {
	assert.Equal(t, 16384, DefaultMaxResultBytes)
	assert.Equal(t, 4096, MaxErrorBytes)
	assert.Equal(t, int64(2_592_000_000), MaxDurationMs)
	assert.Equal(t, 65536, LogTailBytes)
}

func TestTruncate(t *testing.T) {
	for _, s := range []string{"", "abc", "żółć", "😀😀😀", "a\xff\xfeb", strings.Repeat("語", 100)} {
		for n := -1; n <= len(s)+4; n++ {
			got, cut := Truncate(s, n)
			require.True(t, utf8.ValidString(got), "Truncate(%q,%d)=%q", s, n, got)
			assert.LessOrEqual(t, len(got), max(n, 0))
			valid := strings.ToValidUTF8(s, "\uFFFD")
			assert.True(t, strings.HasPrefix(valid, got))
			assert.Equal(t, len(valid) > max(n, 0), cut)
			if cut {
				// the longest valid prefix: one more rune would not fit
				_, size := utf8.DecodeRuneInString(valid[len(got):])
				assert.Greater(t, len(got)+size, n)
			}
		}
	}
}

// A report written by a real agent round-trips through Status.
func TestParseThenStatus(t *testing.T) {
	r, ok := Parse(marked(`{"status":"success","response":"` + strings.Repeat("ą", 20) + `","metrics":{"inputTokens":3,"outputTokens":4}}`))
	require.True(t, ok)
	o := Status(r, 9)
	assert.Equal(t, "ąąąą", o.Result)
	assert.True(t, o.Truncated)
	assert.Equal(t, int64(7), o.Usage.TotalTokens)
}
