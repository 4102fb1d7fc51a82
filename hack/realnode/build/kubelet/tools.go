//go:build tools

// Package tools records the Kubernetes command this module builds, so that
// `go mod tidy` keeps its dependencies. The package is never compiled.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
