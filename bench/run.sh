#!/usr/bin/env bash
# Portico against the raw driver, in one run: wrk on loopback against Portico with the cache
# off and on, and the same statements through odbc-api in a loop (examples/odbc_baseline.rs).
# Run from the repository root (make bench).
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
port=${BENCH_PORT:-18080}
export DEMO_DB=${DEMO_DB:-config/demo/legacy.db}
cargo build --release --locked --bin portico --example odbc_baseline
config=$(mktemp --suffix=.toml)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -f "$config"' EXIT
url="http://127.0.0.1:$port"

# serve TTL: start Portico on the demo with every resource cached for TTL (0s: not cached),
# without the demo's per-caller rate limit (wrk is one caller).
serve() {
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e "s/^default_ttl = .*/default_ttl = \"$1\"/" \
    -e '/^\[rate_limit\]/,/^burst/d' config/demo.toml > "$config"
  PORTICO_LOG=warn target/release/portico serve --config "$config" & pid=$!
  for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && return; sleep 0.1; done
  echo "portico did not start" >&2; exit 1
}
stop() { kill $pid; wait $pid 2>/dev/null || true; pid=; }
# load NAME ARGS...: wrk, printing "req/s p99".
load() {
  wrk -t2 -c16 -d3s "$@" >/dev/null   # warm-up
  wrk -t2 -c16 -d${seconds}s --latency "$@" | awk '/Requests\/sec/ {r=$2} / 99%/ {p=$2} END {print r, p}'
}

# Every request carries a bearer token (HS256, verified per request): staff see every job,
# the portal token only customer C00002's jobs (a row policy and a field mask apply).
token() { target/release/portico token --config "$config" "$@"; }
serve 0s
staff="Authorization: Bearer $(token --scope jobs:read --scope jobs:read:all --scope jobs:read:amounts)"
portal="Authorization: Bearer $(token --subject portal --scope jobs:read --claim customer_id=C00002)"
read -r key_rate key_p99 < <(load -H "$staff" -s bench/key.lua "$url")
read -r page_rate page_p99 < <(load -H "$staff" "$url/v1/jobs?limit=100")
read -r portal_rate portal_p99 < <(load -H "$portal" "$url/v1/jobs?limit=100")
stop
serve 600s
read -r ckey_rate ckey_p99 < <(load -H "$staff" -s bench/key.lua "$url")
read -r cpage_rate cpage_p99 < <(load -H "$staff" "$url/v1/jobs?limit=100")
read -r cportal_rate cportal_p99 < <(load -H "$portal" "$url/v1/jobs?limit=100")
stop
raw_key=$(target/release/examples/odbc_baseline key "$seconds" | sed 's/.*= //; s/\/s//')
raw_page=$(target/release/examples/odbc_baseline page "$seconds" | sed 's/.*= //; s/\/s//')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "| request | raw odbc-api loop/s | Portico uncached req/s (p99) | Portico cached req/s (p99) | uncached / raw | cached / uncached |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '| GET /v1/jobs/{id} | %s | %.0f (%s) | %.0f (%s) | %s | %s |\n' "$raw_key" "$key_rate" "$key_p99" \
  "$ckey_rate" "$ckey_p99" "$(ratio "$key_rate" "$raw_key")" "$(ratio "$ckey_rate" "$key_rate")"
printf '| GET /v1/jobs?limit=100 | %s | %.0f (%s) | %.0f (%s) | %s | %s |\n' "$raw_page" "$page_rate" "$page_p99" \
  "$cpage_rate" "$cpage_p99" "$(ratio "$page_rate" "$raw_page")" "$(ratio "$cpage_rate" "$page_rate")"
printf '| same, portal token (row policy) | - | %.0f (%s) | %.0f (%s) | - | %s |\n' "$portal_rate" "$portal_p99" \
  "$cportal_rate" "$cportal_p99" "$(ratio "$cportal_rate" "$portal_rate")"
echo
echo "$(nproc) cores; wrk -t2 -c16 -d${seconds}s from another process on loopback (wrk shares the cores);"
echo "the raw loop runs the statements Portico generates on $(nproc) threads, one connection each."
