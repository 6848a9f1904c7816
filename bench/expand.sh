#!/usr/bin/env bash
# `?expand=customer` on a 100-row page against the same page alone, uncached (default_ttl 0s),
# on the demo's SQLite database with BENCH_JOBS (100000) jobs, as bench/run.sh builds it.
# Goal: under 2x the page's cost (one extra batched read). Run from the repository root.
# BENCH_SECONDS (10) per measurement.
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
jobs=${BENCH_JOBS:-100000}
port=${BENCH_PORT:-18090}
cargo build --release --locked --bin portico
portico=${CARGO_TARGET_DIR:-target}/release/portico
work=$(mktemp -d /tmp/portico-expand.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
sed -e "s/WHERE i < 10000)/WHERE i < $jobs)/" -e 's/(i \* 1\.1)/(i * 0.11)/g' config/demo/legacy.sql |
  sqlite3 "$work/legacy.db" >/dev/null
sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e 's/^default_ttl = .*/default_ttl = "0s"/' \
  -e 's/^requests_per_second = .*/requests_per_second = 1000000/' -e 's/^burst = .*/burst = 1000000/' \
  config/demo.toml >"$work/bench.toml"
export DEMO_DB=$work/legacy.db PORTICO_STATE=$work/state.sqlite3
token=$("$portico" token --config "$work/bench.toml" --scope jobs:read --scope jobs:read:all --scope customers:read --scope customers:read:all | tail -1)
"$portico" serve --config "$work/bench.toml" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
for path in "/v1/jobs?limit=100" "/v1/jobs?limit=100&expand=customer"; do
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port$path" >/dev/null
  echo "== $path"
  out=$(wrk -t2 -c8 -d"${seconds}s" -H "Authorization: Bearer $token" "http://127.0.0.1:$port$path")
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "answers other than 200 under load" >&2; exit 1; fi
  grep -E "Requests/sec|Latency " <<<"$out"
done
