#!/usr/bin/env bash
# What the web view and its tests need beyond the project's Python deps:
#   Debian's chromium (Playwright drives it through executable_path; Playwright's own browser download is not used)
#   and PostgreSQL's server binaries (the store tests start a throwaway server on 127.0.0.1).
# Usage: bash scripts/setup_web_test.sh   (as root, or with sudo available)
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
# The Debian package starts a cluster service on install; the tests use their own throwaway one.
python3 -m pip install --quiet fastapi uvicorn 'sqlalchemy>=2.0' 'psycopg[binary]>=3.1' prometheus-client httpx playwright
echo "web test deps ready: $(chromium --version 2>/dev/null || echo 'chromium ?'), $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
