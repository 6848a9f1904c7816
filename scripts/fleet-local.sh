#!/usr/bin/env bash
# The fleet of docker/compose.fleet.yml without Docker: a throwaway PostgreSQL for state, three
# `portico serve` replicas of config/fleet.toml (a, b, c on 127.0.0.1:8081-8083) over a copy of
# the demo database, and HAProxy with docker/haproxy.cfg itself in front (127.0.0.1:8080,
# status page 127.0.0.1:8404/stats). Serves until interrupted, then stops everything.
#   bash scripts/fleet-local.sh             # after `cargo build --release` and `make demo-db`
# Needs haproxy and PostgreSQL's server binaries (apt-get install haproxy postgresql).
# PORTICO (the binary, default target/release/portico), FLEET_DIR (work directory, default a
# new temporary one; its replica-*.log and haproxy.log are kept while it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
portico=${PORTICO:-${CARGO_TARGET_DIR:-target}/release/portico}
[ -x "$portico" ] || { echo "$portico is missing: cargo build --release --locked" >&2; exit 1; }
[ -f config/demo/legacy.db ] || { echo "config/demo/legacy.db is missing: make demo-db" >&2; exit 1; }
work=${FLEET_DIR:-$(mktemp -d /tmp/portico-fleet.XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pids=() pg_data=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "$pg_data" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1
  echo "stopped; logs in $work" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port N: the first port from N on that nothing listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
pg_port=$(free_port 55432)
mkdir -p "$work/pg"
[ ${#as_pg[@]} -gt 0 ] && chown postgres "$work/pg"
"${as_pg[@]}" "$pg_bin/initdb" -U portico --auth=trust --locale=C -E UTF8 -D "$work/pg/data" >/dev/null
pg_data=$work/pg/data
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/log" -w \
  -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work/pg" start >/dev/null
psql -X -q -h 127.0.0.1 -p "$pg_port" -U portico -d postgres -c "CREATE DATABASE portico"

# The replicas read and write one copy of the demo database, as they share one in Docker.
cp config/demo/legacy.db "$work/legacy.db"
export PORTICO_STATE_URL="postgres://portico@127.0.0.1:$pg_port/portico" DEMO_DB=$work/legacy.db
for replica in a b c; do
  port=$((8081 + $(printf '%d' "'$replica") - 97))
  PORTICO_LISTEN=127.0.0.1:$port PORTICO_REPLICA=$replica \
    "$portico" serve --config config/fleet.toml >"$work/replica-$replica.log" 2>&1 &
  pids+=($!)
  echo "replica $replica: pid $!, http://127.0.0.1:$port" >&2
done
haproxy -db -f docker/haproxy.cfg >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
echo "haproxy: pid $haproxy_pid, http://127.0.0.1:8080 (status: http://127.0.0.1:8404/stats)" >&2
echo "state: $PORTICO_STATE_URL; logs in $work; Ctrl-C stops the fleet" >&2
# A replica killed on purpose is HAProxy's to take out; the fleet runs while HAProxy does.
wait "$haproxy_pid" || true
echo "haproxy ended" >&2
