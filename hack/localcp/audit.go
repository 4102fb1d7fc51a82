package localcp

import (
	"bufio"
	"encoding/json"
	"os"
)

// AuditEvent is the part of an audit.k8s.io/v1 Event (logged at Metadata
// level with Options.AuditLog) that the tests and the benchmark read.
type AuditEvent struct {
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef      *AuditObjectRef `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// AuditObjectRef is the resource a request was about.
type AuditObjectRef struct {
	APIGroup    string `json:"apiGroup"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
}

// Code is the response's status code, 0 when none was recorded.
func (ev *AuditEvent) Code() int {
	if ev.ResponseStatus == nil {
		return 0
	}
	return ev.ResponseStatus.Code
}

// ReadAuditLog calls fn, in order, for every completed request on a resource
// (stage ResponseComplete, objectRef set) of the audit log at path; discovery
// and other non-resource requests are skipped, and so are lines that do not
// parse.
func ReadAuditLog(path string, fn func(*AuditEvent)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		if ev.Stage != "ResponseComplete" || ev.ObjectRef == nil {
			continue
		}
		fn(&ev)
	}
	return sc.Err()
}
