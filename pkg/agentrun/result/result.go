// Package result reads the report an agent leaves when it finishes and
// turns it into the bounded, sanitised values the controller writes to an
// AgentRun's status.
//
// The agent writes one JSON object
//
//	{"status":"success"|"error","response":"…","error":"…",
//	 "metrics":{"inputTokens":N,"outputTokens":N,"toolCalls":N,"durationMs":N}}
//
// to its termination message. Older runners print it to stdout instead, as
// one line __SYMPOZIUM_RESULT__<json>__SYMPOZIUM_END__, which the controller
// finds in the termination message (policy FallbackToLogsOnError puts the
// log tail there when the agent wrote no message) or in a bounded tail of
// the agent container's log.
//
// Everything in a report is untrusted: parsing never fails on odd numbers,
// and Status clamps and bounds every value.
package result

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sympozium-ai/sympozium-controller/pkg/apis/sympozium/v1alpha1"
)

// Markers around a report printed to stdout by older agent runners.
const (
	MarkerStart = "__SYMPOZIUM_RESULT__"
	MarkerEnd   = "__SYMPOZIUM_END__"
)

// Report statuses.
const (
	StatusSuccess = "success"
	StatusError   = "error"
)

// Bounds applied by Status.
const (
	// DefaultMaxResultBytes bounds status.result when the caller gives no
	// (positive) bound.
	DefaultMaxResultBytes = 16 * 1024
	// MaxErrorBytes bounds the error the agent reported.
	MaxErrorBytes = 4 * 1024
	// MaxTokens bounds each token count.
	MaxTokens int64 = 1_000_000_000_000
	// MaxToolCalls bounds the number of tool calls.
	MaxToolCalls int64 = 1_000_000_000
	// MaxDurationMs bounds the reported duration: 30 days.
	MaxDurationMs int64 = 30 * 24 * 60 * 60 * 1000
)

// LogTailBytes is how much of the end of the agent container's log callers
// should read (PodLogOptions.LimitBytes) to look for a marker.
const LogTailBytes = 64 * 1024

// maxMarkerAttempts bounds how many marker starts FindMarker tries, from the
// last one backwards, so that a log full of start markers costs little.
const maxMarkerAttempts = 64

// Report is what the agent reported, as parsed: numbers are clamped only to
// the int64 range and strings are not bounded (see Status).
type Report struct {
	Status   string // "success" or "error", lower case
	Response string
	Error    string

	InputTokens  int64
	OutputTokens int64
	ToolCalls    int64
	DurationMs   int64
}

// Outcome is a Report made fit for an AgentRun's status.
type Outcome struct {
	// Result is the response, cut on a UTF-8 boundary to the bound.
	Result string
	// Truncated is true when Result was cut.
	Truncated bool
	// Error is the reported error, bounded by MaxErrorBytes.
	Error string
	// Usage holds the metrics, each clamped to [0, its maximum];
	// TotalTokens = InputTokens + OutputTokens.
	Usage v1alpha1.TokenUsage
}

// Parse reads a termination message. The message is normally the report
// object itself (surrounding whitespace allowed). When it is not, for
// example because Kubernetes put the tail of the log there
// (FallbackToLogsOnError), Parse returns the last complete marker in it, as
// FindMarker does. ok is false when the message holds no report.
//
// An object is a report only when its "status" is "success" or "error"
// (in any case), so that a JSON log line is not mistaken for one.
func Parse(message string) (Report, bool) {
	trimmed := strings.TrimSpace(message)
	if strings.HasPrefix(trimmed, "{") {
		if r, ok := decodeWhole([]byte(trimmed)); ok {
			return r, true
		}
	}
	return FindMarker([]byte(message))
}

// FindMarker returns the report of the last complete
// __SYMPOZIUM_RESULT__<json>__SYMPOZIUM_END__ in logTail. A tail read with
// a byte limit may start in the middle of a line and end in the middle of
// one: an incomplete marker, or one whose JSON is not a report, is skipped
// and the one before it is tried. Whitespace (including "\r\n") is allowed
// around the JSON. A marker string inside the JSON's strings does not
// confuse it.
func FindMarker(logTail []byte) (Report, bool) {
	end := len(logTail)
	for range maxMarkerAttempts {
		i := bytes.LastIndex(logTail[:end], []byte(MarkerStart))
		if i < 0 {
			break
		}
		if r, ok := decodeMarked(logTail[i+len(MarkerStart):]); ok {
			return r, true
		}
		end = i
	}
	return Report{}, false
}

// decodeMarked decodes one report object at the start of b (after optional
// whitespace) that is followed, after optional whitespace, by MarkerEnd.
func decodeMarked(b []byte) (Report, bool) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return Report{}, false
	}
	n, ok := objectEnd(b)
	if !ok {
		return Report{}, false
	}
	rest := bytes.TrimLeft(b[n:], " \t\r\n")
	if !bytes.HasPrefix(rest, []byte(MarkerEnd)) {
		return Report{}, false
	}
	return decodeWhole(b[:n])
}

// objectEnd returns the length of the JSON object that starts at b[0]: it
// tracks nesting and strings (with their escapes) without validating the
// rest of the JSON. ok is false when the object does not end within b.
func objectEnd(b []byte) (int, bool) {
	depth := 0
	inString, escaped := false, false
	for i, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
			if depth < 0 {
				return 0, false
			}
		}
	}
	return 0, false
}

// wire is the report as sent; every field tolerates odd types.
type wire struct {
	Status   *flexString `json:"status"`
	Response flexString  `json:"response"`
	Error    flexString  `json:"error"`
	Metrics  *struct {
		InputTokens  flexInt `json:"inputTokens"`
		OutputTokens flexInt `json:"outputTokens"`
		ToolCalls    flexInt `json:"toolCalls"`
		DurationMs   flexInt `json:"durationMs"`
	} `json:"metrics"`
}

// decodeWhole decodes b, which must hold exactly one JSON object (and
// whitespace), as a report.
func decodeWhole(b []byte) (Report, bool) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Report{}, false
	}
	if w.Status == nil {
		return Report{}, false
	}
	status := strings.ToLower(strings.TrimSpace(string(*w.Status)))
	if status != StatusSuccess && status != StatusError {
		return Report{}, false
	}
	r := Report{Status: status, Response: string(w.Response), Error: string(w.Error)}
	if m := w.Metrics; m != nil {
		r.InputTokens = int64(m.InputTokens)
		r.OutputTokens = int64(m.OutputTokens)
		r.ToolCalls = int64(m.ToolCalls)
		r.DurationMs = int64(m.DurationMs)
	}
	return r, true
}

// flexString takes a JSON string as is, null as "", and any other value as
// its JSON text (an error given as an object stays readable).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	default:
		*s = flexString(b)
	}
	return nil
}

// flexInt takes an integer, a float (truncated toward zero), a number out of
// the int64 range (clamped to it) or such a number in a string; anything
// else counts as 0. It never fails.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			*n = 0
			return nil
		}
		s = strings.TrimSpace(s)
	}
	*n = flexInt(parseClamped(s))
	return nil
}

// parseClamped parses a decimal integer or float, clamping it to the int64
// range; it returns 0 for anything else, including NaN.
func parseClamped(s string) int64 {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !isRangeErr(err) {
		return 0
	}
	switch {
	case math.IsNaN(f):
		return 0
	case f >= math.MaxInt64: // float64(MaxInt64) rounds up to 2^63
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	default:
		return int64(f)
	}
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// Status bounds and sanitises a report for an AgentRun's status. Result is
// the response cut to maxResultBytes (DefaultMaxResultBytes when
// maxResultBytes <= 0) on a UTF-8 boundary; Error is cut to MaxErrorBytes;
// invalid UTF-8 becomes U+FFFD first. Each metric is clamped to
// [0, its maximum] and TotalTokens is their sum, which cannot overflow.
func Status(r Report, maxResultBytes int) Outcome {
	if maxResultBytes <= 0 {
		maxResultBytes = DefaultMaxResultBytes
	}
	res, truncated := Truncate(r.Response, maxResultBytes)
	errText, _ := Truncate(r.Error, MaxErrorBytes)
	in := clamp(r.InputTokens, MaxTokens)
	out := clamp(r.OutputTokens, MaxTokens)
	return Outcome{
		Result:    res,
		Truncated: truncated,
		Error:     errText,
		Usage: v1alpha1.TokenUsage{
			InputTokens:  in,
			OutputTokens: out,
			TotalTokens:  in + out,
			ToolCalls:    clamp(r.ToolCalls, MaxToolCalls),
			DurationMs:   clamp(r.DurationMs, MaxDurationMs),
		},
	}
}

// Truncate returns s as valid UTF-8 (invalid bytes become U+FFFD) and, when
// that is longer than maxBytes, cut to at most maxBytes on a rune boundary;
// cut reports whether it was cut. maxBytes < 0 counts as 0.
func Truncate(s string, maxBytes int) (out string, cut bool) {
	if maxBytes < 0 {
		maxBytes = 0
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
	}
	if len(s) <= maxBytes {
		return s, false
	}
	i := maxBytes
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}

func clamp(v, maxV int64) int64 {
	switch {
	case v < 0:
		return 0
	case v > maxV:
		return maxV
	default:
		return v
	}
}
