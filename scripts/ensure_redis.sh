#!/usr/bin/env bash
# Make sure a redis-server binary exists: the tests start private servers from it.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server not found; installing Debian's redis-server package" >&2
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
      echo "error: redis-server is missing and this user cannot run apt-get (not root, no sudo)." >&2
      echo "Install Redis >= 6.2 (package redis-server) and run again." >&2
      exit 1
    fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # Debian's package may start a service on 6379; the tests never rely on it.
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "error: redis-server is missing and could not be installed; install Redis >= 6.2." >&2
  exit 1
fi
