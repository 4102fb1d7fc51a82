#!/usr/bin/env bash
# The newcomer's command (make demo): on a fresh machine, build everything,
# start the embedded local control plane, install the CRDs and the RBAC of
# manifests/, run the controller as its own ServiceAccount (not as admin),
# submit a sample run and follow it until it finishes. Prints how long each
# step took. KEEP=1 leaves the control plane running afterwards.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
export GOTOOLCHAIN=local
DIR=${DEMO_DIR:-${ROOT}/.localcp/demo}
LOCALCP=("${ROOT}/bin/localcp")
CTL_PID=""

step_start=0
step() { step_start=${EPOCHREALTIME}; printf '\n==> %s\n' "$*"; }
done_step() { awk -v a="${step_start}" -v b="${EPOCHREALTIME}" 'BEGIN { printf "    done in %.1fs\n", b - a }'; }

cleanup() {
	if [[ -n "${CTL_PID}" ]] && kill -0 "${CTL_PID}" 2>/dev/null; then
		kill "${CTL_PID}" 2>/dev/null || true
		wait "${CTL_PID}" 2>/dev/null || true
	fi
	if [[ "${KEEP:-0}" != "1" ]]; then
		"${LOCALCP[@]}" down --dir "${DIR}" >/dev/null 2>&1 || true
	else
		printf '\nThe control plane keeps running: export KUBECONFIG=%s/kubeconfig; stop it with bin/localcp down --dir %s\n' "${DIR}" "${DIR}"
	fi
}
trap cleanup EXIT

command -v kubectl >/dev/null || { echo "demo: needs kubectl on PATH" >&2; exit 1; }

step "Building the controller and the control-plane launcher"
make -s build
go build -o bin/localcp ./hack/localcp/cmd/localcp
done_step

step "Building the control plane from pinned Go modules (first time about 8 minutes on 2 cores; cached afterwards)"
"${LOCALCP[@]}" build >/dev/null
done_step

step "Starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback"
"${LOCALCP[@]}" down --dir "${DIR}" >/dev/null 2>&1 || true
rm -rf "${DIR}"
"${LOCALCP[@]}" up --dir "${DIR}" --nodes 1 >/dev/null
export KUBECONFIG="${DIR}/kubeconfig"
kubectl() { command kubectl --cache-dir "${DIR}/kubectl-cache" "$@"; }
done_step

step "Installing the CRDs, namespace and RBAC from manifests/"
kubectl apply --server-side -f manifests/crds >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
kubectl apply -f manifests/namespace.yaml -f manifests/rbac/ >/dev/null
done_step

step "Running the controller as ServiceAccount sympozium-system/sympozium-controller"
TOKEN=$(kubectl -n sympozium-system create token sympozium-controller --duration=2h)
SERVER=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d > "${DIR}/ca.crt"
cat > "${DIR}/controller.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "${SERVER}", certificate-authority: "${DIR}/ca.crt"}}]
users: [{name: controller, user: {token: "${TOKEN}"}}]
contexts: [{name: controller, context: {cluster: local, user: controller}}]
current-context: controller
KCFG
bin/sympozium-controller --kubeconfig "${DIR}/controller.kubeconfig" \
	--leader-elect --leader-election-namespace sympozium-system \
	--agent-image registry.example/sympozium/agent-runner:demo \
	--metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
	> "${DIR}/controller.log" 2>&1 &
CTL_PID=$!
done_step

step "Submitting manifests/samples with kubectl (the simulated agent answers after 3s)"
kubectl create namespace demo >/dev/null
kubectl -n demo apply -f manifests/samples/instance.yaml -f manifests/samples/skillpack.yaml >/dev/null
kubectl -n demo wait --for=condition=Ready --timeout=60s skillpack/k8s-ops >/dev/null
# The sample run, with env telling kwok's simulated agent what to report.
sed -e 's/^  cleanup: delete$/  cleanup: delete\n  env:\n    SIM_DURATION: "3s"\n    SIM_MESSAGE: '"'"'{"status":"success","response":"All 12 nodes Ready; no pod restarts in the last hour.","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":3000}}'"'"'/' \
	manifests/samples/agentrun-task.yaml | kubectl -n demo apply -f - >/dev/null
done_step

step "Following agentrun/check-cluster"
last=""
for _ in $(seq 1 300); do
	line=$(kubectl -n demo get agentrun check-cluster --no-headers 2>/dev/null || true)
	if [[ "${line}" != "${last}" ]]; then
		printf '    %s\n' "${line}"
		last=${line}
	fi
	phase=$(kubectl -n demo get agentrun check-cluster -o jsonpath='{.status.phase}')
	if [[ "${phase}" == "Succeeded" || "${phase}" == "Failed" ]]; then
		break
	fi
	sleep 0.2
done
done_step

printf '\nResult: %s\n' "$(kubectl -n demo get agentrun check-cluster -o jsonpath='{.status.result}')"
printf 'Tokens: %s\n' "$(kubectl -n demo get agentrun check-cluster -o jsonpath='{.status.tokenUsage}')"
printf 'Events:\n'
kubectl -n demo get events --field-selector involvedObject.name=check-cluster -o custom-columns=REASON:.reason,MESSAGE:.message --no-headers | sed 's/^/    /'
[[ "$(kubectl -n demo get agentrun check-cluster -o jsonpath='{.status.phase}')" == "Succeeded" ]] || {
	echo "demo: the run did not succeed; controller log: ${DIR}/controller.log" >&2
	exit 1
}
printf '\nagentrun/check-cluster Succeeded.\n'
