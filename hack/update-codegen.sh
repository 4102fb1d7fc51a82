#!/usr/bin/env bash
# Regenerates everything derived from pkg/apis: deepcopy and register code,
# the typed clientset (with fake), listers and informers under pkg/generated,
# and the CRD schemas under manifests/crds.
set -o errexit -o nounset -o pipefail

SCRIPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${SCRIPT_ROOT}"
export GOTOOLCHAIN=local
THIS_PKG=$(go list -m)
CODEGEN_PKG=${CODEGEN_PKG:-$(go list -m -f '{{.Dir}}' k8s.io/code-generator)}
if [[ -z "${CODEGEN_PKG}" || ! -f "${CODEGEN_PKG}/kube_codegen.sh" ]]; then
	go mod download k8s.io/code-generator
	CODEGEN_PKG=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
fi
# shellcheck disable=SC1091
source "${CODEGEN_PKG}/kube_codegen.sh"

LINT="known-tags-only,require-explicit-disablement"
BP="${SCRIPT_ROOT}/hack/boilerplate.go.txt"

kube::codegen::gen_helpers --boilerplate "${BP}" --lint-rules "${LINT}" "${SCRIPT_ROOT}/pkg/apis"
kube::codegen::gen_register --boilerplate "${BP}" --lint-rules "${LINT}" "${SCRIPT_ROOT}/pkg/apis"
kube::codegen::gen_client \
	--with-watch \
	--output-dir "${SCRIPT_ROOT}/pkg/generated" \
	--output-pkg "${THIS_PKG}/pkg/generated" \
	--boilerplate "${BP}" --lint-rules "${LINT}" \
	"${SCRIPT_ROOT}/pkg/apis"

# CRDs: controller-gen, pinned in hack/tools/go.mod, reads the +kubebuilder
# markers of pkg/apis, so the schemas cannot drift from the Go types.
CONTROLLER_GEN=("go" "run" "-modfile=${SCRIPT_ROOT}/hack/tools/go.mod" "sigs.k8s.io/controller-tools/cmd/controller-gen")
rm -f "${SCRIPT_ROOT}"/manifests/crds/sympozium.ai_*.yaml
"${CONTROLLER_GEN[@]}" crd:crdVersions=v1 paths=./pkg/apis/... output:crd:artifacts:config=manifests/crds
