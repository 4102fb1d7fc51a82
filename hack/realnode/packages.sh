#!/usr/bin/env bash
# Installs the Debian packages a real node needs (containerd, runc, the CNI
# plugins, iptables), each only when it is missing, and says which it installs.
# Run as root. Exit codes: 0 installed or present; 2 cannot install (not root,
# no apt-get, the package mirror unreachable), with the reason on stderr.
set -o errexit -o nounset -o pipefail

log() { echo "realnode/packages: $*" >&2; }

# package -> a file it provides (what the node uses from it)
declare -A PROVIDES=(
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iptables]=/usr/sbin/iptables
)

missing=()
for pkg in containerd runc containernetworking-plugins iptables; do
  if [[ ! -x "${PROVIDES[$pkg]}" ]]; then
    missing+=("${pkg}")
  fi
done
if ((${#missing[@]} == 0)); then
  log "containerd, runc, containernetworking-plugins and iptables are installed"
  exit 0
fi

if [[ $(id -u) != 0 ]]; then
  log "missing ${missing[*]}, and only root can install them: run as root, or install them first (apt-get install containerd runc containernetworking-plugins iptables)"
  exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "missing ${missing[*]} and there is no apt-get: install them with the system's package manager (a Debian or Ubuntu machine is what the harness knows)"
  exit 2
fi

log "installing ${missing[*]} with apt-get (Debian packages, about 240 MB; once per machine)"
start=${EPOCHREALTIME}
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >&2; then
  log "apt-get update failed: the package mirror is unreachable from this machine (see the lines above); install ${missing[*]} by hand"
  exit 2
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
  log "apt-get install ${missing[*]} failed (see the lines above)"
  exit 2
fi
for pkg in "${missing[@]}"; do
  if [[ ! -x "${PROVIDES[$pkg]}" ]]; then
    log "${pkg} is installed but ${PROVIDES[$pkg]} is missing"
    exit 2
  fi
done
log "installed ${missing[*]} in $(awk -v s="${start}" -v e="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", e - s }')s"
