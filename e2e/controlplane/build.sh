#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and helm from the pinned Go modules in
# this directory and prints the directory holding the binaries.
#
# The binaries live in a cache outside the checkout, keyed by the pinned
# versions and the go.mod/go.sum files, so they are reused until a pin changes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The pins. Change them here and in the go.mod files together.
KUBE_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0

key="$(cat "$here"/kube/go.mod "$here"/kube/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum \
  "$here"/helm/go.mod "$here"/helm/go.sum "$here"/build.sh | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/controlplane-kube-$KUBE_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-$key"
bin="$out/bin"

if [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/helm" && -x "$bin/kubectl" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

echo "building control-plane binaries into $out (cold build, several minutes)" >&2
(cd "$here/kube" && go build -trimpath -ldflags "$kube_ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .) >&2
# helm's default Kubernetes version for `helm template` and `helm lint`
# (v1.20 unless stamped), stamped as helm's own release build does: one past
# the client-go minor it is built with (client-go v0.35 -> Kubernetes 1.35).
helm_k8s_minor="$(cd "$here/helm" && go list -f '{{.Version}}' -m k8s.io/client-go)"
helm_k8s_minor="${helm_k8s_minor#v0.}"; helm_k8s_minor="${helm_k8s_minor%%.*}"
helm_k8s="-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
(cd "$here/helm" && go build -trimpath -ldflags "-s -w $helm_k8s \
  -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm) >&2

rm -rf "$out"
mkdir -p "$out"
mv "$tmp" "$bin"
trap - EXIT
end=$(date +%s)
echo "control-plane binaries built in $((end - start)) s; size $(du -sh "$bin" | cut -f1)" >&2
echo "$bin"
