#!/usr/bin/env bash
# Downloads Debian packages (pinned `name=version`) into DEST without
# installing anything. Where the machine's package lists are missing or stale
# (a fresh machine), fetches fresh ones into LISTS, a directory of the
# caller's, and tries again; the machine's apt state is left alone.
#
#   e2e/apt-download.sh DEST LISTS name=version...
set -euo pipefail
dest="$1" lists_dir="$2"
shift 2
# DEST may be readable to root only, so apt must not drop to _apt.
sandbox=(-o APT::Sandbox::User=root)
if (cd "$dest" && apt-get "${sandbox[@]}" download -q "$@") >&2; then
  exit 0
fi
echo "apt-download: retrying with freshly fetched package lists" >&2
lists=(-o "Dir::State::Lists=$lists_dir")
mkdir -p "$lists_dir/partial"
apt-get -q "${lists[@]}" update >&2
(cd "$dest" && apt-get "${sandbox[@]}" -q "${lists[@]}" download "$@") >&2
