#!/usr/bin/env bash
# Install checkov into its own virtualenv (.ws/tools/checkov) from its hash-pinned lock: its pins conflict with
# pulumi's (packaging), so it cannot share the project's environment. The Kubernetes tests run it from there.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=".ws/tools/checkov"
if [ -x "$PREFIX/bin/checkov" ] && "$PREFIX/bin/pip" freeze 2>/dev/null | grep -qx "checkov==3.3.30"; then
    echo "install-checkov: checkov 3.3.30 already in $PREFIX"
    exit 0
fi
python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --require-hashes -r tools/checkov.lock
echo "install-checkov: installed checkov 3.3.30 into $PREFIX"
