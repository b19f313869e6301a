#!/usr/bin/env bash
# Builds a Python program directory into its policy component:
#   PROGRAM_DIR/policy.py + sdk/python  →  PROGRAM_DIR/<component of policy.toml>
#
# componentize-py bundles CPython, the policy module and the SDK into one component of
# the world cardrules:policy/policy@0.2.0. `--stub-wasi` replaces every WASI import
# (clock, random, files, stdout) with a stub that traps, so the component imports only
# `cardrules:policy/*` and the host binds it; a policy that reaches for the clock traps
# instead of deciding on it.
#
# Usage: tools/python/build.sh PROGRAM_DIR...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ $# -eq 0 ]]; then
    echo "usage: $0 PROGRAM_DIR..." >&2
    exit 2
fi
venv="$("$root/tools/python/install.sh")"

for dir in "$@"; do
    dir="$(cd "$dir" && pwd)"
    if [[ ! -f "$dir/policy.py" || ! -f "$dir/policy.toml" ]]; then
        echo "error: $dir has no policy.py and policy.toml" >&2
        exit 2
    fi
    # The component's file name, as the manifest says (`component = "bergen.wasm"`).
    component="$("$venv/bin/python" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as manifest:
    print(tomllib.load(manifest)["component"])
' "$dir/policy.toml")"
    # The module the component runs is `policy` (policy.py); the SDK comes from
    # sdk/python. Run from the program directory so that nothing else on the way in is
    # bundled, and without VIRTUAL_ENV so that the toolchain's own site-packages stay out.
    (
        cd "$dir"
        env -u VIRTUAL_ENV "$venv/bin/componentize-py" --quiet \
            -d "$root/wit/0.2.0" -w cardrules:policy/policy@0.2.0 \
            componentize --stub-wasi \
            -p "$dir" -p "$root/sdk/python" \
            -o "$dir/$component" policy
    )
    echo "built $dir/$component ($(stat -c %s "$dir/$component") bytes)" >&2
done
