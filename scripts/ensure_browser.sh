#!/usr/bin/env bash
# Make sure Debian's chromium exists for tests/test_browser.py. Never fatal:
# when it cannot be installed, the browser test reports a skip with the reason.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: chromium is missing and cannot be installed here; the browser test will skip" >&2
  exit 0
fi
echo "chromium not found; installing Debian's chromium package" >&2
apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
  || echo "note: installing chromium failed; the browser test will skip" >&2
