#!/usr/bin/env bash
# What tracing costs on the cached key lookup (GET /v1/jobs/{id}, the demo on SQLite, cache on,
# 10,000 hot keys as bench/run.sh asks them), in one run, wrk on loopback:
#   baseline     BENCH_BASELINE, a portico binary from before tracing (the row is skipped
#                without one: building an old revision is left to the caller);
#   tracing off  this portico, no [telemetry] section;
#   tracing on   this portico exporting every span (sample_ratio 1.0) over OTLP/HTTP to a
#                receiver that answers 200 and discards them;
#   sampled      the same with sample_ratio 0.01: spans are made, one trace in 100 exported.
# Each binary is measured BENCH_ROUNDS (2) times in alternation and its best run kept, so
# that a neighbour's burst on a shared machine hurts one run, not one binary.
# Run from the repository root. BENCH_SECONDS (10) per run; BENCH_PORTICO (this portico,
# ${CARGO_TARGET_DIR:-target}/release/portico, built first).
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-2}
port=${BENCH_PORT:-18082}
portico=${BENCH_PORTICO:-${CARGO_TARGET_DIR:-target}/release/portico}
baseline=${BENCH_BASELINE:-}
# Built every time (a no-op when fresh) unless another binary was named: a stale one would be
# measured otherwise.
[ -n "${BENCH_PORTICO:-}" ] || cargo build --release --locked --bin portico
work=$(mktemp -d /tmp/portico-tracing.XXXXXX)
pid= sink_pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# free_port N: the first port from N on that nothing listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# An OTLP/HTTP receiver that reads each export and throws it away.
sink_port=$(free_port $((port + 100)))
python3 - "$sink_port" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Discard).serve_forever()
PY
sink_pid=$!

sqlite3 "$work/legacy.db" <config/demo/legacy.sql >/dev/null
export DEMO_DB=$work/legacy.db
# The demo, every resource cached for 600s, without its per-caller rate limit (wrk is one caller).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e 's/^default_ttl = .*/default_ttl = "600s"/' \
  -e '/^\[rate_limit\]/,/^burst/d' config/demo.toml >"$work/off.toml"
{ cat "$work/off.toml"; printf '\n[telemetry]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = 1.0\n' "$sink_port"; } \
  >"$work/on.toml"
sed 's/^sample_ratio = 1.0$/sample_ratio = 0.01/' "$work/on.toml" >"$work/sampled.toml"
token=$("$portico" token --config "$work/off.toml" --scope jobs:read --scope jobs:read:all --scope jobs:read:amounts)
url="http://127.0.0.1:$port"

serve() { # serve BINARY CONFIG
  PORTICO_STATE="$work/state-$RANDOM.sqlite3" PORTICO_LOG=error "$1" serve --config "$2" & pid=$!
  for _ in $(seq 300); do curl -sf "$url/healthz" >/dev/null && return; sleep 0.1; done
  echo "portico did not start" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
# measure BINARY CONFIG: req/s of the cached key lookup (after a warm-up that fills the cache).
measure() {
  serve "$1" "$2"
  BENCH_JOBS=10000 wrk -t2 -c32 -d3s -H "Authorization: Bearer $token" -s bench/key.lua "$url" >/dev/null
  local out
  out=$(BENCH_JOBS=10000 wrk -t2 -c32 -d"${seconds}s" -H "Authorization: Bearer $token" -s bench/key.lua "$url")
  stop
  if grep -q "Non-2xx" <<<"$out"; then echo "$out" >&2; echo "answers other than 200 under load" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}
best() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + 0 > b + 0) ? a : b}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.3f", a / b; else printf "-"}'; }

declare -A rate=([baseline]=0 [off]=0 [on]=0 [sampled]=0) runs=([baseline]= [off]= [on]= [sampled]=)
# run NAME BINARY CONFIG: one measurement, kept in runs[NAME], the best in rate[NAME].
run() {
  local r
  r=$(measure "$2" "$3")
  runs[$1]+=" $(printf '%.0f' "$r")"
  rate[$1]=$(best "${rate[$1]}" "$r")
}
for round in $(seq "$rounds"); do
  echo "round $round..." >&2
  [ -n "$baseline" ] && run baseline "$baseline" "$work/off.toml"
  run off "$portico" "$work/off.toml"
  run on "$portico" "$work/on.toml"
  run sampled "$portico" "$work/sampled.toml"
done

echo
echo "| cached GET /v1/jobs/{id} (SQLite) | req/s (best of $rounds) | every run |"
echo "| --- | --- | --- |"
[ -n "$baseline" ] && printf '| before tracing (%s) | %.0f |%s |\n' "$baseline" "${rate[baseline]}" "${runs[baseline]}"
printf '| tracing off | %.0f |%s |\n' "${rate[off]}" "${runs[off]}"
printf '| tracing on, every span exported | %.0f |%s |\n' "${rate[on]}" "${runs[on]}"
printf '| tracing on, 1%% of traces exported | %.0f |%s |\n' "${rate[sampled]}" "${runs[sampled]}"
echo
[ -n "$baseline" ] && echo "tracing off / before: $(ratio "${rate[off]}" "${rate[baseline]}")"
echo "tracing on / off: $(ratio "${rate[on]}" "${rate[off]}") (every span), $(ratio "${rate[sampled]}" "${rate[off]}") (1% sampled)"
echo "wrk -t2 -c32, ${seconds}s per run after a 3s warm-up; $(nproc) cores shared by every process."
