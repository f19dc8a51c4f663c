#!/usr/bin/env bash
# Builds MetalLB's controller from the pinned Go module in this directory and
# prints its path; the directory holding it also holds MetalLB's CRDs
# (crds/, from the module's config/crd/bases), which the benchmark applies.
# `make bench-lb` runs the controller beside the operator.
#
# MetalLB v0.16.2 requires github.com/metallb/frr-k8s v0.0.27, which the Go
# module proxy refuses (403 Forbidden, "This module version is not
# available"). go.mod replaces it by frr-k8s-shim/: v0.0.26's API package,
# copied here from the module cache into a scratch copy of this directory,
# plus the one type and one field v0.0.27 added (only MetalLB's speaker uses
# them). Nothing is written into the checkout.
#
# `build.sh --tidy` runs `go mod tidy` the same way and writes go.mod/go.sum
# back. Cached outside the checkout like kube-controller-manager, keyed by
# the pin and the files of this directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Change together with go.mod.
METALLB_VERSION=v0.16.2
FRRK8S_SHIM_BASE=v0.0.26

key="$(cat "$here"/go.mod "$here"/go.sum "$here"/tools.go "$here"/build.sh \
  "$here"/frr-k8s-shim/go.mod "$here"/frr-k8s-shim/api/v1beta1/shim.go | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/metallb-$METALLB_VERSION-$key"

if [[ "${1:-}" != --tidy && -x "$out/controller" && -d "$out/crds" ]]; then
  echo "$out/controller"
  exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/build-metallb.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
export CGO_ENABLED=0

# The scratch copy, with the shim's API package filled in.
src="$tmp/src"
mkdir -p "$src"
cp -r "$here"/go.mod "$here"/go.sum "$here"/tools.go "$here"/frr-k8s-shim "$src"/
base="$(cd "$src/frr-k8s-shim" && GOFLAGS=-mod=mod go mod download -json "github.com/metallb/frr-k8s@$FRRK8S_SHIM_BASE" \
  | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[[ -d "$base/api/v1beta1" ]] || { echo "frr-k8s $FRRK8S_SHIM_BASE not in the module cache" >&2; exit 1; }
for f in "$base"/api/v1beta1/*.go; do
  case "$f" in *_test.go) continue ;; esac
  install -m 0644 "$f" "$src/frr-k8s-shim/api/v1beta1/"
done
# v0.0.27's one new field of Advertise, after the last one v0.0.26 has.
adv="$src/frr-k8s-shim/api/v1beta1/frrconfiguration_types.go"
last='PrefixesWithCommunity \[\]CommunityPrefixes `json:"withCommunity,omitempty"`'
grep -q "$last" "$adv" || { echo "frr-k8s $FRRK8S_SHIM_BASE: Advertise is not as expected" >&2; exit 1; }
sed -i "/$last/a\\
\\tPrefixesWithAsPathPrepend []AsPathPrependPrefixes \`json:\"withAsPathPrepend,omitempty\"\`" "$adv"

if [[ "${1:-}" == --tidy ]]; then
  (cd "$src" && go mod tidy) >&2
  cp "$src/go.mod" "$src/go.sum" "$here"/
  echo "go.mod and go.sum tidied" >&2
  exit 0
fi

export GOFLAGS=-mod=readonly
echo "building MetalLB's controller $METALLB_VERSION into $out (cold build, a few minutes)" >&2
mkdir -p "$tmp/out/crds"
(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$tmp/out/controller" go.universe.tf/metallb/controller) >&2
mod="$(cd "$src" && go list -m -f '{{.Dir}}' go.universe.tf/metallb)"
install -m 0644 "$mod"/config/crd/bases/*.yaml "$tmp/out/crds/"

rm -rf "$out"
mv "$tmp/out" "$out"
echo "MetalLB's controller built in $(($(date +%s) - start)) s" >&2
echo "$out/controller"
