#!/usr/bin/env bash
# Builds the binaries of the local test control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok) from the Go modules pinned in
# hack/localcp/build/{etcd,kube,kwok}, into a cache directory keyed by a hash of
# those pins, this script and the Go toolchain.
#
# Logs go to stderr; the last line of stdout is the bin directory, so callers can
# do: BIN=$(hack/localcp/build.sh | tail -n1)
#
# Environment:
#   SYMPOZIUM_LOCALCP_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/sympozium-controller/localcp)
#   SYMPOZIUM_LOCALCP_FORCE  if non-empty, rebuild even when the binaries exist
set -o errexit -o nounset -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD="${HERE}/build"

log() { echo "localcp/build: $*" >&2; }

# The Go toolchain named by the environment, never a downloaded one; no
# workspace; the committed go.sum files are authoritative.
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

# Everything that decides the bytes of the binaries goes into the key.
key_inputs() {
  local f
  for f in build.sh \
    build/etcd/go.mod build/etcd/go.sum build/etcd/main.go \
    build/kube/go.mod build/kube/go.sum build/kube/tools.go \
    build/kwok/go.mod build/kwok/go.sum build/kwok/tools.go; do
    printf '== %s\n' "$f"
    cat "${HERE}/${f}"
  done
  printf '== toolchain\n'
  go env GOVERSION GOOS GOARCH
}
HASH=$(key_inputs | sha256sum | cut -c1-16)

CACHE_ROOT="${SYMPOZIUM_LOCALCP_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/sympozium-controller/localcp}"
BIN="${CACHE_ROOT}/${HASH}/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

have_all() {
  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "${BIN}/${b}" ]] || return 1
  done
}

if [[ -z "${SYMPOZIUM_LOCALCP_FORCE:-}" ]] && have_all; then
  log "binaries up to date in ${BIN}"
  echo "${BIN}"
  exit 0
fi

mkdir -p "${BIN}"
# Serialise concurrent builds of the same pins (e.g. parallel test binaries).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${CACHE_ROOT}/${HASH}/.lock"
  flock 9
fi

KUBE_LDFLAGS="-X k8s.io/component-base/version.gitVersion=v1.37.2"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=37"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"

# build <name> <module dir> <ldflags> <package>
build() {
  local name=$1 dir=$2 ldflags=$3 pkg=$4 start end
  if [[ -z "${SYMPOZIUM_LOCALCP_FORCE:-}" && -x "${BIN}/${name}" ]]; then
    log "${name}: present"
    return
  fi
  log "${name}: building ${pkg}"
  start=${EPOCHREALTIME}
  (cd "${dir}" && go build -trimpath -ldflags "${ldflags}" -o "${BIN}/.${name}.tmp" "${pkg}")
  mv -f "${BIN}/.${name}.tmp" "${BIN}/${name}"
  end=${EPOCHREALTIME}
  log "${name}: built in $(awk -v s="${start}" -v e="${end}" 'BEGIN { printf "%.1f", e - s }')s"
}

total_start=${EPOCHREALTIME}
build etcd "${BUILD}/etcd" "" .
build kube-apiserver "${BUILD}/kube" "${KUBE_LDFLAGS}" k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager "${BUILD}/kube" "${KUBE_LDFLAGS}" k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler "${BUILD}/kube" "${KUBE_LDFLAGS}" k8s.io/kubernetes/cmd/kube-scheduler
build kwok "${BUILD}/kwok" "" sigs.k8s.io/kwok/cmd/kwok
log "all binaries ready in $(awk -v s="${total_start}" -v e="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", e - s }')s: ${BIN}"
echo "${BIN}"
