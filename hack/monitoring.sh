#!/usr/bin/env bash
# The monitoring mixin (manifests/monitoring/):
#
#   hack/monitoring.sh generate   rewrite prometheusrule.yaml from rules/*.yaml
#   hack/monitoring.sh check      prometheusrule.yaml up to date, then promtool
#                                 check rules and test rules (promtool from
#                                 Debian's prometheus package: hack/prometheus.sh)
#
# pkg/metrics/mixin_test.go runs the check as part of go test.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${ROOT}/manifests/monitoring

# render prints the PrometheusRule: the groups of the rule files, in order,
# indented under spec.
render() {
	cat <<'HDR'
# Generated from rules/recording.yaml and rules/alerts.yaml by
# hack/monitoring.sh generate: the same groups, for the Prometheus Operator.
# Edit those files, not this one (hack/monitoring.sh check fails when they
# disagree).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: sympozium-controller
  namespace: sympozium-system
  labels:
    app.kubernetes.io/name: sympozium-controller
spec:
  groups:
HDR
	local f
	for f in "${DIR}/rules/recording.yaml" "${DIR}/rules/alerts.yaml"; do
		# Everything after the top-level "groups:" line, two spaces deeper.
		awk 'seen { print ($0 == "" ? "" : "  " $0) } /^groups:$/ { seen = 1 }' "${f}"
	done
}

case "${1:-}" in
generate)
	render >"${DIR}/prometheusrule.yaml"
	;;
check)
	if ! diff -u "${DIR}/prometheusrule.yaml" <(render); then
		echo "monitoring.sh: manifests/monitoring/prometheusrule.yaml is out of date: run hack/monitoring.sh generate" >&2
		exit 1
	fi
	bin=$("${ROOT}/hack/prometheus.sh")
	cd "${DIR}"
	"${bin}/promtool" check rules rules/recording.yaml rules/alerts.yaml
	"${bin}/promtool" test rules tests/*.test.yaml
	;;
*)
	echo "usage: $0 generate|check" >&2
	exit 2
	;;
esac
