#!/usr/bin/env bash
# Portico against the raw driver, in one run: wrk on loopback vs. the same statements through
# odbc-api in a loop (examples/odbc_baseline.rs). Run from the repository root (make bench).
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
port=${BENCH_PORT:-18080}
export DEMO_DB=${DEMO_DB:-config/demo/legacy.db}
cargo build --release --locked --bin portico --example odbc_baseline
config=$(mktemp --suffix=.toml)
sed "s/^listen = .*/listen = \"127.0.0.1:$port\"/" config/demo.toml > "$config"
PORTICO_LOG=warn target/release/portico serve --config "$config" & pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$config"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
rate() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '/ 99%/ {print $2}'; }
wrk -t2 -c16 -d3s -s bench/key.lua "http://127.0.0.1:$port" >/dev/null   # warm-up
key=$(wrk -t2 -c16 -d${seconds}s --latency -s bench/key.lua "http://127.0.0.1:$port")
page=$(wrk -t2 -c16 -d${seconds}s --latency "http://127.0.0.1:$port/v1/jobs?limit=100")
kill $pid; wait $pid 2>/dev/null || true
raw_key=$(target/release/examples/odbc_baseline key "$seconds" | sed 's/.*= //; s/\/s//')
raw_page=$(target/release/examples/odbc_baseline page "$seconds" | sed 's/.*= //; s/\/s//')
k=$(echo "$key" | rate); p=$(echo "$page" | rate)
echo "| request | Portico req/s | p99 | odbc-api loop/s | Portico / raw |"
echo "| --- | --- | --- | --- | --- |"
printf '| GET /v1/jobs/{id} | %.0f | %s | %s | %.2f |\n' "$k" "$(echo "$key" | p99)" "$raw_key" "$(awk -v a="$k" -v b="$raw_key" 'BEGIN {print a / b}')"
printf '| GET /v1/jobs?limit=100 | %.0f | %s | %s | %.2f |\n' "$p" "$(echo "$page" | p99)" "$raw_page" "$(awk -v a="$p" -v b="$raw_page" 'BEGIN {print a / b}')"
echo
echo "$(nproc) cores; wrk -t2 -c16 -d${seconds}s on loopback; baseline on $(nproc) threads, one connection each."
