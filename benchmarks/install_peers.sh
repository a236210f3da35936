#!/usr/bin/env bash
# Install the peer servers the benchmarks compare chatsvc with, and the
# profiler.  Nothing of theirs is ever committed: this script fetches them
# from the package registries at run time.
#
#   ngircd      Debian package (C IRC server); run by benchmarks/servers.py
#               in the foreground with a config written to a temp dir.
#   miniircd    PyPI package (one-file Python IRC server), in its own venv
#               under $PEERS_DIR so the project's venv stays clean.
#   twistd words  already there: it ships with the Twisted that chatsvc uses.
#   py-spy      into the project's venv, for profiling the server under load.
#
# Usage: benchmarks/install_peers.sh        (as root for apt-get; idempotent)
# Env:   VENV=/work/venv  PEERS_DIR=~/.cache/chatsvc-bench/peers
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

VENV=${VENV:-/work/venv}
PEERS_DIR=${PEERS_DIR:-$HOME/.cache/chatsvc-bench/peers}

if ! command -v ngircd >/dev/null && [ ! -x /usr/sbin/ngircd ]; then
    echo "== apt-get install ngircd (its boot-time service is kept from starting)"
    # The package's init script would start a daemon on 0.0.0.0:6667; a
    # policy-rc.d that answers 101 keeps it from starting.  We run our own
    # instance on loopback only, in the foreground, with our own config.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ngircd >/dev/null
    if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
/usr/sbin/ngircd --version | head -1

if [ ! -x "$PEERS_DIR/miniircd/bin/miniircd" ]; then
    echo "== miniircd into its own venv: $PEERS_DIR/miniircd"
    mkdir -p "$PEERS_DIR"
    python3 -m venv "$PEERS_DIR/miniircd"
    "$PEERS_DIR/miniircd/bin/pip" install -q miniircd
fi
echo "miniircd $("$PEERS_DIR/miniircd/bin/pip" show miniircd | awk '/^Version/ {print $2}')"

if [ ! -x "$VENV/bin/py-spy" ]; then
    echo "== py-spy into $VENV"
    "$VENV/bin/pip" install -q py-spy
fi
"$VENV/bin/py-spy" --version

echo "twistd words: $("$VENV/bin/python" -c 'import twisted; print("Twisted", twisted.__version__)')"
