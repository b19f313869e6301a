#!/usr/bin/env bash
# Unit tests of the Python SDK in the toolchain's CPython, against componentize-py's stub
# bindings of the world (generated into target/python-bindings), without the host.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$("$root/tools/python/install.sh")"
bindings="$root/target/python-bindings"
rm -rf "$bindings"
"$venv/bin/componentize-py" -d "$root/wit/0.2.0" -w cardrules:policy/policy@0.2.0 \
    bindings "$bindings" >/dev/null
PYTHONPATH="$bindings:$root/sdk/python:$root/tests/python" \
    "$venv/bin/python" -m unittest discover -s "$root/tests/python" -p 'test_*.py' "$@"
