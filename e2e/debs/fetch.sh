#!/usr/bin/env bash
# Fetches pinned Debian packages that tests run against (FRR's vtysh and
# BIRD, to parse the configuration `prefix-operator routes` prints; iptables,
# which kube-proxy programs in the Services test; Kea's DHCPv6 server, which
# delegates prefixes to pools in the DHCPv6-PD test) and
# unpacks them into a cache outside the checkout, without installing
# anything on the machine. Prints the directory they were unpacked into;
# binaries are under usr/bin and usr/sbin, libraries under usr/lib (see
# `lib_path` in tests/support/debs.rs).
#
# Needs apt-get and dpkg-deb (any Debian or Ubuntu) and the Debian archive.
# The cache is keyed by this file, so changing a pin fetches again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The pins: Debian 12 (bookworm) versions. The libraries are the ones these
# binaries need that a minimal Debian lacks.
PACKAGES=(
  "frr=8.4.4-1.1~deb12u2"
  "bird2=2.0.12-7"
  "libyang2=2.1.30-2"
  "libc-ares2=1.18.1-3"
  "libssh-gcrypt-4=0.10.6-0+deb12u3"
  "iptables=1.8.9-2"
  "libip4tc2=1.8.9-2"
  "libip6tc2=1.8.9-2"
  "libxtables12=1.8.9-2"
  "libnftnl11=1.2.4-2"
  "libnfnetlink0=1.0.2-2"
  "libnetfilter-conntrack3=1.0.9-3"
  "libmnl0=1.0.4-3"
  "kea-dhcp6-server=2.2.0-6"
  "kea-common=2.2.0-6"
  "liblog4cplus-2.0.5=2.0.8-1"
  "libmariadb3=1:10.11.19-0+deb12u1"
)

key="$(sha256sum "$here/fetch.sh" | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/debs-$key"

if [[ -f "$out/.complete" ]]; then
  echo "$out"
  exit 0
fi

for tool in apt-get dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "e2e/debs/fetch.sh: $tool not found: the route-parser, kube-proxy and DHCPv6-PD (Kea) tests need a Debian-based machine to fetch their packages from" >&2
    exit 1
  fi
done

mkdir -p "$cache"
tmp="$(mktemp -d "$cache/debs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/pkgs" "$tmp/root"
# Downloaded, never installed (fresh package lists of our own where the
# machine's are missing or stale).
if ! "$here/../apt-download.sh" "$tmp/pkgs" "$tmp/lists" "${PACKAGES[@]}"; then
  echo "e2e/debs/fetch.sh: apt-get download failed; if the pinned versions are no longer in the archive, update PACKAGES (apt-cache policy frr bird2 iptables kea-dhcp6-server)" >&2
  exit 1
fi
for deb in "$tmp"/pkgs/*.deb; do
  dpkg-deb -x "$deb" "$tmp/root"
done
# kube-proxy runs `iptables`, `ip6tables` and their -save/-restore by name;
# Debian points those at the alternatives system, which an unpacked package
# lacks, so name the legacy backend directly (it picks its mode from argv[0]).
mkdir -p "$tmp/root/iptables-bin"
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s ../usr/sbin/xtables-legacy-multi "$tmp/root/iptables-bin/$name"
done
touch "$tmp/root/.complete"
rm -rf "$out"
mv "$tmp/root" "$out"
trap - EXIT
rm -rf "$tmp"
echo "$out"
