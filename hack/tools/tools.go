//go:build tools

// Package tools pins the code generators that hack/ runs. It is a module of
// its own so that the generators' dependencies never enter the controller's
// go.mod.
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
