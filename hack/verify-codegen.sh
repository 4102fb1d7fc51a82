#!/usr/bin/env bash
# Fails when the generated code or the CRD schemas are not what
# hack/update-codegen.sh makes from the current pkg/apis.
set -o errexit -o nounset -o pipefail

SCRIPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${SCRIPT_ROOT}"
GENERATED=(pkg/apis pkg/generated manifests/crds)

"${SCRIPT_ROOT}/hack/update-codegen.sh"

if ! git diff --exit-code -- "${GENERATED[@]}"; then
	echo "Generated code or CRDs are out of date: run make generate and commit the result" >&2
	exit 1
fi
untracked=$(git status --porcelain --untracked-files=all -- "${GENERATED[@]}")
if [[ -n "${untracked}" ]]; then
	echo "Generated files are not committed:" >&2
	echo "${untracked}" >&2
	exit 1
fi
echo "Generated code and CRDs are up to date"
