#!/usr/bin/env bash
# Builds kube-controller-manager, kube-proxy and kube-scheduler from the pinned Go modules in
# this directory (the same Kubernetes release as the control plane) and prints
# the path of kube-controller-manager; the others are beside it. `make bench`
# runs KCM's node IPAM beside the operator; the tests run its service-cidr and
# EndpointSlice controllers, kube-proxy in node network namespaces, and the
# lab cluster (tests/lab.rs) all three.
#
# Cached outside the checkout like the control plane, keyed by the pin and
# the go.mod/go.sum files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Change together with e2e/controlplane/build.sh and go.mod.
KUBE_VERSION=v1.36.3

key="$(cat "$here"/go.mod "$here"/go.sum "$here"/tools.go "$here"/build.sh | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/kcm-$KUBE_VERSION-$key"

if [[ -x "$out/kube-controller-manager" && -x "$out/kube-proxy" && -x "$out/kube-scheduler" ]]; then
  echo "$out/kube-controller-manager"
  exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/build-kcm.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
echo "building kube-controller-manager, kube-proxy and kube-scheduler $KUBE_VERSION into $out (cold build, a few minutes)" >&2
(cd "$here" && go build -trimpath -ldflags "-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor" \
  -o "$tmp/" k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kube-scheduler) >&2

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "kube-controller-manager, kube-proxy and kube-scheduler built in $(($(date +%s) - start)) s" >&2
echo "$out/kube-controller-manager"
