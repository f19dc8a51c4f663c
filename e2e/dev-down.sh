#!/usr/bin/env bash
# make dev-down: stops what make dev-up (e2e/dev-up.sh) started and removes
# its directory. The lab cluster tears itself down on SIGTERM (containers,
# shims, containerd, kubelets, kube-proxy, cgroups, network namespaces, the
# control plane); if it does not end in time it is SIGKILLed (its children
# die with it) and what it left is removed here: its network namespaces
# ($DEV/netns) and, through `lab-cluster sweep --pid`, the shims,
# containers and cgroups of its Nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV="${DEV:-.dev}"
target="${CARGO_TARGET_DIR:-target}"

alive() { # PID: running, and not a zombie
  local state
  state="$(sed -n 's/^[0-9]* (.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

pid=
if [[ -f "$DEV/controlplane.pid" ]]; then
  pid="$(cat "$DEV/controlplane.pid")"
  kill "$pid" 2>/dev/null || true
  # The lab's teardown waits for each Node's containers to go.
  for ((i = 0; i < 1200; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    echo "pid $pid did not stop in 120 s: SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
  fi
fi
if [[ -f "$DEV/netns" ]]; then
  while read -r ns; do
    if [[ -n "$ns" ]] && ip netns del "$ns" 2>/dev/null; then echo "removed network namespace $ns"; fi
  done <"$DEV/netns"
fi
if [[ -n "$pid" && "$(cat "$DEV/mode" 2>/dev/null)" == lab && -x "$target/debug/lab-cluster" ]]; then
  "$target/debug/lab-cluster" sweep --pid "$pid"
fi
rm -rf "$DEV"
echo "dev cluster stopped; $DEV removed"
