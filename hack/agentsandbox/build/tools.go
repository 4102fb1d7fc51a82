//go:build tools

// Package tools records the agent-sandbox controller command this module
// builds (and pins the module whose k8s/crds/ the e2e suite installs), so that
// `go mod tidy` keeps its dependencies. The package is never compiled.
package tools

import (
	_ "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller"
)
