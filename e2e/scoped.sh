#!/usr/bin/env bash
# Runs a command with TMPDIR set to a directory of its own, then fails if any
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
# kubelet or containerd started
# under that directory is still running.
# Every control plane the tests and benchmarks start keeps its state in a
# temporary directory, so this finds exactly the processes this run left
# behind, never a control plane started by `make dev-up` or another run.
#
#   e2e/scoped.sh cargo test --workspace --locked
set -uo pipefail
run="$(mktemp -d "${TMPDIR:-/tmp}/prefix-operator-run.XXXXXX")" || exit 1
TMPDIR="$run" "$@"
status=$?
# The processes name their state directory on the command line
# (--data-dir, --cert-dir), so the run's directory finds them.
if pgrep -af "/(etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet|containerd) .*$run/" >/dev/null; then
  echo "leftover control-plane processes of this run:"
  pgrep -af "/(etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kube-proxy|kubelet|containerd) .*$run/"
  status=1
else
  echo "no control-plane process of this run left running"
fi
rm -rf "$run"
exit "$status"
