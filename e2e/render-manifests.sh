#!/usr/bin/env bash
# Renders deploy/prefix-operator.yaml from the Helm chart with its defaults:
# release "prefix-operator" in namespace kube-system, without the CRDs
# (crds.enabled=false). The CRDs are files of their own (crds/*.yaml, the
# text of the chart's templates/crds/), so that `kubectl delete -f deploy/...`
# removes the operator and never a CRD and with it every PrefixPool or
# PrefixClaim, as `helm uninstall` leaves them (crds.keep). Run by
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
  echo "# Equivalent to: helm install prefix-operator charts/prefix-operator -n kube-system --set crds.enabled=false"
  echo "# The CRDs are not here: apply crds/ first (kubectl apply --server-side -f crds/)."
  # --kube-version: render for the oldest supported release, whatever the
  # default of the helm at hand.
  "$helm" template prefix-operator "$root/charts/prefix-operator" \
    --namespace kube-system --kube-version 1.33.0 --set crds.enabled=false
}

if [[ "$out" == "-" ]]; then
  render
else
  mkdir -p "$(dirname "$out")"
  render > "$out.tmp"
  mv "$out.tmp" "$out"
  echo "wrote ${out#"$root"/}" >&2
fi
