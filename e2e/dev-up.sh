#!/usr/bin/env bash
# make dev-up: a cluster on this machine, left running in the background for
# a reader to follow the README on; make dev-down (e2e/dev-down.sh) stops it.
#
# Where it can, the lab cluster of tests/lab.rs (target/debug/lab-cluster):
# the control plane, kube-controller-manager, kube-scheduler, and Nodes in
# network namespaces behind a router namespace, each with containerd + runc,
# a kubelet and kube-proxy; the operator's image (target/image/..., from
# `make image`) is imported into every Node when it is there. Otherwise
# (not root, no network namespaces or cgroups, DEV_LAB=no) only etcd and
# kube-apiserver (target/debug/controlplane serve), saying why.
#
# Environment: DEV (the directory, .dev), DEV_LAB (auto or no), DEV_NODES
# (2), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV="${DEV:-.dev}"
DEV_LAB="${DEV_LAB:-auto}"
target="${CARGO_TARGET_DIR:-target}"

alive() { # PID: running, and not a zombie
  local state
  state="$(sed -n 's/^[0-9]* (.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

if [[ -f "$DEV/controlplane.pid" ]] && alive "$(cat "$DEV/controlplane.pid")"; then
  echo "already running (pid $(cat "$DEV/controlplane.pid"); make dev-down stops it)"
  exit 0
fi
mkdir -p "$DEV"
rm -f "$DEV/kubeconfig"
cp_bin="$(e2e/controlplane/build.sh)"

# What the lab needs, as e2e/demo.sh checks it.
missing=()
if [[ "$DEV_LAB" == no ]]; then
  missing+=("DEV_LAB=no")
else
  [[ "$(id -u)" == 0 ]] || missing+=("root (the lab makes network namespaces, mounts and cgroups)")
  if [[ "$(id -u)" == 0 ]]; then
    probe="podevup$$"
    if ip netns add "$probe" 2>/dev/null; then ip netns del "$probe"; else
      missing+=("network namespaces (ip netns add failed)"); fi
    if [[ ! -w /sys/fs/cgroup/memory && ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
      missing+=("writable cgroups (neither /sys/fs/cgroup/memory nor cgroup v2)"); fi
  fi
  for tool in unshare nsenter ip; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
fi
if ((${#missing[@]} == 0)); then
  # The components, built or fetched once and cached.
  node="$(e2e/node/build.sh)" || missing+=("the Node components (e2e/node/build.sh failed)")
  kcm="$(e2e/kcm/build.sh)" || missing+=("kube-controller-manager (e2e/kcm/build.sh failed)")
  e2e/debs/fetch.sh >/dev/null || missing+=("Debian's iptables (e2e/debs/fetch.sh failed)")
  e2e/cni/build.sh >/dev/null || missing+=("the CNI plugins (e2e/cni/build.sh failed)")
fi

if ((${#missing[@]} == 0)); then
  mode=lab
  imports=() images=()
  for image in target/image/prefix-operator-*-amd64.oci.tar; do
    if [[ -f "$image" ]]; then imports+=(--import "$image"); images+=("$image"); fi
  done
  NODE_COMPONENTS="$node" KCM_BIN="$kcm" CONTROLPLANE_BIN="$cp_bin" nohup "$target/debug/lab-cluster" serve \
    --dir "$DEV" --nodes "${DEV_NODES:-2}" "${imports[@]}" >"$DEV/controlplane.log" 2>&1 &
  echo $! >"$DEV/controlplane.pid"
  patience=3000 # tenths of a second: Nodes start one after the other
else
  mode=controlplane
  echo "make dev-up: the lab cluster cannot run here; missing:"
  printf '  - %s\n' "${missing[@]}"
  echo "starting only etcd and kube-apiserver instead (no kubelet, no kube-controller-manager)"
  CONTROLPLANE_BIN="$cp_bin" nohup "$target/debug/controlplane" serve \
    --state-dir "$DEV/state" --kubeconfig "$DEV/kubeconfig" >"$DEV/controlplane.log" 2>&1 &
  echo $! >"$DEV/controlplane.pid"
  patience=600
fi
echo "$mode" >"$DEV/mode"
pid="$(cat "$DEV/controlplane.pid")"
for ((i = 0; i < patience; i++)); do
  [[ -f "$DEV/kubeconfig" ]] && break
  alive "$pid" || { cat "$DEV/controlplane.log"; echo "make dev-up: it stopped (log above)"; exit 1; }
  sleep 0.1
done
[[ -f "$DEV/kubeconfig" ]] || { echo "the cluster did not become ready"; cat "$DEV/controlplane.log"; exit 1; }
ln -sf "$cp_bin/kubectl" "$DEV/kubectl"
ln -sf "$cp_bin/helm" "$DEV/helm"

abs="$(cd "$DEV" && pwd)"
if [[ "$mode" == lab ]]; then
  echo "lab cluster running: control plane, kube-controller-manager, kube-scheduler and"
  echo "Nodes $(sed -n 's/^run .\([^'"'"']*\).*/\1/p' "$DEV/ctr" | paste -sd' ') (containerd, kubelet, kube-proxy each)."
  if ((${#images[@]})); then
    echo "Imported into every Node: ${images[*]}"
  else
    echo "No operator image in target/image: make image IMAGE_ARCHES=amd64, then ctr (below) imports it."
  fi
  echo "Use it with (kubectl and helm of the pinned releases; ctr runs on every Node, NODE=lab-node-1 for one):"
  echo "  export KUBECONFIG=$abs/kubeconfig PATH=$abs:\$PATH"
  echo "  kubectl get nodes"
  echo "  ctr -n k8s.io images ls -q"
else
  echo "control plane running. Use it with:"
  echo "  export KUBECONFIG=$abs/kubeconfig"
  echo "  $DEV/kubectl get nodes      # kubectl built from the pinned release"
fi
echo "Logs: $DEV/controlplane.log. Stop it with: make dev-down"
