#!/usr/bin/env bash
# Builds the kubelet of the real node from the Go module pinned in
# hack/realnode/build/kubelet (k8s.io/kubernetes v1.37.2, the pin of
# hack/localcp/build/kube), into a cache directory keyed by a hash of that pin,
# this script and the Go toolchain. Its own key and lock: it never touches the
# hack/localcp cache. Says what it does every 30 s while it builds.
#
# Logs go to stderr; the last line of stdout is the bin directory, so callers can
# do: BIN=$(hack/realnode/build.sh | tail -n1)
#
# Environment:
#   SYMPOZIUM_REALNODE_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/sympozium-controller/realnode)
#   SYMPOZIUM_REALNODE_FORCE  if non-empty, rebuild even when the binary exists
set -o errexit -o nounset -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD="${HERE}/build/kubelet"

log() { echo "realnode/build: $*" >&2; }

# The Go toolchain named by the environment, never a downloaded one; no
# workspace; the committed go.sum is authoritative.
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

# Everything that decides the bytes of the binary goes into the key.
key_inputs() {
  local f
  for f in build.sh build/kubelet/go.mod build/kubelet/go.sum build/kubelet/tools.go; do
    printf '== %s\n' "$f"
    cat "${HERE}/${f}"
  done
  printf '== toolchain\n'
  go env GOVERSION GOOS GOARCH
}
HASH=$(key_inputs | sha256sum | cut -c1-16)

CACHE_ROOT="${SYMPOZIUM_REALNODE_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/sympozium-controller/realnode}"
BIN="${CACHE_ROOT}/${HASH}/bin"
NAME=kubelet
PKG=k8s.io/kubernetes/cmd/kubelet

if [[ -z "${SYMPOZIUM_REALNODE_FORCE:-}" && -x "${BIN}/${NAME}" ]]; then
  log "kubelet up to date in ${BIN}"
  echo "${BIN}"
  exit 0
fi

mkdir -p "${BIN}"
# Serialise concurrent builds of the same pin; whoever waited finds the
# binary built.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${CACHE_ROOT}/${HASH}/.lock"
  if ! flock -n 9; then
    log "another build of the same kubelet holds ${CACHE_ROOT}/${HASH}/.lock; waiting for it"
    flock 9
  fi
  if [[ -z "${SYMPOZIUM_REALNODE_FORCE:-}" && -x "${BIN}/${NAME}" ]]; then
    log "built by another process in ${BIN}"
    echo "${BIN}"
    exit 0
  fi
fi

KUBE_LDFLAGS="-X k8s.io/component-base/version.gitVersion=v1.37.2"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=37"
KUBE_LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"

log "kubelet: building ${PKG} (the first time about 10 minutes on 2 cores, less after hack/localcp's build; cached afterwards)"
start=${SECONDS}
(
  while sleep 30; do
    log "still building the kubelet, $((SECONDS - start))s so far"
  done
) &
ticker=$!
trap 'kill "${ticker}" 2>/dev/null || true' EXIT
t0=${EPOCHREALTIME}
(cd "${BUILD}" && go build -trimpath -ldflags "${KUBE_LDFLAGS}" -o "${BIN}/.${NAME}.tmp" "${PKG}")
mv -f "${BIN}/.${NAME}.tmp" "${BIN}/${NAME}"
log "kubelet: built in $(awk -v s="${t0}" -v e="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", e - s }')s: ${BIN}"
echo "${BIN}"
