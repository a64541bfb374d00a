#!/usr/bin/env bash
# Install the pinned Node tools the schema tests cross-check against: Prisma's own validator
# (`prisma validate`) and the TypeScript compiler (`tsc --noEmit` on exported types).
# They go into .ws/node (gitignored), never into the repo. Tests find them there or via WS_NODE_TOOLS.
# Usage: bash scripts/install-node-tools.sh [PREFIX]   (CI: called by .ci/run before pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

PRISMA_VERSION="7.10.1"
TYPESCRIPT_VERSION="5.9.3"
PREFIX="${1:-${WS_NODE_TOOLS:-.ws/node}}"

if ! command -v npm >/dev/null 2>&1; then
    echo "install-node-tools: npm is not installed; install Node.js 20.19+ (https://nodejs.org) and rerun" >&2
    exit 2
fi

installed() {
    local package="$1" version="$2"
    [ -f "$PREFIX/node_modules/$package/package.json" ] &&
        grep -q "\"version\": \"$version\"" "$PREFIX/node_modules/$package/package.json"
}

if installed prisma "$PRISMA_VERSION" && installed typescript "$TYPESCRIPT_VERSION"; then
    echo "install-node-tools: prisma $PRISMA_VERSION and typescript $TYPESCRIPT_VERSION already in $PREFIX"
    exit 0
fi

mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "prisma@$PRISMA_VERSION" "typescript@$TYPESCRIPT_VERSION"
echo "install-node-tools: installed prisma $PRISMA_VERSION and typescript $TYPESCRIPT_VERSION into $PREFIX"
