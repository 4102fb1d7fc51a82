#!/usr/bin/env bash
# Fails when the generated code or the CRD schemas are not what
# hack/update-codegen.sh makes from the current pkg/apis. It compares the
# tree before and after regenerating, so it works on a clean clone (CI) and
# on a work tree with uncommitted changes alike, and leaves the tree as it
# found it.
set -o errexit -o nounset -o pipefail

SCRIPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${SCRIPT_ROOT}"
GENERATED=(pkg/apis pkg/generated manifests/crds)

before=$(mktemp -d)
trap 'rm -rf "${before}"' EXIT
for d in "${GENERATED[@]}"; do
	mkdir -p "${before}/${d}"
	cp -a "${d}/." "${before}/${d}/"
done

"${SCRIPT_ROOT}/hack/update-codegen.sh"

status=0
for d in "${GENERATED[@]}"; do
	if ! diff -ru "${before}/${d}" "${d}"; then
		status=1
	fi
done
if [[ ${status} -ne 0 ]]; then
	# Put the tree back as it was.
	for d in "${GENERATED[@]}"; do
		rm -rf "${d}"
		mkdir -p "${d}"
		cp -a "${before}/${d}/." "${d}/"
	done
	echo "Generated code or CRDs are out of date: run make generate and commit the result" >&2
	exit 1
fi
echo "Generated code and CRDs are up to date"
