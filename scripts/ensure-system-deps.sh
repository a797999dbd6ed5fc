#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (PostgreSQL, Redis, Chromium, tmux)
# when they are missing. Needs root and apt; prints what it does and never fails the build
# on a machine without apt (the tests that need a missing binary then skip with a reason).
set -u
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: missing ${need[*]} and cannot install (need root and apt-get)" >&2
  exit 0
fi
echo "ensure-system-deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
