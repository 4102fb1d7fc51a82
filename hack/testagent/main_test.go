package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadAnnotations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "annotations")
	// The downward API's rendering: key="value", values quoted as Go does.
	content := `sympozium.ai/agent-run="r1"
sympozium.ai/env="{\"SIM_DURATION\":\"2s\",\"SIM_MESSAGE\":\"{\\\"status\\\":\\\"success\\\"}\"}"
sympozium.ai/task="Check the\ncluster"
`
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readAnnotations(path)
	if got["sympozium.ai/task"] != "Check the\ncluster" {
		t.Errorf("task %q", got["sympozium.ai/task"])
	}
	if got["sympozium.ai/env"] != `{"SIM_DURATION":"2s","SIM_MESSAGE":"{\"status\":\"success\"}"}` {
		t.Errorf("env %q", got["sympozium.ai/env"])
	}
	if len(readAnnotations(filepath.Join(t.TempDir(), "none"))) != 0 {
		t.Error("a missing file has annotations")
	}
}

func TestServerPod(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	t.Setenv("AGENT_RUN_ID", "")
	if serverPod() {
		t.Error("no run: not a server")
	}
	t.Setenv("AGENT_RUN_ID", host)
	if serverPod() {
		t.Errorf("hostname %s is the run's own name, not its server's pod", host)
	}
}
