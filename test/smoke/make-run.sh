#!/usr/bin/env bash
# The `make run` smoke test (make test-run): what a newcomer does first, run
# the way they run it. It starts `make run` in this clone, waits for the
# node's NodeQoSReport, creates a pod and waits for the agent to count it in
# its tier, deletes a namespace and waits for it to go (the namespace
# controller runs), then sends Ctrl-C (SIGINT) and checks that everything
# stopped within STOP_LIMIT seconds, that no process it started is left and
# that the cgroup tree is as it was before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
BIN=$ROOT/bin
STATE=$ROOT/.run
STOP_LIMIT=${STOP_LIMIT:-20}
UP_LIMIT=${UP_LIMIT:-180}
export KUBECONFIG=$STATE/kubeconfig
kubectl() { "$BIN/kubectl" "$@"; }
log() { echo "smoke: $*" >&2; }
fail() {
	log "FAIL: $*"
	for f in "$STATE"/*.log "$OUT"; do [[ -f $f ]] && { echo "--- $f (tail)"; tail -n 30 "$f"; }; done >&2
	exit 1
}

# What is there before: processes from bin/ and the cgroup tree.
procs() { pgrep -af "^$BIN/" || true; }
# The cgroups the platform could touch: the kubelet's pod trees and
# anything named after us (the rest of the host changes on its own).
cgroups() { find /sys/fs/cgroup -mindepth 1 -type d \( -path '*kubepods*' -o -name '*infera*' -o -name '*temper*' \) 2>/dev/null | sort || true; }
[[ -z "$(procs)" ]] || fail "processes from $BIN are already running:
$(procs)"
before=$(mktemp)
cgroups >"$before"

make build controlplane >/dev/null
OUT=$(mktemp)
# setsid: make and its children get their own process group, as in a
# terminal, so SIGINT reaches make and infera-local like a Ctrl-C does.
setsid make run >"$OUT" 2>&1 &
RUN_PID=$!
cleanup() {
	kill -KILL -- -"$RUN_PID" 2>/dev/null || true
	pkill -KILL -f "^$BIN/" 2>/dev/null || true
	rm -f "$before" "$OUT"
}
trap cleanup EXIT

log "waiting for make run to come up"
node=$(hostname)
for ((i = 0; ; i++)); do
	((i < UP_LIMIT)) || fail "make run did not come up within ${UP_LIMIT}s"
	kill -0 "$RUN_PID" 2>/dev/null || fail "make run exited early"
	if [[ -f $KUBECONFIG ]] && kubectl get nodeqosreport "$node" -o jsonpath='{.status.phase}' 2>/dev/null | grep -q .; then
		break
	fi
	sleep 1
done
phase=$(kubectl get nodeqosreport "$node" -o jsonpath='{.status.phase}')
log "NodeQoSReport $node is up, phase $phase (after ${i}s)"
grep -q "export KUBECONFIG=" "$OUT" || fail "make run printed no usage banner"

log "the REST API with curl (a client nobody on this project wrote)"
command -v curl >/dev/null || fail "curl is missing"
token=$(cat "$STATE/gateway-token")
for ((i = 0; ; i++)); do
	((i < 60)) || fail "infera-gateway is not ready after 60s"
	curl -fsS http://127.0.0.1:8090/readyz >/dev/null 2>&1 && break
	sleep 1
done
code=$(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:8090/api/v1/fleet)
[[ $code == 401 ]] || fail "GET /api/v1/fleet without a token answered $code, want 401"
fleet=$(curl -fsS -H "Authorization: Bearer $token" http://127.0.0.1:8090/api/v1/fleet) || fail "GET /api/v1/fleet with the printed token failed"
grep -q '"nodes"' <<<"$fleet" || fail "GET /api/v1/fleet: no node count in $fleet"
curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:8090/api/v1/nodes/$node" | grep -q "\"$node\"" ||
	fail "GET /api/v1/nodes/$node does not name the node"
# Into a variable first: grep -q stops reading at the first match, and under
# pipefail curl's EPIPE on a large document would fail the pipeline.
openapi=$(curl -fsS http://127.0.0.1:8090/api/v1/openapi.json) || fail "GET /api/v1/openapi.json failed"
grep -q '"swagger"' <<<"$openapi" || fail "no OpenAPI document"
index=$(curl -fsS http://127.0.0.1:8090/) || fail "GET / failed"
grep -q 'src="app.js"' <<<"$index" || fail "the dashboard is not served at http://127.0.0.1:8090/"
grep -q "The dashboard is at http://127.0.0.1:8090/" "$OUT" || fail "make run did not print the dashboard's URL"
log "curl: 401 without a token, the fleet and the node with the printed token, the OpenAPI document, the dashboard (and its URL printed)"

log "the gateway reaches the agent (TLS gRPC on 127.0.0.1:9101, as infera-local-gateway)"
for ((i = 0; ; i++)); do
	((i < 30)) || fail "GET /api/v1/nodes/$node/agentStatus did not answer 200 within 30s: $agent"
	agent=$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:8090/api/v1/nodes/$node/agentStatus" 2>&1) || true
	[[ ${agent##*$'\n'} == 200 ]] && break
	sleep 1
done
grep -q '"backend"' <<<"$agent" || fail "agentStatus names no enforcement backend: $agent"
layered=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:8090/api/v1/nodes/$node/layeredConfig") || fail "GET /api/v1/nodes/$node/layeredConfig failed"
grep -q '"generation"' <<<"$layered" || fail "layeredConfig has no generation: $layered"
pods=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:8090/api/v1/nodes/$node/pods") || fail "GET /api/v1/nodes/$node/pods failed"
grep -q '"reached": *true' <<<"$pods" || fail "GET /api/v1/nodes/$node/pods does not show the agent reached: $pods"
log "agentStatus and layeredConfig 200 ($(grep -o '"backend": *"[^"]*"' <<<"$agent" | head -1)), the node's pods show the agent reached"

log "kubectl infera status (the CLI as a kubectl plugin, through the gateway)"
[[ -x $BIN/kubectl-infera ]] || fail "make build did not link $BIN/kubectl-infera"
status=$(PATH="$BIN:$PATH" INFERA_GATEWAY=http://127.0.0.1:8090 INFERA_GATEWAY_TOKEN_FILE="$STATE/gateway-token" kubectl infera status) ||
	fail "kubectl infera status failed: $status"
grep -q "^Source: *infera-gateway http://127.0.0.1:8090" <<<"$status" || fail "kubectl infera status did not read the gateway: $status"
grep -q "^Nodes: *1 " <<<"$status" || fail "kubectl infera status does not count the node: $status"

log "creating a pod in the high tier"
kubectl create namespace smoke >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: smoke}
spec:
  priorityClassName: infera-high
  containers:
  - name: app
    image: registry.invalid/app:1
    resources: {requests: {cpu: 250m}, limits: {cpu: 500m}}
YAML
for ((i = 0; ; i++)); do
	((i < 60)) || fail "the agent did not count the pod in the high tier within 60s: $(kubectl get nqr "$node" -o wide 2>&1)"
	high=$(kubectl get nodeqosreport "$node" -o jsonpath='{.status.tiers.high.pods}')
	[[ $high == 1 ]] && break
	sleep 1
done
log "pod smoke/web is bound to $(kubectl -n smoke get pod web -o jsonpath='{.spec.nodeName}') and counted in the high tier"
kubectl get nodeqosreport "$node"
pods=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:8090/api/v1/nodes/$node/pods") || fail "GET /api/v1/nodes/$node/pods failed"
grep -q '"agentTier": *"high"' <<<"$pods" || fail "GET /api/v1/nodes/$node/pods: the agent's tier of smoke/web is not high: $pods"
log "the gateway shows the agent's tier of smoke/web: high"

log "deleting the namespace (the namespace controller must finalize it)"
kubectl delete namespace smoke --wait=false >/dev/null
for ((i = 0; ; i++)); do
	((i < 60)) || fail "namespace smoke still exists after 60s: $(kubectl get ns smoke -o jsonpath='{.status}' 2>&1)"
	kubectl get namespace smoke >/dev/null 2>&1 || break
	sleep 1
done
log "namespace smoke is gone after ${i}s"

log "Ctrl-C"
start=$(date +%s%N)
kill -INT -- -"$RUN_PID"
for ((i = 0; ; i++)); do
	kill -0 "$RUN_PID" 2>/dev/null || break
	((i < STOP_LIMIT * 10)) || fail "make run still running ${STOP_LIMIT}s after Ctrl-C"
	sleep 0.1
done
wait "$RUN_PID" || true
ms=$((($(date +%s%N) - start) / 1000000))
took=$((ms / 1000)).$(printf %03d $((ms % 1000)))
log "make run stopped ${took}s after Ctrl-C"
left=$(procs)
[[ -z $left ]] || fail "processes left after Ctrl-C:
$left"
after=$(mktemp)
cgroups >"$after"
if ! diff -u "$before" "$after" >&2; then
	rm -f "$after"
	fail "the cgroup tree differs after make run (diff above)"
fi
rm -f "$after"
[[ ! -e $KUBECONFIG ]] || fail "the kubeconfig was left behind"
log "PASS: up, pod tiered, namespace finalized, stopped in ${took}s, nothing left"
