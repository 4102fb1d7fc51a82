#!/usr/bin/env bash
# Builds the agent-sandbox controller (kubernetes-sigs/agent-sandbox) from the
# Go module pinned in hack/agentsandbox/build, into a cache directory keyed by a
# hash of that pin, this script and the Go toolchain. Its own key and lock: it
# never touches the hack/localcp cache.
#
# Logs go to stderr; the last line of stdout is the bin directory, so callers can
# do: BIN=$(hack/agentsandbox/build.sh | tail -n1)
#
# Environment:
#   SYMPOZIUM_AGENTSANDBOX_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/sympozium-controller/agentsandbox)
#   SYMPOZIUM_AGENTSANDBOX_FORCE  if non-empty, rebuild even when the binary exists
set -o errexit -o nounset -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD="${HERE}/build"

log() { echo "agentsandbox/build: $*" >&2; }

# The Go toolchain named by the environment, never a downloaded one; no
# workspace; the committed go.sum is authoritative.
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

# Everything that decides the bytes of the binary goes into the key.
key_inputs() {
  local f
  for f in build.sh build/go.mod build/go.sum build/tools.go; do
    printf '== %s\n' "$f"
    cat "${HERE}/${f}"
  done
  printf '== toolchain\n'
  go env GOVERSION GOOS GOARCH
}
HASH=$(key_inputs | sha256sum | cut -c1-16)

CACHE_ROOT="${SYMPOZIUM_AGENTSANDBOX_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/sympozium-controller/agentsandbox}"
BIN="${CACHE_ROOT}/${HASH}/bin"
NAME=agent-sandbox-controller
PKG=sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller

if [[ -z "${SYMPOZIUM_AGENTSANDBOX_FORCE:-}" && -x "${BIN}/${NAME}" ]]; then
  log "binary up to date in ${BIN}"
  echo "${BIN}"
  exit 0
fi

mkdir -p "${BIN}"
# Serialise concurrent builds of the same pin (e.g. parallel test binaries);
# whoever waited finds the binary built.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${CACHE_ROOT}/${HASH}/.lock"
  flock 9
  if [[ -z "${SYMPOZIUM_AGENTSANDBOX_FORCE:-}" && -x "${BIN}/${NAME}" ]]; then
    log "built by another process in ${BIN}"
    echo "${BIN}"
    exit 0
  fi
fi

log "${NAME}: building ${PKG}"
start=${EPOCHREALTIME}
(cd "${BUILD}" && go build -trimpath -o "${BIN}/.${NAME}.tmp" "${PKG}")
mv -f "${BIN}/.${NAME}.tmp" "${BIN}/${NAME}"
log "${NAME}: built in $(awk -v s="${start}" -v e="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", e - s }')s: ${BIN}"
echo "${BIN}"
