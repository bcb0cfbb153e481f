#!/usr/bin/env bash
# Copies uPlot's ES module and stylesheet from its npm package into
# static/vendor/. The result is committed, so serving the example needs no
# build step; run this only to change the uPlot version. Needs node and npm.
set -euo pipefail
UPLOT=1.6.32
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "uplot@$UPLOT"
{
  echo "/* uPlot $UPLOT (MIT, https://github.com/leeoniya/uPlot), from its npm package by examples/dashboard/vendor.sh */"
  cat node_modules/uplot/dist/uPlot.esm.js
} > "$here/static/vendor/uPlot.esm.js"
cp node_modules/uplot/dist/uPlot.min.css "$here/static/vendor/uPlot.min.css"
echo "wrote $here/static/vendor/uPlot.esm.js and uPlot.min.css"
