#!/usr/bin/env bash
# Builds the reference CNI plugins (bridge, host-local, loopback) and cnitool
# from the pinned Go modules in this directory and prints the directory that
# holds them (use it as CNI_PATH). Cached outside the checkout, keyed by
# go.mod, go.sum and this file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PLUGINS_VERSION=v1.10.0   # containernetworking/plugins; change with go.mod
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/cni-$PLUGINS_VERSION-$key"
if [[ -x "$out/cnitool" && -x "$out/bridge" && -x "$out/host-local" && -x "$out/loopback" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/cni.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "building the CNI plugins and cnitool into $out (cold build, about a minute)" >&2
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp/" \
  github.com/containernetworking/plugins/plugins/main/bridge \
  github.com/containernetworking/plugins/plugins/ipam/host-local \
  github.com/containernetworking/plugins/plugins/main/loopback \
  github.com/containernetworking/cni/cnitool) >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "CNI plugins built in $(( $(date +%s) - start )) s" >&2
echo "$out"
