#!/usr/bin/env bash
# Proves that an install without dev dependencies runs the program as `pulumi up` does: the
# repository's files (tracked, and new ones not ignored) are copied to a temporary directory, installed with
# `npm ci --omit=dev --omit=optional`, and index.ts is loaded there through the Pulumi SDK's own
# program runner (cmd/run/run.js: its choice of TypeScript and ts-node, type-checking included) under
# the mock runtime, with the prod stack's config. Optional packages are left out too: TypeScript as a
# dev dependency survives `--omit=dev` only as the SDK's optional peer, and without it the SDK falls
# back to its bundled TypeScript 3.8, which cannot parse the program. About 30 s.
#
# Usage: scripts/runtime-install.sh [STACK]   (default prod; exit 0 on success, 1 on failure)
set -euo pipefail
cd "$(dirname "$0")/.."

stack=${1:-prod}
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT

git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$copy"
cd "$copy"
npm ci --omit=dev --omit=optional --no-audit --no-fund --loglevel=error
if [[ -e node_modules/jest || -e node_modules/@types/jest ]]; then
    echo "runtime-install: npm ci --omit=dev installed dev dependencies" >&2
    exit 1
fi
node scripts/runtime-install.cjs "$stack"
