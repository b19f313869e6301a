#!/usr/bin/env bash
# Builds the three SDK packages as they would be published, into target/sdk-dist, and
# checks that each holds what a policy needs:
#   Rust        guest-rules/sdk  -> `cargo package --list` (the crate with its worlds)
#   Python      sdk/python       -> a wheel (`python -m build`), with its type marker
#   JavaScript  sdk/js           -> an npm tarball (`npm pack`)
# Needs python3.11 (PYTHON to name another) and npm; CI runs it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="$root/target/sdk-dist"
rm -rf "$dist"
mkdir -p "$dist"

fail() { echo "error: $*" >&2; exit 1; }

listed="$(cd "$root/guest-rules" && cargo package --list --allow-dirty -p cardrules-sdk 2>/dev/null)"
for file in src/lib.rs wit/0.2.0/policy.wit wit/0.1.0/policy.wit; do
    grep -qx "$file" <<<"$listed" || fail "the cardrules-sdk crate would not hold \`$file\`"
done
echo "rust: cardrules-sdk crate lists $(wc -l <<<"$listed") files" >&2

python="${PYTHON:-python3.11}"
venv="$root/target/toolchains/sdk-build"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check build==1.2.2
fi
# A copy, so that the build leaves nothing in the source tree.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r "$root/sdk/python" "$scratch/python"
find "$scratch/python" -name __pycache__ -prune -exec rm -rf {} +
"$venv/bin/python" -m build --wheel --outdir "$dist" "$scratch/python" >/dev/null
wheel="$(ls "$dist"/cardrules_sdk-*.whl)"
contents="$("$venv/bin/python" -m zipfile -l "$wheel")"
for file in cardrules_sdk/__init__.py cardrules_sdk/py.typed; do
    grep -q "$file" <<<"$contents" || fail "the wheel $(basename "$wheel") has no \`$file\`"
done
echo "python: $(basename "$wheel")" >&2

(cd "$root/sdk/js" && npm pack --silent --pack-destination "$dist" >/dev/null)
tarball="$(ls "$dist"/cardrules-sdk-*.tgz)"
tar -tzf "$tarball" | grep -qx "package/index.js" || fail "$(basename "$tarball") has no \`index.js\`"
echo "js: $(basename "$tarball")" >&2
