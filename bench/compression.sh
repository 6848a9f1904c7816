#!/usr/bin/env bash
# A cached 100-row page of the demo (10,000 jobs), requested by wrk with and without
# `Accept-Encoding: br` / `gzip`, and the body size of each: compressed variants are made once
# per cached page, so requests per second should not drop with compression.
# Run from the repository root. BENCH_SECONDS (10) per measurement; BENCH_PORTICO (a portico
# binary, target/release/portico by default; `cargo build --release --locked` first).
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
port=${BENCH_PORT:-18081}
portico=${BENCH_PORTICO:-${CARGO_TARGET_DIR:-target}/release/portico}
work=$(mktemp -d /tmp/portico-compression.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
sqlite3 "$work/legacy.db" < config/demo/legacy.sql > /dev/null
# The demo with a longer cache, on its own port, its per-caller rate limit lifted (one token
# makes every request here).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e 's/^default_ttl = .*/default_ttl = "600s"/' \
  -e 's/^requests_per_second = .*/requests_per_second = 1000000/' -e 's/^burst = .*/burst = 1000000/' \
  config/demo.toml > "$work/demo.toml"
DEMO_DB="$work/legacy.db" "$portico" serve --config "$work/demo.toml" 2> "$work/log" &
pid=$!
for _ in $(seq 100); do curl -s "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
token=$(DEMO_DB="$work/legacy.db" "$portico" token --config "$work/demo.toml" --subject bench \
  --scope jobs:read --scope jobs:read:all --scope jobs:read:amounts)
url="http://127.0.0.1:$port/v1/jobs?limit=100"
printf '%-10s %12s %10s\n' coding bytes req/s
for coding in identity gzip br; do
  size=$(curl -s -H "Authorization: Bearer $token" -H "Accept-Encoding: $coding" "$url" | wc -c)
  wrk -t2 -c32 -d2s -H "Authorization: Bearer $token" -H "Accept-Encoding: $coding" "$url" >/dev/null
  out=$(wrk -t2 -c32 -d"${seconds}s" -H "Authorization: Bearer $token" -H "Accept-Encoding: $coding" "$url")
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "answers other than 200 under load" >&2; exit 1; fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  printf '%-10s %12s %10s\n' "$coding" "$size" "$rps"
done
curl -s "127.0.0.1:$port/metrics" | grep '^portico_cache_compressions_total'
