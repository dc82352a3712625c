#!/usr/bin/env bash
# Installs the system packages the browser tests need: Debian's chromium (Playwright cannot
# download its own browser here, and must drive the system one). Run by `make test` only when
# chromium is missing. Needs root (CI runs as root); elsewhere run it with sudo once.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing and this is not root: run 'sudo $0' once (Debian/Ubuntu)." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
