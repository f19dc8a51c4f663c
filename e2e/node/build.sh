#!/usr/bin/env bash
# Builds what a lab Node runs (tests/lab.rs) from the pinned Go modules in the
# folders beside this file and prints the directory that holds it:
#   bin/kubelet                     kubelet/: the same k8s.io/kubernetes pin as
#                                   e2e/kcm and the control plane
#   bin/containerd, bin/ctr,        containerd/: github.com/containerd/containerd/v2
#   bin/containerd-shim-runc-v2
#   bin/runc                        runc/: github.com/opencontainers/runc, static,
#                                   with seccomp (libseccomp from Debian's
#                                   libseccomp-dev, unpacked, never installed)
#   images/pause.tar                the pod sandbox image: pause/ (a static Go
#   images/pause.ref                program that sleeps until SIGTERM) on an
#                                   empty OCI base, assembled by crane (built
#                                   by e2e/crane/build.sh, the pin that `make
#                                   image` uses) through its own in-memory
#                                   registry (crane mutate only works on a
#                                   registry), saved as a tarball for `ctr
#                                   images import`; pause.ref holds the name
#                                   the tarball carries.
#   images/whoami.tar               the lab's web server: whoami/ (answers
#   images/whoami.ref               each request with the pod's name and the
#                                   client address it saw), built the same way.
#
# Cached outside the checkout like the control plane, keyed by the pins (the
# go.mod/go.sum files, e2e/crane's too), the pause program and this file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The pins. Change them here and in the go.mod files together; KUBE_VERSION
# with e2e/controlplane/build.sh and e2e/kcm.
KUBE_VERSION=v1.36.3
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
# Debian 12's libseccomp, for runc's seccomp build tag.
LIBSECCOMP_DEB="libseccomp-dev=2.5.4-1+deb12u1"

key="$(cat "$here"/kubelet/go.mod "$here"/kubelet/go.sum "$here"/kubelet/tools.go \
  "$here"/containerd/go.mod "$here"/containerd/go.sum "$here"/containerd/tools.go \
  "$here"/runc/go.mod "$here"/runc/go.sum "$here"/runc/tools.go \
  "$here"/../crane/go.mod "$here"/../crane/go.sum "$here"/../crane/build.sh \
  "$here"/pause/go.mod "$here"/pause/main.go "$here"/whoami/go.mod "$here"/whoami/main.go \
  "$here"/build.sh | sha256sum | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/node-kube-$KUBE_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-$key"

if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

for tool in gcc pkg-config apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "e2e/node/build.sh: $tool not found: runc needs cgo (gcc, pkg-config) and libseccomp from Debian's archive" >&2
    exit 1
  fi
done

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/build-node.XXXXXX")"
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]]; then kill "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/bin" "$tmp/images" "$tmp/work/pause" "$tmp/work/whoami"
start=$(date +%s)
export GOFLAGS=-mod=readonly
echo "building the lab Node components into $out (cold build, several minutes)" >&2

step() { # name, then the command
  local name="$1" t0
  shift
  t0=$(date +%s)
  "$@" >&2
  echo "  $name built in $(($(date +%s) - t0)) s" >&2
}

minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
step kubelet env CGO_ENABLED=0 bash -c "cd '$here/kubelet' && go build -trimpath -ldflags '-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor' \
 -o '$tmp/bin/' k8s.io/kubernetes/cmd/kubelet"

# Static, without cgo (the btrfs snapshotter, the only cgo part, drops out),
# as containerd's own static release builds.
step containerd env CGO_ENABLED=0 bash -c "cd '$here/containerd' && go build -trimpath \
 -tags 'no_btrfs urfave_cli_no_docs' -ldflags '-s -w \
 -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION \
 -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2' \
 -o '$tmp/bin/' github.com/containerd/containerd/v2/cmd/containerd \
 github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
 github.com/containerd/containerd/v2/cmd/ctr"

# runc needs cgo (its nsenter is C) and, for the seccomp tag, libseccomp's
# headers and static library: Debian's package, unpacked into the cache at a
# fixed path (Go's build cache keeps the -L path of a cgo package it
# compiled, so the path must outlive this build), never installed. A .pc
# file pointing into the unpacked tree lets the Go binding's
# `#cgo pkg-config: libseccomp` find it.
seccomp="$cache/node-${LIBSECCOMP_DEB//[=:+~]/-}"
if [[ ! -f "$seccomp/.complete" ]]; then
  unpack="$tmp/work/libseccomp"
  mkdir -p "$unpack/deb" "$unpack/root/pkgconfig"
  if ! "$here/../apt-download.sh" "$unpack/deb" "$tmp/work/lists" "$LIBSECCOMP_DEB"; then
    echo "e2e/node/build.sh: apt-get download $LIBSECCOMP_DEB failed; if it left the archive, update LIBSECCOMP_DEB (apt-cache policy libseccomp-dev)" >&2
    exit 1
  fi
  dpkg-deb -x "$unpack"/deb/*.deb "$unpack/root"
  libdir="$(dirname "$(find "$unpack/root" -name libseccomp.a | head -1)")"
  libdir="$seccomp${libdir#"$unpack/root"}"
  version="$(sed -n 's/^Version: *//p' "$(find "$unpack/root" -name libseccomp.pc | head -1)")"
  printf '%s\n' "Name: libseccomp" \
    "Description: The enhanced seccomp library (unpacked from $LIBSECCOMP_DEB)" \
    "Version: $version" "Cflags: -I$seccomp/usr/include" "Libs: -L$libdir -lseccomp" \
    > "$unpack/root/pkgconfig/libseccomp.pc"
  touch "$unpack/root/.complete"
  rm -rf "$seccomp"
  mv "$unpack/root" "$seccomp"
fi
# The same flags in CGO_CFLAGS/CGO_LDFLAGS too: they are part of Go's cache
# key, pkg-config's answer is not.
seccomp_lib="$(dirname "$(find "$seccomp" -name libseccomp.a | head -1)")"
step runc env CGO_ENABLED=1 PKG_CONFIG_PATH="$seccomp/pkgconfig" PKG_CONFIG_LIBDIR="$seccomp/pkgconfig" \
  CGO_CFLAGS="-O2 -g -I$seccomp/usr/include" CGO_LDFLAGS="-O2 -g -L$seccomp_lib" \
  bash -c "cd '$here/runc' && go build -trimpath -buildmode=pie \
 -tags 'seccomp urfave_cli_no_docs netgo osusergo' \
 -ldflags '-s -w -linkmode external -extldflags -static-pie -X main.version=${RUNC_VERSION#v}' \
 -o '$tmp/bin/runc' github.com/opencontainers/runc"

crane="$("$here/../crane/build.sh")/crane"

step pause env CGO_ENABLED=0 bash -c "cd '$here/pause' && go build -trimpath -ldflags '-s -w' -o '$tmp/work/pause/pause' ."
step whoami env CGO_ENABLED=0 bash -c "cd '$here/whoami' && go build -trimpath -ldflags '-s -w' -o '$tmp/work/whoami/whoami' ."

# The images: one layer holding the program, entrypoint it. crane can set the
# entrypoint only on an image in a registry, so they get an in-memory one on
# a free loopback port for the few seconds this takes.
t0=$(date +%s)
"$crane" registry serve --address 127.0.0.1:0 2>"$tmp/work/registry.log" &
registry_pid=$!
port=""
for _ in $(seq 100); do
  port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$tmp/work/registry.log")"
  [[ -n "$port" ]] && break
  sleep 0.1
done
if [[ -z "$port" ]]; then
  echo "e2e/node/build.sh: crane registry serve did not start:" >&2
  cat "$tmp/work/registry.log" >&2
  exit 1
fi
image() { # program, user: images/<program>.tar and images/<program>.ref
  local name="$1" user="$2" ref="127.0.0.1:$port/prefix-operator/$1:lab"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$tmp/work/$name" -cf "$tmp/work/$name.tar" "$name"
  "$crane" append --oci-empty-base -f "$tmp/work/$name.tar" -t "$ref" >&2
  # An empty base names no platform; containerd's import skips images of none.
  "$crane" mutate --entrypoint "/$name" --user "$user" \
    --set-platform "linux/$(go env GOARCH)" -t "$ref" "$ref" >&2
  "$crane" pull "$ref" "$tmp/images/$name.tar" >&2
  echo "$ref" > "$tmp/images/$name.ref"
}
image pause 65535:65535
image whoami 65532:65532
kill "$registry_pid" 2>/dev/null || true
wait "$registry_pid" 2>/dev/null || true
registry_pid=""
echo "  pause and whoami images assembled in $(($(date +%s) - t0)) s" >&2

touch "$tmp/.complete"
rm -rf "$tmp/work" "$out"
mv "$tmp" "$out"
trap - EXIT
echo "lab Node components built in $(($(date +%s) - start)) s; size $(du -sh "$out" | cut -f1)" >&2
echo "$out"
