#!/usr/bin/env bash
# Build the ClawButler image from an already built binary, offline (FROM scratch: no base
# image to pull).
#   deploy/container/build.sh [BINARY] [TAG]      # defaults: target/release/clawbutler clawbutler:dev
# Environment: BUILDAH_OPTS (global buildah options, e.g. "--storage-driver vfs --root DIR
# --runroot DIR" where overlay is unavailable, as in CI's container).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-target}/release/clawbutler}"
tag="${2:-clawbutler:dev}"
[[ -x "$bin" ]] || { echo "build.sh: no executable at $bin (cargo build --release first)" >&2; exit 1; }
command -v buildah >/dev/null || { echo "build.sh: buildah is missing (apt-get install buildah)" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
install -D -m 0755 "$bin" "$root/usr/local/bin/clawbutler"
# Debug info is for debugging on the build host, not for the image.
strip --strip-debug "$root/usr/local/bin/clawbutler"
# The shared libraries the binary links, at their paths (the loader included).
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    cp -L --parents "$lib" "$root/"
done
mkdir -p "$root/etc" "$ctx/datadir"
printf 'root:x:0:0:root:/:/nonexistent\nclawbutler:x:10001:10001:ClawButler:/var/lib/clawbutler:/nonexistent\n' >"$root/etc/passwd"
printf 'root:x:0:\nclawbutler:x:10001:\n' >"$root/etc/group"
chmod 0700 "$ctx/datadir"
cp "$here/Containerfile" "$ctx/Containerfile"
# shellcheck disable=SC2086 # BUILDAH_OPTS is a list of options
buildah ${BUILDAH_OPTS:-} build --quiet --format docker --layers=false -f "$ctx/Containerfile" -t "$tag" "$ctx"
