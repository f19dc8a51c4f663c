#!/usr/bin/env bash
# Builds crane (google/go-containerregistry) from the pinned Go module in this
# directory and prints the directory that holds it. `make image` assembles the
# operator's OCI image with it, without a container engine. Cached outside
# the checkout, keyed by go.mod, go.sum and this file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CRANE_VERSION=v0.22.1   # github.com/google/go-containerregistry; change with go.mod
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/crane-$CRANE_VERSION-$key"
if [[ -x "$out/crane" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/crane.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "building crane $CRANE_VERSION into $out (cold build, under a minute)" >&2
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp/" \
  github.com/google/go-containerregistry/cmd/crane) >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "crane built in $(( $(date +%s) - start )) s" >&2
echo "$out"
