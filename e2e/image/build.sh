#!/usr/bin/env bash
# Assembles the operator's OCI image without a container engine, as the
# Dockerfile's final stage does: the static binary on an empty base, with CA
# certificates (Debian's ca-certificates bundle) and a passwd/group entry for
# the nonroot user as distroless has, and the same user, entrypoint, command,
# exposed port and labels. tests/image.rs compares the result with the
# Dockerfile, so a change to one without the other fails `make test`.
#
#   e2e/image/build.sh --bin amd64=target/x86_64-unknown-linux-musl/release/prefix-operator \
#                      [--bin arm64=PATH] [--out target/image]
#
# Writes, per architecture, an OCI image layout as a tar archive
# (`ctr images import`, `skopeo copy oci-archive:`, `crane push`):
#   OUT/prefix-operator-VERSION-ARCH.oci.tar
# and, with more than one --bin, one archive holding the multi-arch index:
#   OUT/prefix-operator-VERSION.oci.tar
# Each archive names its image $IMAGE_NAME:VERSION (the chart's default
# repository and appVersion). Prints the archives it wrote.
# crane comes from e2e/crane/build.sh; it needs a registry to mutate an
# image, so one runs in memory on loopback for the duration of the script.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# The image's configuration. The Dockerfile's final stage says the same.
IMAGE_NAME=ghcr.io/prefix-operator/prefix-operator
IMAGE_USER=65532:65532
IMAGE_ENTRYPOINT=/prefix-operator
IMAGE_CMD=run
IMAGE_PORT=10262/tcp
IMAGE_LABELS=(
  "org.opencontainers.image.title=prefix-operator"
  "org.opencontainers.image.description=Gives every Kubernetes node a routable pod prefix carved from PrefixPools"
  "org.opencontainers.image.licenses=Apache-2.0"
)
# Debian 12's CA bundle, pinned like e2e/debs/fetch.sh's packages.
CA_CERTIFICATES=20250419~deb12u2

die() { echo "e2e/image/build.sh: $*" >&2; exit 1; }

declare -A bins=()
out="$root/target/image"
while (($#)); do
  case "$1" in
    --bin) [[ $# -ge 2 && "$2" == *=* ]] || die "--bin needs ARCH=PATH"
      bins["${2%%=*}"]="${2#*=}"; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out="$2"; shift 2 ;;
    *) die "unknown argument $1 (see the comment at the top)" ;;
  esac
done
((${#bins[@]})) || die "give at least one --bin ARCH=PATH"
for arch in "${!bins[@]}"; do
  [[ "$arch" == amd64 || "$arch" == arm64 ]] || die "architecture $arch: amd64 or arm64"
  [[ -f "${bins[$arch]}" ]] || die "${bins[$arch]}: no such file"
done
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"
[[ -n "$version" ]] || die "no package version in $root/Cargo.toml"

crane="$("$root/e2e/crane/build.sh")/crane"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"

# The CA bundle: the certificates Debian's package ships, concatenated in the
# order update-ca-certificates would (never this machine's own bundle, which
# may hold local additions).
ca_dir="$cache/ca-certificates-$CA_CERTIFICATES"
if [[ ! -s "$ca_dir/ca-certificates.crt" ]]; then
  mkdir -p "$cache"
  ca_tmp="$(mktemp -d "$cache/ca.XXXXXX")"
  trap 'rm -rf "$ca_tmp"' EXIT
  "$root/e2e/apt-download.sh" "$ca_tmp" "$ca_tmp/lists" "ca-certificates=$CA_CERTIFICATES" ||
    die "apt-get download ca-certificates=$CA_CERTIFICATES failed (apt-cache policy ca-certificates)"
  dpkg-deb -x "$ca_tmp"/ca-certificates_*.deb "$ca_tmp/root"
  mkdir "$ca_tmp/out"
  find "$ca_tmp/root/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z |
    xargs -0 cat > "$ca_tmp/out/ca-certificates.crt"
  grep -q 'BEGIN CERTIFICATE' "$ca_tmp/out/ca-certificates.crt" || die "no certificate in ca-certificates $CA_CERTIFICATES"
  # Another run may have got there first; its bundle is the same.
  mv -T "$ca_tmp/out" "$ca_dir" 2>/dev/null || true
  rm -rf "$ca_tmp"
  trap - EXIT
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/prefix-operator-image.XXXXXX")"
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The files the base image (distroless static:nonroot) would bring.
base="$work/base"
mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot"
cp "$ca_dir/ca-certificates.crt" "$base/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "$base/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' > "$base/etc/group"
chmod 0644 "$base/etc/passwd" "$base/etc/group" "$base/etc/ssl/certs/ca-certificates.crt"
find "$base" -type d -exec chmod 0755 {} +
chmod 1777 "$base/tmp"
chmod 0700 "$base/home/nonroot"

# One layer per architecture, byte for byte the same for the same inputs:
# sorted names, time 0, numeric owners (root, and the nonroot user's home is
# its own, as in distroless).
layer() { # ARCH BIN -> path of the layer tarball
  local dir="$work/rootfs-$1" tarball="$work/layer-$1.tar"
  local opts=(-C "$dir" --sort=name --mtime=@0 --numeric-owner --format=posix
    --pax-option=delete=atime,delete=ctime)
  cp -a "$base" "$dir"
  install -m 0755 "$2" "$dir$IMAGE_ENTRYPOINT"
  tar "${opts[@]}" --owner=0 --group=0 -cf "$tarball" etc tmp "${IMAGE_ENTRYPOINT#/}" --no-recursion home
  tar "${opts[@]}" --owner=65532 --group=65532 -rf "$tarball" home/nonroot
  echo "$tarball"
}

# An in-memory registry on loopback; crane mutates only images it can pull.
# It stops with this script, and after ten minutes whatever happens to it.
timeout 600 "$crane" registry serve --address 127.0.0.1:0 2> "$work/registry.log" &
registry_pid=$!
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log" | head -n1)"
  [[ -n "$port" ]] && break
  kill -0 "$registry_pid" 2>/dev/null || die "crane registry serve exited: $(cat "$work/registry.log")"
  sleep 0.05
done
[[ -n "$port" ]] || die "crane registry serve did not start: $(cat "$work/registry.log")"
repo="127.0.0.1:$port/prefix-operator"

mutate_flags=(--user "$IMAGE_USER" --entrypoint "$IMAGE_ENTRYPOINT" --cmd "$IMAGE_CMD"
  --exposed-ports "$IMAGE_PORT" -a "org.opencontainers.image.version=$version")
for l in "${IMAGE_LABELS[@]}"; do mutate_flags+=(-l "$l"); done

# Writes the image or index REF as an OCI layout archive named $IMAGE_NAME:version.
save() { # REF ARCHIVE
  local layout="$work/layout-$(basename "$2")"
  "$crane" pull --insecure --format oci "$1" "$layout" >&2
  jq --arg n "$IMAGE_NAME:$version" '.manifests[0].annotations["org.opencontainers.image.ref.name"] = $n' \
    "$layout/index.json" > "$layout/index.json.new"
  mv "$layout/index.json.new" "$layout/index.json"
  find "$layout" -type d -exec chmod 0755 {} + && find "$layout" -type f -exec chmod 0644 {} +
  mkdir -p "$(dirname "$2")"
  tar -C "$layout" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$2.tmp" oci-layout index.json blobs
  mv "$2.tmp" "$2"
  echo "$2"
}

mkdir -p "$out"
refs=()
for arch in $(printf '%s\n' "${!bins[@]}" | sort); do
  tag="$repo:$version-$arch"
  "$crane" append --insecure --oci-empty-base -f "$(layer "$arch" "${bins[$arch]}")" -t "$tag" >/dev/null 2>"$work/crane.log" ||
    die "crane append: $(cat "$work/crane.log")"
  "$crane" mutate --insecure "$tag" "${mutate_flags[@]}" --set-platform "linux/$arch" -t "$tag" >/dev/null 2>"$work/crane.log" ||
    die "crane mutate: $(cat "$work/crane.log")"
  save "$tag" "$out/prefix-operator-$version-$arch.oci.tar"
  refs+=(-m "$tag")
done
if ((${#bins[@]} > 1)); then
  "$crane" index append --insecure "${refs[@]}" -t "$repo:$version" >/dev/null 2>"$work/crane.log" ||
    die "crane index append: $(cat "$work/crane.log")"
  save "$repo:$version" "$out/prefix-operator-$version.oci.tar"
fi
