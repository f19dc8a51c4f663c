#!/usr/bin/env bash
# make demo: the product as it ships, on a lab cluster on this machine. The
# operator's image (make image) is loaded into two kubelet Nodes' containerd
# and installed with Helm into kube-system, from the README's install lines;
# the Nodes get global prefixes, pods get addresses in them, and a client
# outside the cluster reaches a pod and a LoadBalancer address with no NAT.
# It is tests/lab.rs, run with its output shown: the same story `make test`
# checks.
#
# The lab needs root, network namespaces and cgroups. Where one is missing
# this says which and runs e2e/demo-apiserver.sh instead (the operator as a
# process against a local control plane, Nodes written by kubectl).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[[ "$(id -u)" == 0 ]] || missing+=("root (the lab makes network namespaces, mounts and cgroups)")
if [[ "$(id -u)" == 0 ]]; then
  probe="podemo$$"
  if ip netns add "$probe" 2>/dev/null; then ip netns del "$probe"; else
    missing+=("network namespaces (ip netns add failed)"); fi
  if [[ ! -w /sys/fs/cgroup/memory && ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
    missing+=("writable cgroups (neither /sys/fs/cgroup/memory nor cgroup v2)"); fi
fi
for tool in go gcc unshare nsenter ip; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "make demo: the lab cluster cannot run here; missing:"
  printf '  - %s\n' "${missing[@]}"
  echo "running the demo without kubelets instead (e2e/demo-apiserver.sh)"
  echo
  exec e2e/demo-apiserver.sh
fi

start=$(date +%s)
echo "==> building or reusing the components (cached after the first run)"
e2e/controlplane/build.sh >/dev/null
e2e/crane/build.sh >/dev/null
e2e/debs/fetch.sh >/dev/null
e2e/cni/build.sh >/dev/null
kcm="$(e2e/kcm/build.sh)"
node="$(e2e/node/build.sh)"
make --no-print-directory image IMAGE_ARCHES=amd64 >/dev/null
cargo build --locked --tests --test system -q
echo "    ready in $(($(date +%s) - start)) s"
echo "==> the lab: control plane, kube-controller-manager, kube-scheduler, two Nodes"
echo "    (containerd, runc, kubelet, kube-proxy each), then the README's install lines"
NODE_COMPONENTS="$node" KCM_BIN="$kcm" CONTROLPLANE_BIN="$(e2e/controlplane/build.sh)" \
  e2e/scoped.sh cargo test --locked -q --test system lab:: -- --nocapture 2>&1 |
  grep -vE '^(running [0-9]+ test|test result:|\s*$)'
echo "demo done in $(($(date +%s) - start)) s; everything it started is stopped"
