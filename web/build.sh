#!/usr/bin/env bash
# web/build.sh — compiles the SDK (sdk/ts → sdk/ts/dist) and the page
# (web/src) into web/dist, which is committed (imctl web embeds it): the
# page's app.js and the SDK's modules in dist/sdk/. Needs node and npm;
# installs the SDK's npm dependencies when missing.
#   OUT=dir web/build.sh   writes the page's dist into dir instead (tests).
set -euo pipefail
WEB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SDK="$(cd "$WEB/../sdk/ts" && pwd)"
OUT="${OUT:-$WEB/dist}"
[[ -x "$SDK/node_modules/.bin/tsc" ]] || (cd "$SDK" && npm ci --no-audit --no-fund)
TSC="$SDK/node_modules/.bin/tsc"
"$TSC" -p "$SDK/tsconfig.json"
rm -rf "$OUT/sdk"
mkdir -p "$OUT/sdk"
cp "$SDK"/dist/*.js "$OUT/sdk/"
"$TSC" -p "$WEB/tsconfig.json" --outDir "$OUT"
