#!/usr/bin/env bash
# Builds promtool from the pinned Go module in this directory and prints its
# path. Cached outside the checkout, keyed by go.mod, go.sum and this file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROMETHEUS_VERSION=v0.316.0   # Prometheus 3.16; change with go.mod
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/promtool-$PROMETHEUS_VERSION-$key"
if [[ -x "$out/promtool" ]]; then
  echo "$out/promtool"
  exit 0
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/promtool.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "building promtool into $out (cold build, about 2 minutes)" >&2
# remove_all_sd: leave out every service-discovery plugin (AWS, Azure, GCE,
# Kubernetes, ...): rule and query checks need none, and they are most of
# the build.
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -tags remove_all_sd -trimpath -ldflags "-s -w" \
  -o "$tmp/promtool" github.com/prometheus/prometheus/cmd/promtool) >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "promtool built in $(( $(date +%s) - start )) s" >&2
echo "$out/promtool"
