//go:build tools

// Package hack pins k8s.io/code-generator in go.mod: hack/update-codegen.sh
// sources kube_codegen.sh from that module's directory.
package hack

import _ "k8s.io/code-generator"
