#!/usr/bin/env bash
# Builds the release archives of the `cardrules` command, one per Linux target:
#   target/dist/cardrules-<version>-<target>.tar.gz  (the binary, README, LICENSE notice, docs)
# and a SHA256SUMS beside them. The binary carries the authoring kit (worlds, SDKs, build
# drivers), so the archive is the whole toolkit.
#
# Usage: tools/release/build.sh [TARGET...]
#   default targets: x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
# aarch64 on an x86_64 machine needs a cross linker: Debian's gcc-aarch64-linux-gnu
# (`apt-get install gcc-aarch64-linux-gnu`); the script says so when it is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu)
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
dist="$root/target/dist"
mkdir -p "$dist"

for target in "${targets[@]}"; do
    rustup target add "$target" >/dev/null
    env=()
    if [[ "$target" == aarch64-unknown-linux-gnu && "$(uname -m)" != aarch64 ]]; then
        if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
            echo "error: building for $target needs the cross linker aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu)" >&2
            exit 2
        fi
        env=(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
             CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc)
    fi
    echo "building cardrules $version for $target" >&2
    env "${env[@]}" cargo build --release --locked -p cardrules-cli --bin cardrules --target "$target"
    stage="$(mktemp -d)"
    name="cardrules-$version-$target"
    mkdir -p "$stage/$name"
    cp "target/$target/release/cardrules" "$stage/$name/"
    cp README.md "$stage/$name/"
    cp -r docs "$stage/$name/docs"
    tar -C "$stage" -czf "$dist/$name.tar.gz" "$name"
    rm -rf "$stage"
    echo "wrote $dist/$name.tar.gz" >&2
done
(cd "$dist" && sha256sum ./*.tar.gz > SHA256SUMS)
