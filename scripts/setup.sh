#!/usr/bin/env bash
# Installs what PhotoLab Pipeline needs on a Debian/Ubuntu machine, then the npm packages.
# Idempotent and quick when everything is already there.
#   scripts/setup.sh          # to run the system: nats-server, a C compiler and patchelf (uWebSockets.js shim)
#   scripts/setup.sh --test   # also clickhouse-server (the tests run ClickHouse 18.16 besides chDB)
#                             # and chromium (the web playground's browser test drives /usr/bin/chromium)
#   scripts/setup.sh --bench  # also wrk (the ingest benchmark's load generator)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "usage: scripts/setup.sh [--test] [--bench]" >&2; exit 2 ;;
  esac
done

need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v patchelf >/dev/null 2>&1 || need+=(patchelf)
command -v nm >/dev/null 2>&1 || need+=(binutils)
if [ "$want_test" = 1 ]; then
  [ -x /usr/bin/clickhouse-server ] || command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server clickhouse-client)
  [ -x /usr/bin/chromium ] || need+=(chromium)
fi

if [ "$want_bench" = 1 ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's clickhouse-server package starts nothing here (no systemd); the tests start their own.

# Install only when package-lock.json changed since the last install. `npm install` rather than
# `npm ci`: chdb lists optional per-platform packages that are not all published (darwin ones
# 404), which `npm ci` refuses as an out-of-sync lock file; `npm install` follows the lock
# and skips them.
stamp=node_modules/.photolab-installed
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "[setup] npm install"
  # onnxruntime-node's install script would download CUDA providers (no network here): the CPU
  # build skips it through this variable (an .npmrc key did the same, but npm warns that it will
  # stop passing unknown keys). GPU images set ONNXRUNTIME_NODE_INSTALL=cuda12.
  # The registry sometimes stalls mid-body (EIDLETIMEOUT, ECONNRESET); npm's own fetch retries do
  # not cover a body that stops, so the whole install is retried, each try resuming from the cache.
  attempt=1
  until ONNXRUNTIME_NODE_INSTALL="${ONNXRUNTIME_NODE_INSTALL:-skip}" npm install --no-audit --no-fund \
      --fetch-retries=5 --fetch-retry-mintimeout=5000 --fetch-retry-maxtimeout=60000; do
    if [ "$attempt" -ge 4 ]; then
      echo "[setup] npm install failed $attempt times; giving up" >&2
      exit 1
    fi
    echo "[setup] npm install failed (try $attempt of 4); retrying in $((attempt * 15)) s" >&2
    sleep $((attempt * 15))
    attempt=$((attempt + 1))
  done
  echo "$lock_sum" > "$stamp"
else
  # The uWebSockets.js shim step is cheap; re-run it in case node_modules was copied from elsewhere.
  node scripts/fix-uws-glibc.mjs
fi
# Build, so that `npm start`, `npx photolab` and the tests run from a fresh clone.
echo "[setup] npm run build"
npm run build --silent
echo "[setup] ready: npm start, then npx photolab --help"
