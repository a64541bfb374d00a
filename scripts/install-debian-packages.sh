#!/usr/bin/env bash
# Install the Debian packages the tests use when they are missing (CI runs as root on a Debian machine):
# Prometheus with promtool and the Pushgateway (monitoring tests), Chromium (the dashboard page in a real browser).
# Usage: bash scripts/install-debian-packages.sh   (called by .ci/run before pytest)
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || missing+=(prometheus-pushgateway)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-debian-packages: prometheus, prometheus-pushgateway and chromium already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-debian-packages: missing ${missing[*]}; install them with apt-get as root" >&2
    exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-debian-packages: installed ${missing[*]}"
