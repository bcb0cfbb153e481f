#!/usr/bin/env bash
# Builds static/vendor/yjs.js, the one file of Yjs the page imports, from Yjs's
# npm package (bundled into a single ES module by esbuild). The result is
# committed, so serving the example needs no build step; run this only to
# change the Yjs version. Needs node and npm.
set -euo pipefail
YJS=13.6.33
ESBUILD=0.28.2
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "yjs@$YJS" "esbuild@$ESBUILD"
cat > entry.js <<'JS'
export {
  Doc, applyUpdate, encodeStateAsUpdate, encodeStateVector,
  createRelativePositionFromTypeIndex, createAbsolutePositionFromRelativePosition,
  relativePositionToJSON, createRelativePositionFromJSON,
} from "yjs";
JS
{
  echo "/* Yjs $YJS (MIT, https://github.com/yjs/yjs), bundled by examples/editor/vendor.sh with esbuild $ESBUILD */"
  ./node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --log-level=warning
} > "$here/static/vendor/yjs.js"
echo "wrote $here/static/vendor/yjs.js ($(wc -c < "$here/static/vendor/yjs.js") bytes)"
