#!/usr/bin/env bash
# NDJSON export against the raw odbc-api loop, and Portico's peak memory exporting many rows vs
# few, on SQLite: the demo's script with BENCH_EXPORT_JOBS (1,000,000) jobs and with 10,000.
#   Portico   curl -H 'Accept: application/x-ndjson' /v1/jobs (cache off, staff token), timed;
#             its peak RSS is VmHWM of /proc/PID/status after the export (a fresh server per size)
#   raw loop  examples/odbc_baseline.rs `page` with limit=1000: the statement of one export chunk
#             run through odbc-api, one thread, rows/s = statements/s * 1000
# Run from the repository root: bash bench/export.sh. BENCH_SECONDS (10) for the raw loop.
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
big=${BENCH_EXPORT_JOBS:-1000000}
small=10000
port=${BENCH_PORT:-18090}

cargo build --release --locked --bin portico --example odbc_baseline
target=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d /tmp/portico-export.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# config DB: the demo configuration over DB, not cached, without the per-caller rate limit.
config() {
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e 's/^default_ttl = .*/default_ttl = "0s"/' \
    -e '/^\[rate_limit\]/,/^burst/d' -e 's/^max_limit = 500$/max_limit = 1000/' \
    -e "s|^connection_string = .*|connection_string = \"Driver=SQLite3;Database=$1\"|" \
    config/demo.toml >"$1.toml"
  echo "$1.toml"
}

printf '| jobs | Portico NDJSON rows/s | raw odbc-api loop rows/s | Portico / raw | Portico peak RSS (VmHWM) |\n'
printf '| --- | --- | --- | --- | --- |\n'
for jobs in $small $big; do
  db=$work/legacy-$jobs.db
  sed -e "s/WHERE i < 10000)/WHERE i < $jobs)/" -e 's/(i \* 1\.1)/(i * 0.11)/g' config/demo/legacy.sql |
    sqlite3 "$db" >/dev/null
  cfg=$(config "$db")
  token=$("$target/portico" token --config "$cfg" --scope jobs:read --scope jobs:read:all --scope jobs:read:amounts)
  PORTICO_STATE="$work/state-$jobs.sqlite3" PORTICO_LOG=error "$target/portico" serve --config "$cfg" & pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  start=$(date +%s.%N)
  rows=$(curl -sfN -H "Authorization: Bearer $token" -H 'Accept: application/x-ndjson' \
    "http://127.0.0.1:$port/v1/jobs" | wc -l)
  end=$(date +%s.%N)
  hwm=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  rate=$(awk -v n="$rows" -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", n / (b - a)}')
  raw=$(DEMO_DB=$db "$target/examples/odbc_baseline" --config "$cfg" --jobs "$jobs" \
    --query "limit=1000" --seconds "$seconds" --threads 1 page | sed 's/.*= //; s|/s||')
  raw_rows=$(awk -v r="$raw" 'BEGIN {printf "%.0f", r * 1000}')
  ratio=$(awk -v a="$rate" -v b="$raw_rows" 'BEGIN {printf "%.2f", a / b}')
  printf '| %s (%s exported) | %s | %s | %s | %s |\n' "$jobs" "$rows" "$rate" "$raw_rows" "$ratio" "$hwm"
done
echo
echo "SQLite; $(nproc) cores; one export at a time; export_chunk_rows = 1000 (the default)."
