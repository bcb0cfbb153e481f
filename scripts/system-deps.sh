#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real, only when missing.
# The machine runs as root; without root we print what is missing and stop.
set -euo pipefail

needed=()
command -v redis-server >/dev/null || needed+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || needed+=(nginx-light)
command -v chromium >/dev/null || needed+=(chromium)
command -v node >/dev/null || needed+=(nodejs)  # parses the docs' JavaScript blocks

if [ ${#needed[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${needed[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "not root: install them with: sudo apt-get install ${needed[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
