#!/usr/bin/env bash
# The newcomer's command (make demo): on a fresh machine, build everything,
# start the embedded local control plane, install the CRDs and the RBAC of
# manifests/, run the controller as its own ServiceAccount (not as admin),
# submit a sample run and follow it until it finishes. Prints how long each
# step took.
#
#   hack/demo.sh        the demo; stops the control plane and the controller at the end
#   KEEP=1 hack/demo.sh the demo, then leaves the control plane AND the controller
#                       running in the background: a sandbox (make sandbox-up)
#   hack/demo.sh down   stops the sandbox: the controller, then the control plane
#                       (make sandbox-down; works after make clean)
#   REAL_NODE=1 ...     (as root) the same with a real node instead of kwok's: a
#                       kubelet and containerd (hack/realnode), the controller
#                       installed with kubectl apply -k manifests/ as the pods of
#                       its Deployment (image from make image), the agents real
#                       containers of the test agent (hack/testagent), which
#                       follows the same SIM_* variables as kwok
#
# Everything of the sandbox lives in $DEMO_DIR (default .localcp/demo): the
# kubeconfig, the logs, the controller's pid, and copies of the binaries the
# stop command needs.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
export GOTOOLCHAIN=local
DIR=${DEMO_DIR:-${ROOT}/.localcp/demo}
KEEP=${KEEP:-0}
REAL_NODE=${REAL_NODE:-0}
# The measured first build of the control plane on 2 cores (hack/localcp:
# FirstBuildEstimate; the README says the same).
FIRST_BUILD="about 20 minutes"

# localcp runs the launcher: the sandbox's own copy when there is one, else
# bin/localcp, else from source.
localcp() {
	if [[ -x "${DIR}/bin/localcp" ]]; then
		"${DIR}/bin/localcp" "$@"
	elif [[ -x "${ROOT}/bin/localcp" ]]; then
		"${ROOT}/bin/localcp" "$@"
	else
		go run ./hack/localcp/cmd/localcp "$@"
	fi
}

# stop_controller ends the controller whose pid is in DIR/controller.pid, if
# that process is still our controller.
stop_controller() {
	local pidfile="${DIR}/controller.pid" pid
	[[ -f "${pidfile}" ]] || return 0
	pid=$(<"${pidfile}")
	if [[ -n "${pid}" ]] && tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q sympozium-controller; then
		kill "${pid}" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "${pid}" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "${pid}" 2>/dev/null || true
	fi
	rm -f "${pidfile}"
}

# realnode runs the real node's launcher, like localcp above.
realnode() {
	if [[ -x "${DIR}/bin/realnode" ]]; then
		"${DIR}/bin/realnode" "$@"
	elif [[ -x "${ROOT}/bin/realnode" ]]; then
		"${ROOT}/bin/realnode" "$@"
	else
		go run ./hack/realnode/cmd/realnode "$@"
	fi
}

# stop_all stops what runs in DIR: the controller process, then the control
# plane, or, for a sandbox with a real node, the node (with the controller's
# pods) and the control plane, undoing every change to the host.
stop_all() {
	stop_controller
	if [[ -f "${DIR}/real-node" ]]; then
		realnode down --dir "${DIR}"
		rm -f "${DIR}/real-node"
	else
		localcp down --dir "${DIR}"
	fi
}

if [[ "${1:-}" == "down" ]]; then
	if [[ ! -d "${DIR}" ]]; then
		echo "demo: nothing to stop in ${DIR}"
		exit 0
	fi
	stop_all
	echo "demo: stopped the controller and the control plane of ${DIR}"
	exit 0
fi

step_start=0
step() { step_start=${EPOCHREALTIME}; printf '\n==> %s\n' "$*"; }
done_step() { awk -v a="${step_start}" -v b="${EPOCHREALTIME}" 'BEGIN { printf "    done in %.1fs\n", b - a }'; }

# with_progress LABEL CMD...: runs CMD, printing "still LABEL, Ns so far"
# every 30 seconds while it runs.
with_progress() {
	local label=$1 start=${SECONDS} rc=0 ticker
	shift
	(
		while sleep 30; do
			printf '    still %s, %ss so far\n' "${label}" "$((SECONDS - start))"
		done
	) &
	ticker=$!
	"$@" || rc=$?
	kill "${ticker}" 2>/dev/null || true
	wait "${ticker}" 2>/dev/null || true
	return "${rc}"
}

cleanup() {
	local rc=$?
	if [[ "${KEEP}" == "1" && "${rc}" == "0" && "${REAL_NODE}" == "1" ]]; then
		cat <<EOF

The sandbox keeps running: the control plane, the real node ${DIR}/node (kubelet and containerd logs there)
and the controller's Deployment on it (kubectl -n sympozium-system logs deploy/sympozium-controller).
  export KUBECONFIG=${DIR}/kubeconfig KUBECACHEDIR=${DIR}/kubectl-cache PATH=${ROOT}/bin:\$PATH
  kubectl agentrun run -n demo "Check the cluster"      # see "Try it" in the README
Stop everything with: make sandbox-down   (or: hack/demo.sh down)
EOF
		return
	fi
	if [[ "${KEEP}" == "1" && "${rc}" == "0" ]]; then
		cat <<EOF

The sandbox keeps running: the control plane and the controller (pid $(<"${DIR}/controller.pid"), log ${DIR}/controller.log).
  export KUBECONFIG=${DIR}/kubeconfig KUBECACHEDIR=${DIR}/kubectl-cache PATH=${ROOT}/bin:\$PATH
  kubectl agentrun run -n demo "Check the cluster"      # see "Try it" in the README
Stop both with: make sandbox-down   (or: hack/demo.sh down)
EOF
		return
	fi
	stop_all >/dev/null 2>&1 || true
	if [[ "${KEEP}" == "1" ]]; then
		echo "demo: failed, so the sandbox was stopped" >&2
	fi
}

command -v kubectl >/dev/null || { echo "demo: needs kubectl on PATH" >&2; exit 1; }

if [[ "${REAL_NODE}" == "1" && $(id -u) != 0 ]]; then
	echo "demo: REAL_NODE=1 needs root (it runs containerd and a kubelet, mounts, and adds a bridge and iptables rules)" >&2
	exit 1
fi
if [[ -f "${DIR}/controller.pid" || -f "${DIR}/kubeconfig" || -f "${DIR}/real-node" ]]; then
	echo "demo: stopping the previous sandbox in ${DIR}"
	stop_all >/dev/null 2>&1 || true
fi
trap cleanup EXIT

step "Building the controller, kubectl-agentrun and the control-plane launcher (the first time several minutes: client-go and the Kubernetes API)"
with_progress "compiling the controller" make -s build
with_progress "compiling the launcher" go build -o bin/localcp ./hack/localcp/cmd/localcp
if [[ "${REAL_NODE}" == "1" ]]; then
	with_progress "writing the images" make -s image
	with_progress "compiling the real node's launcher" go build -o bin/realnode ./hack/realnode/cmd/realnode
fi
done_step

step "Building the control plane from pinned Go modules (the first time ${FIRST_BUILD} on 2 cores; cached afterwards)"
bin/localcp build >/dev/null
done_step

rm -rf "${DIR}"
mkdir -p "${DIR}/bin"
# The stop command must work after make clean (which deletes bin/).
cp bin/localcp bin/sympozium-controller "${DIR}/bin/"
if [[ "${REAL_NODE}" == "1" ]]; then
	step "Starting the control plane on loopback and a real node (containerd, and a kubelet built from the pinned module: the first time about 10 minutes)"
	cp bin/realnode "${DIR}/bin/"
	touch "${DIR}/real-node"
	with_progress "starting the real node" realnode up --dir "${DIR}" --image bin/sympozium-controller.oci.tar >/dev/null
else
	step "Starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback"
	localcp up --dir "${DIR}" --nodes 1 >/dev/null
fi
export KUBECONFIG="${DIR}/kubeconfig"
kubectl() { command kubectl --cache-dir "${DIR}/kubectl-cache" "$@"; }
done_step

if [[ "${REAL_NODE}" == "1" ]]; then
	step "Installing the controller with kubectl apply -k (manifests/: its Deployment, two pods on the real node)"
	# An overlay of manifests/ that names the agent image: the test agent,
	# which does what SIM_* asks, as kwok does.
	mkdir -p "${DIR}/overlay"
	cat > "${DIR}/overlay/kustomization.yaml" <<KUST
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="${DIR}/overlay" "${ROOT}/manifests")
patches:
- target: {kind: Deployment, name: sympozium-controller}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --agent-image=localhost/sympozium/testagent:dev
KUST
	kubectl apply -k "${DIR}/overlay" >/dev/null
	kubectl -n sympozium-system rollout status deployment/sympozium-controller --timeout=180s >/dev/null
	done_step
else
step "Installing the CRDs, namespace and RBAC from manifests/"
kubectl apply --server-side -f manifests/crds >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
kubectl apply -f manifests/namespace.yaml -f manifests/rbac/ >/dev/null
done_step

step "Running the controller as ServiceAccount sympozium-system/sympozium-controller"
# A sandbox may stay up for a day; the token lasts as long.
TOKEN=$(kubectl -n sympozium-system create token sympozium-controller --duration=24h)
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
# Port 0: the metrics and probe endpoints take free ports (the log says
# which), so the controller never collides with anything on :8080/:8081.
# setsid: in a sandbox it outlives this script and its terminal.
setsid "${DIR}/bin/sympozium-controller" --kubeconfig "${DIR}/controller.kubeconfig" \
	--leader-elect --leader-election-namespace sympozium-system \
	--agent-image registry.example/sympozium/agent-runner:demo \
	--metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 \
	</dev/null > "${DIR}/controller.log" 2>&1 &
echo $! > "${DIR}/controller.pid"
done_step
fi

step "Submitting manifests/samples with kubectl (the agent answers after 3s)"
kubectl create namespace demo >/dev/null
# The instance names the Secret with the model provider's API key; the
# simulated agent needs none, so a placeholder does.
kubectl -n demo create secret generic anthropic-key --from-literal=ANTHROPIC_API_KEY=sk-ant-placeholder >/dev/null
kubectl -n demo apply -f manifests/samples/instance.yaml -f manifests/samples/skillpack.yaml >/dev/null
kubectl -n demo wait --for=condition=Ready --timeout=60s skillpack/k8s-ops >/dev/null
# The sample run, with env telling kwok's simulated agent what to report.
sed -e 's/^  cleanup: delete$/  cleanup: delete\n  env:\n    SIM_DURATION: "3s"\n    SIM_MESSAGE: '"'"'{"status":"success","response":"All 12 nodes Ready; no pod restarts in the last hour.","metrics":{"inputTokens":1500,"outputTokens":800,"toolCalls":5,"durationMs":3000}}'"'"'/' \
	manifests/samples/agentrun-task.yaml | kubectl -n demo apply -f - >/dev/null
done_step

step "Following agentrun/check-cluster"
# One line per change of what matters (not of AGE), under one header, in
# aligned columns.
FIELDS='{.status.phase}|{.status.conditions[?(@.type=="Failed")].reason}|{.status.podName}|{.status.tokenUsage.totalTokens}'
row() { printf '    %-10s %-16s %-28s %s\n' "$@"; }
last=""
header=1
for _ in $(seq 1 300); do
	out=$(kubectl -n demo get agentrun check-cluster -o "jsonpath=${FIELDS}" 2>/dev/null || true)
	IFS='|' read -r phase reason pod tokens <<<"${out}"
	if [[ -n "${out}" && "${out}" != "${last}" ]]; then
		if ((header)); then
			row PHASE REASON POD TOKENS
			header=0
		fi
		row "${phase:-<none>}" "${reason:-<none>}" "${pod:-<none>}" "${tokens:-<none>}"
		last=${out}
	fi
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
