#!/usr/bin/env bash
# Makes sure prometheus and promtool are installed, from Debian's
# `prometheus` package (the monitoring mixin's tests and its end-to-end test
# use both), and prints the directory that holds them.
#
#   hack/prometheus.sh          install when missing, then print the directory
#
# PROMETHEUS_BIN_DIR, when set, is used as is (a Prometheus of your own);
# otherwise the binaries are looked up on PATH and in /usr/bin. The package's
# service is never started: the tests run their own Prometheus on loopback.
set -o errexit -o nounset -o pipefail

have() { [[ -x "$1/prometheus" && -x "$1/promtool" ]]; }

if [[ -n "${PROMETHEUS_BIN_DIR:-}" ]]; then
	if ! have "${PROMETHEUS_BIN_DIR}"; then
		echo "prometheus.sh: no prometheus and promtool in PROMETHEUS_BIN_DIR=${PROMETHEUS_BIN_DIR}" >&2
		exit 1
	fi
	echo "${PROMETHEUS_BIN_DIR}"
	exit 0
fi
for d in "$(dirname "$(command -v promtool 2>/dev/null || echo /nonexistent/x)")" /usr/bin; do
	if have "${d}"; then
		echo "${d}"
		exit 0
	fi
done

if ! command -v apt-get >/dev/null; then
	echo "prometheus.sh: prometheus and promtool are missing and there is no apt-get: install Prometheus 2.x and set PROMETHEUS_BIN_DIR" >&2
	exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	sudo=(sudo)
fi
# One install at a time (go test runs packages in parallel, and two of them
# use this script): the second waits, then finds the binaries.
exec 9>"${TMPDIR:-/tmp}/sympozium-prometheus-install.lock"
if command -v flock >/dev/null; then
	flock 9
fi
if have /usr/bin; then
	echo /usr/bin
	exit 0
fi
echo "prometheus.sh: installing Debian's prometheus package (prometheus, promtool)" >&2
# No service start in a container or on CI: policy-rc.d refuses it for the
# length of the install only when we wrote it.
policy=/usr/sbin/policy-rc.d
wrote_policy=0
if [[ ! -e "${policy}" ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "${policy}" >/dev/null
	"${sudo[@]}" chmod +x "${policy}"
	wrote_policy=1
fi
cleanup() { if [[ ${wrote_policy} -eq 1 ]]; then "${sudo[@]}" rm -f "${policy}"; fi; }
trap cleanup EXIT
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >&2
if ! have /usr/bin; then
	echo "prometheus.sh: the prometheus package did not install /usr/bin/prometheus and /usr/bin/promtool" >&2
	exit 1
fi
echo /usr/bin
