package main

import "testing"

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"sympozium-controller:dev":                    "docker.io/library/sympozium-controller:dev",
		"sympozium-ai/sympozium-controller:dev":       "docker.io/sympozium-ai/sympozium-controller:dev",
		"ghcr.io/sympozium-ai/sympozium-controller:1": "ghcr.io/sympozium-ai/sympozium-controller:1",
		"localhost/sympozium/testagent:dev":           "localhost/sympozium/testagent:dev",
		"registry:5000/x:1":                           "registry:5000/x:1",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
