#!/bin/sh
# Builds JavaScript policies: tools/js/build.sh PROGRAM_DIR...
#
# Installs the pinned toolchain (tools/js/package-lock.json) into tools/js/node_modules
# when it is missing or the lock file changed — `npm ci`, once; afterwards this step is
# a file comparison — then builds each directory's policy.js into the component its
# policy.toml names (tools/js/build.mjs).
set -eu
here=$(cd "$(dirname "$0")" && pwd)

if [ "$#" -eq 0 ]; then
    echo "usage: $0 PROGRAM_DIR...   (each with policy.toml and policy.js)" >&2
    exit 2
fi

# npm ci writes node_modules/.package-lock.json; the stamp is a copy of the lock it installed.
stamp="$here/node_modules/.cardrules-installed-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
    echo "installing the JavaScript policy toolchain (npm ci in tools/js)…" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$here/package-lock.json" "$stamp"
fi

exec node "$here/build.mjs" "$@"
