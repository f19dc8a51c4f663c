#!/usr/bin/env bash
# Renders deploy/prefix-operator.yaml from the Helm chart with its defaults:
# release "prefix-operator" in namespace kube-system, CRD included. Run by
# `make manifests`; tests/chart.rs fails when the committed file differs.
#
#   e2e/render-manifests.sh            # writes deploy/prefix-operator.yaml
#   e2e/render-manifests.sh -          # prints to stdout instead
#
# helm comes from $HELM, else $CONTROLPLANE_BIN/helm, else the pinned build
# (e2e/controlplane/build.sh), so the output does not depend on whichever helm
# happens to be on PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -n "${HELM:-}" ]]; then
  helm="$HELM"
elif [[ -n "${CONTROLPLANE_BIN:-}" ]]; then
  helm="$CONTROLPLANE_BIN/helm"
else
  helm="$("$root/e2e/controlplane/build.sh")/helm"
fi
out="${1:-$root/deploy/prefix-operator.yaml}"

render() {
  echo "# Generated from charts/prefix-operator by e2e/render-manifests.sh (make manifests); do not edit."
  echo "# Equivalent to: helm install prefix-operator charts/prefix-operator -n kube-system"
  # --kube-version: helm template's built-in default (v1.20) is older than the
  # chart's kubeVersion; 1.33 is the oldest supported release.
  "$helm" template prefix-operator "$root/charts/prefix-operator" \
    --namespace kube-system --include-crds --kube-version 1.33.0
}

if [[ "$out" == "-" ]]; then
  render
else
  mkdir -p "$(dirname "$out")"
  render > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "wrote ${out#"$root"/}" >&2
fi
