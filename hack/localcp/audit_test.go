package localcp

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadAuditLogKeepsCompletedResourceRequests(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	lines := `{"stage":"RequestReceived","verb":"create","objectRef":{"resource":"jobs","namespace":"ns","name":"a"}}
{"stage":"ResponseComplete","verb":"get","requestURI":"/apis"}
not json
{"stage":"ResponseComplete","verb":"create","user":{"username":"sa"},"objectRef":{"apiGroup":"batch","resource":"jobs","namespace":"ns","name":"a"},"responseStatus":{"code":201}}
{"stage":"ResponseComplete","verb":"update","objectRef":{"resource":"agentruns","subresource":"status","namespace":"ns","name":"a"}}
`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []AuditEvent
	if err := ReadAuditLog(path, func(ev *AuditEvent) { got = append(got, *ev) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d events, want the 2 completed resource requests: %+v", len(got), got)
	}
	if ev := got[0]; ev.Verb != "create" || ev.User.Username != "sa" || ev.ObjectRef.APIGroup != "batch" || ev.ObjectRef.Name != "a" || ev.Code() != 201 {
		t.Errorf("first event %+v", ev)
	}
	if ev := got[1]; ev.ObjectRef.Subresource != "status" || ev.Code() != 0 {
		t.Errorf("second event %+v, want subresource status and no code", ev)
	}
	if err := ReadAuditLog(filepath.Join(t.TempDir(), "missing"), func(*AuditEvent) {}); err == nil {
		t.Error("a missing log is not an error")
	}
}
