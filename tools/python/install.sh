#!/usr/bin/env bash
# Installs the Python policy toolchain (tools/python/requirements.txt) into a venv under
# target/toolchains/python, and does nothing more when it is already there: the venv
# keeps a copy of the requirements it was installed from, and only a change to them (or
# a missing venv) installs again. Prints the venv's path on stdout.
#
# Usage: tools/python/install.sh        (PYTHON=python3.11 by default)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
requirements="$root/tools/python/requirements.txt"
venv="${CARDRULES_PYTHON_TOOLCHAIN:-$root/target/toolchains/python}"
stamp="$venv/.installed-requirements.txt"

if [[ -x "$venv/bin/componentize-py" ]] && cmp -s "$requirements" "$stamp"; then
    echo "$venv"
    exit 0
fi

python="${PYTHON:-python3.11}"
if ! command -v "$python" >/dev/null; then
    echo "error: $python not found: the toolchain's venv needs CPython 3.11 (set PYTHON)" >&2
    exit 2
fi
echo "installing the Python policy toolchain into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
cp "$requirements" "$stamp"
echo "$venv"
