#!/usr/bin/env bash
# Tessera's load benchmark (issue 10): one command, from the root of a clone or anywhere.
#
#   bash bench/run.sh            full run (about 10 minutes): SQLite, PostgreSQL, the oidc-provider peer;
#                                writes bench/results/<date>-<commit>.md (+ .json)
#   bash bench/run.sh --smoke    one short run per scenario (1 s; 3 s at one connection and for the hot reload): proves the harness works (CI)
#   bash bench/run.sh --smoke --dev   the same with the debug build (no release build needed)
#
# Other options (passed to bench/bench.py): --no-postgres, --no-peer, --postgres URL, --out FILE,
# --runs N, --duration SECONDS, --keep. docs/benchmarks.md explains the scenarios and every figure.
#
# It builds the release binary (cargo build --release --locked), installs wrk from Debian when it is
# missing (as root), installs the peer (npm ci in bench/peer) when node is there, then runs
# bench/bench.py, which starts every process on 127.0.0.1 and stops them all when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing wrk (Debian package)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >/dev/null ||
      { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >/dev/null; }
  else
    echo "bench/run.sh: wrk is missing: install it (Debian/Ubuntu: sudo apt-get install wrk)" >&2
    exit 1
  fi
fi
for tool in python3 openssl curl; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing" >&2; exit 1; }
done

no_peer=0
profile=release
args=()
for a in "$@"; do
  case $a in
    --no-peer) no_peer=1; args+=("$a") ;;
    # CI: the smoke run only proves the harness works, so it may reuse the debug build of the tests.
    --dev) profile=debug ;;
    *) args+=("$a") ;;
  esac
done
if [ $no_peer = 0 ]; then
  if command -v node >/dev/null && command -v npm >/dev/null; then
    if [ ! -d bench/peer/node_modules/oidc-provider ]; then
      say "installing the peer (npm ci in bench/peer: oidc-provider 9.13.3)"
      npm ci --prefix bench/peer --no-audit --no-fund >&2
    fi
  else
    say "node/npm not found: the peer will not run (the report says so)"
  fi
fi

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [ $profile = release ]; then
  say "building the release binary"
  cargo build --release --locked --bin tessera >&2
else
  say "building the debug binary (--dev: figures are meaningless)"
  cargo build --locked --bin tessera >&2
fi

say "running the benchmark"
# The harness kills what it started on exit; this trap covers an interrupted Python too.
python3 bench/bench.py --binary "$target_dir/$profile/tessera" "${args[@]}" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' INT TERM
wait $pid
