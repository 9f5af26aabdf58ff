#!/bin/sh
# Put Prometheus's `promtool` at $1/promtool for the alert-rule tests (tests/test_alerts.py).
# Uses the one on PATH when there is one; otherwise extracts it from Debian's `prometheus`
# package (downloaded from the Debian archive, never installed: no service is started).
# Exits non-zero with the reason when neither works; the tests then skip and say why.
set -eu
dest=$1
[ -x "$dest/promtool" ] && exit 0
mkdir -p "$dest"
if command -v promtool >/dev/null 2>&1; then
    ln -sf "$(command -v promtool)" "$dest/promtool"
    exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "promtool: no apt-get on this machine" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    # The package lists may be missing or stale: refresh them when allowed to.
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
    (cd "$tmp" && apt-get download prometheus >/dev/null) \
        || { echo "promtool: could not download Debian's prometheus package" >&2; exit 1; }
fi
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
install -m 755 "$tmp/root/usr/bin/promtool" "$dest/promtool"
echo "promtool: $("$dest/promtool" --version 2>&1 | head -1)"
