#!/usr/bin/env bash
# Installs cargo-zigbuild and Zig (both from PyPI, pinned) into a virtual
# environment outside the checkout and prints its bin directory. `make image`
# puts it first on PATH to cross-build the aarch64 musl binary: ring compiles
# C and assembly, and Zig is the C cross compiler and linker for it.
# Keyed by this file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CARGO_ZIGBUILD_VERSION=0.24.1
ZIG_VERSION=0.15.2   # PyPI's ziglang
key="$(sha256sum "$here/build.sh" | cut -c1-12)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/prefix-operator"
out="$cache/zigbuild-$CARGO_ZIGBUILD_VERSION-zig-$ZIG_VERSION-$key"
if [[ -x "$out/bin/cargo-zigbuild" && -f "$out/.complete" ]]; then
  echo "$out/bin"
  exit 0
fi
mkdir -p "$cache"
echo "installing cargo-zigbuild $CARGO_ZIGBUILD_VERSION and Zig $ZIG_VERSION into $out" >&2
rm -rf "$out"
# A virtual environment cannot be moved, so it is made in place and marked
# complete at the end.
python3 -m venv "$out" >&2
"$out/bin/python" -m pip install -q "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION" >&2
"$out/bin/python" -m ziglang version >&2
touch "$out/.complete"
echo "$out/bin"
