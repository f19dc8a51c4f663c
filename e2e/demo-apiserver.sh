#!/usr/bin/env bash
# The demo without kubelets (make demo falls back to it where the lab cannot
# run): the operator as a process, Nodes written by kubectl, on a fresh local
# control plane.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(e2e/controlplane/build.sh)"
cargo build --locked --bin prefix-operator -p prefix-operator -p prefix-operator-testenv --bins
state="$(mktemp -d /tmp/prefix-operator-demo.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT

echo "==> starting kube-apiserver + etcd on loopback"
CONTROLPLANE_BIN="$bin" target/debug/controlplane serve --state-dir "$state/cp" --kubeconfig "$state/kubeconfig" \
  > "$state/controlplane.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do [ -f "$state/kubeconfig" ] && break; sleep 0.1; done
[ -f "$state/kubeconfig" ] || { cat "$state/controlplane.log"; exit 1; }
export KUBECONFIG="$state/kubeconfig"
k() { "$bin/kubectl" "$@"; }

echo "==> installing the PrefixPool CRD"
target/debug/prefix-operator crd | k apply -f -
k wait --for=condition=Established crd/prefixpools.ipam.prefix-operator.io crd/prefixclaims.ipam.prefix-operator.io --timeout=60s

echo "==> applying examples/ (a GUA pool and a ULA pool for edge nodes)"
k apply -f examples/

echo "==> registering Nodes"
k apply -f e2e/demo/nodes.yaml

echo "==> running the operator"
target/debug/prefix-operator run --kubeconfig "$KUBECONFIG" --http-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --status-interval 200ms \
  > "$state/operator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  have=$(k get nodes -o jsonpath='{range .items[*]}{.spec.podCIDR}{"\n"}{end}' | grep -c . || true)
  [ "$have" -eq 5 ] && break
  sleep 0.1
done
k wait --for=jsonpath='{.status.allocated}'=3 prefixpool/gua --timeout=30s >/dev/null
k wait --for=jsonpath='{.status.allocated}'=2 prefixpool/ula-edge --timeout=30s >/dev/null

echo
echo "==> kubectl get prefixpools"
k get prefixpools
echo
echo "==> Nodes and their podCIDRs"
k get nodes -o custom-columns='NODE:.metadata.name,POD-CIDRS:.spec.podCIDRs'
echo
echo "==> operator log (allocations)"
grep -E "allocated" "$state/operator.log" | sed -e 's/^/  /' | head -20
echo
echo "demo done; everything it started is stopped on exit"
