#!/usr/bin/env bash
# Portico against the database's own client and against the raw driver, in one run, on SQLite,
# PostgreSQL and MariaDB holding the same 100,000 legacy jobs (the demo's script with the job
# count raised; its rows copied into the two servers byte for byte). For a key lookup, a
# filtered list of 56 rows and a 100-row page:
#   own client   pgbench (-M simple and -M prepared) for PostgreSQL; bench/own_client.c (a C
#                loop over libsqlite3 / libmariadb, text and prepared) for SQLite and MariaDB;
#   raw loop     the same statements through odbc-api (examples/odbc_baseline.rs);
#   Portico      wrk on loopback with the cache off (default_ttl 0s) and on (600s).
# Every client runs the SQL text Portico generates for the request (odbc_baseline --print-sql).
# Run from the repository root (make bench). BENCH_SECONDS (10) per measurement,
# BENCH_DATABASES ("sqlite postgres mariadb") to run fewer, BENCH_JOBS (100000), BENCH_PORTICO
# (another portico binary to measure, e.g. an earlier release).
set -euo pipefail
seconds=${BENCH_SECONDS:-10}
databases=${BENCH_DATABASES:-sqlite postgres mariadb}
jobs=${BENCH_JOBS:-100000}
port=${BENCH_PORT:-18080}
# Customer C00042 has 500 jobs, 56 of them rush jobs (CUST_NO is indexed).
filter="customer_id=C00042&rush=true&limit=100"
# Open jobs by status and year of their yyyymmdd due date: one GROUP BY over every job.
aggregate="group_by=status,due_on:year&count=true&sum=quote_amount&min=due_on&max=due_on"
wrk_threads=2 wrk_connections=32 warmup=2
export BENCH_JOBS=$jobs

cargo build --release --locked --bin portico --example odbc_baseline
work=$(mktemp -d /tmp/portico-bench.XXXXXX)
chmod 755 "$work"
pid= pg_data= maria_pid=
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$pg_data" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1
  [ -n "$maria_pid" ] && kill "$maria_pid" 2>/dev/null && wait "$maria_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -o "$work/own_client" bench/own_client.c $(mariadb_config --cflags --libs) -lsqlite3 -lpthread
baseline=target/release/examples/odbc_baseline
[ -n "${CARGO_TARGET_DIR:-}" ] && baseline=$CARGO_TARGET_DIR/release/examples/odbc_baseline
portico=${BENCH_PORTICO:-${baseline%/examples/odbc_baseline}/portico}

# free_port N: the first port from N on that nothing listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# The data: the demo's script with $jobs jobs over the same thirty years, and its rows as CSV
# (raw Windows-1252 bytes, \N for NULL) for the servers.
echo "building $jobs jobs..." >&2
sed -e "s/WHERE i < 10000)/WHERE i < $jobs)/" -e 's/(i \* 1\.1)/(i * 0.11)/g' config/demo/legacy.sql |
  sqlite3 "$work/legacy.db" >/dev/null
for table in CUSTMAST JOBHDR JOBOPS; do
  sqlite3 -csv -nullvalue '\N' "$work/legacy.db" "SELECT * FROM $table" >"$work/$table.csv"
done
chmod 644 "$work"/*.csv

# The demo's tables as legacy.sql declares them; PRIORITY is BIGINT as SQLite's INTEGER is (and
# as the demo configuration declares it), so the configuration stays the same on every database.
schema() { # schema QUOTE TIMESTAMP TABLE_SUFFIX
  local q=$1
  cat <<SQL | sed "s/\"/$q/g"
CREATE TABLE "CUSTMAST" ("CUST_NO" CHAR(8) NOT NULL PRIMARY KEY, "CUST_NAME" CHAR(30) NOT NULL,
  "CITY" CHAR(20), "ACTIVE" CHAR(1) NOT NULL, "CREDIT_LIM" DECIMAL(11,2), "OPENED_DT" CHAR(8) NOT NULL)$3;
CREATE TABLE "JOBHDR" ("JOB_NO" CHAR(10) NOT NULL PRIMARY KEY, "CUST_NO" CHAR(8) NOT NULL,
  "DESCR" VARCHAR(60), "STATUS" CHAR(1) NOT NULL, "PRIORITY" BIGINT, "ORDER_DT" INTEGER NOT NULL,
  "DUE_DT" CHAR(8) NOT NULL, "SHIP_DT" NUMERIC(7,0) NOT NULL, "QUOTE_AMT" DECIMAL(13,2),
  "RUSH" CHAR(1) NOT NULL, "LAST_UPD" $2 NOT NULL)$3;
CREATE INDEX "JOBHDR_CUST" ON "JOBHDR" ("CUST_NO");
CREATE INDEX "JOBHDR_DUE" ON "JOBHDR" ("DUE_DT");
CREATE INDEX "JOBHDR_STATUS" ON "JOBHDR" ("STATUS");
CREATE INDEX "JOBHDR_UPD" ON "JOBHDR" ("LAST_UPD");
CREATE TABLE "JOBOPS" ("JOB_NO" CHAR(10) NOT NULL, "OP_SEQ" INTEGER NOT NULL, "WORK_CTR" CHAR(6) NOT NULL,
  "OP_DESC" VARCHAR(40), "STD_HRS" DECIMAL(7,2), "DONE_FLAG" CHAR(1) NOT NULL,
  "DONE_DT" VARCHAR(10) NOT NULL, PRIMARY KEY ("JOB_NO", "OP_SEQ"))$3;
SQL
}

# PostgreSQL: a SQL_ASCII database keeps the Windows-1252 bytes as they are.
start_postgres() {
  pg_port=$(free_port 25432)
  mkdir "$work/pg"
  [ ${#as_pg[@]} -gt 0 ] && chown postgres "$work/pg"
  "${as_pg[@]}" "$pg_bin/initdb" -U postgres --auth=trust --locale=C -E UTF8 -D "$work/pg/data" >/dev/null
  pg_data=$work/pg/data
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/log" -w -o \
    "-p $pg_port -c listen_addresses=127.0.0.1 -k $work/pg -c fsync=off -c max_connections=200 -c shared_buffers=256MB" \
    start >/dev/null
  psql=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres)
  "${psql[@]}" -d postgres -c "CREATE DATABASE bench ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
  schema '"' TIMESTAMP "" | "${psql[@]}" -d bench
  for table in CUSTMAST JOBHDR JOBOPS; do
    "${psql[@]}" -d bench -c "\\copy \"$table\" FROM '$work/$table.csv' WITH (FORMAT csv, NULL '\\N')"
  done
  "${psql[@]}" -d bench -c "VACUUM ANALYZE"
  connection_string="Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=$pg_port;Database=bench;Uid=postgres;Pwd=;ConnSettings={SET client_encoding TO 'SQL_ASCII'};"
}

# MariaDB: latin1 (MariaDB's latin1 is Windows-1252) columns, read over a latin1 connection,
# keep the bytes as they are.
start_mariadb() {
  local dir=$work/maria user=()
  [ "$(id -u)" -eq 0 ] && user=(--user=root)
  mkdir "$dir"
  mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db "${user[@]}" >/dev/null 2>&1
  maria_port=$(free_port 23306)
  mariadbd --no-defaults --datadir="$dir/data" --port="$maria_port" --bind-address=127.0.0.1 \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --skip-log-bin --local-infile=1 \
    --innodb-buffer-pool-size=256M --max-connections=200 "${user[@]}" >"$dir/log" 2>&1 &
  maria_pid=$!
  for _ in $(seq 300); do
    mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  maria_socket=$dir/mysqld.sock
  mysql=(mariadb --no-defaults --socket="$maria_socket" -uroot --local-infile=1)
  "${mysql[@]}" -e "CREATE DATABASE bench CHARACTER SET latin1"
  schema '`' DATETIME " CHARACTER SET latin1" | "${mysql[@]}" bench
  for table in CUSTMAST JOBHDR JOBOPS; do
    "${mysql[@]}" bench -e "LOAD DATA LOCAL INFILE '$work/$table.csv' INTO TABLE $table CHARACTER SET latin1 \
      FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'"
  done
  "${mysql[@]}" bench -e "ANALYZE TABLE CUSTMAST, JOBHDR, JOBOPS" >/dev/null
  connection_string="Driver={MariaDB Unicode};Server=localhost;Socket=$maria_socket;Database=bench;Uid=root;Pwd=;CHARSET=latin1;"
}

# configure DB TTL: the demo configuration over DB's copy, every resource cached for TTL (0s:
# not cached), without the demo's per-caller rate limit (wrk is one caller).
configure() {
  local dialect=$1 cs_line=""
  [ "$1" = mariadb ] && dialect=mysql
  [ "$1" != sqlite ] && cs_line="s|^connection_string = .*|connection_string = \"$connection_string\"|"
  sed -e "s/^listen = .*/listen = \"127.0.0.1:$port\"/" -e "s/^default_ttl = .*/default_ttl = \"$2\"/" \
    -e '/^\[rate_limit\]/,/^burst/d' -e "s/^dialect = .*/dialect = \"$dialect\"/" -e "$cs_line" \
    config/demo.toml >"$work/$1-$2.toml"
  echo "$work/$1-$2.toml"
}
export DEMO_DB=$work/legacy.db
url="http://127.0.0.1:$port"
serve() { # serve CONFIG
  PORTICO_STATE="$work/state-$RANDOM.sqlite3" PORTICO_LOG=error "$portico" serve --config "$1" & pid=$!
  for _ in $(seq 300); do curl -sf "$url/healthz" >/dev/null && return; sleep 0.1; done
  echo "portico did not start" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
# load ARGS...: wrk, printing "req/s p99" (a warm-up run first).
load() {
  wrk -t$wrk_threads -c$wrk_connections -d${warmup}s "$@" >/dev/null
  wrk -t$wrk_threads -c$wrk_connections -d${seconds}s --latency "$@" |
    awk '/Requests\/sec/ {r=$2} / 99%/ {p=$2} /Non-2xx/ {bad=1} END {if (bad) print "failed", "-"; else print r, p}'
}
sql_of() { "$baseline" --config "$1" --jobs "$jobs" --query "$filter" --print-sql "$2"; }

# own_client DB MODE(key|filtered|page) CONFIG: "simple/s prepared/s".
own_client() {
  local out=() sql params=()
  mapfile -t lines < <(sql_of "$3" "$2")
  sql=${lines[0]} params=("${lines[@]:1}")
  if [ "$1" = postgres ]; then
    # pgbench: the key is written from a random number in SQL (pgbench variables are numbers);
    # other parameters are variables, written as literals in simple mode, bound when prepared.
    local script=$work/pg-$2.sql simple=() prepared=() i=0
    local key="CAST('J' || lpad(CAST(:n AS text), 6, '0') AS char(10))"
    for p in "${params[@]}"; do
      i=$((i + 1))
      if [ "$p" = "?" ]; then
        sql=${sql/\?/$key}
      else
        sql=${sql/\?/:p$i}
        simple+=(-D "p$i='$p'") prepared+=(-D "p$i=$p")
      fi
    done
    printf '\\set n random(1, %s)\n%s;\n' "$jobs" "$sql" >"$script"
    for m in simple prepared; do
      local defs=("${simple[@]}")
      [ $m = prepared ] && defs=("${prepared[@]}")
      out+=("$(pgbench -n -c8 -j2 -T "$seconds" -M $m "${defs[@]}" -f "$script" \
        -h 127.0.0.1 -p "$pg_port" -U postgres bench 2>/dev/null |
        awk '/^tps/ {printf "%.0f", $3}')")
    done
  else
    local target=$work/legacy.db threads=$(nproc)
    # MariaDB serves each connection in its own thread: 8 connections, as pgbench's -c8.
    [ "$1" = mariadb ] && target=$maria_socket:bench threads=8
    for m in simple prepared; do
      out+=("$("$work/own_client" "$1" "$target" $m "$seconds" "$threads" "$jobs" "$sql" "${params[@]}" |
        sed 's|/s||')")
    done
  fi
  echo "${out[0]} ${out[1]}"
}
raw_loop() { # raw_loop CONFIG MODE
  "$baseline" --config "$1" --jobs "$jobs" --query "$filter" --seconds "$seconds" --threads "$(nproc)" "$2" |
    sed 's/.*= //; s|/s||'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "-"}'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + 0 > b + 0) ? a : b}'; }
# Every request carries a bearer token (HS256, verified per request): staff see every job,
# the portal token only customer C00002's jobs (a row policy and a field mask apply).
token() { "$portico" token --config "$1" "${@:2}"; }

bench_database() {
  local db=$1
  case $db in
    postgres) start_postgres ;;
    mariadb) start_mariadb ;;
    sqlite) ;;
    *) echo "unknown database $db (sqlite, postgres, mariadb)" >&2; exit 2 ;;
  esac
  local uncached cached
  uncached=$(configure "$db" 0s) cached=$(configure "$db" 600s)
  echo "$db: own client..." >&2
  declare -A own raw rate p99
  for m in key filtered page; do own[$m]=$(own_client "$db" $m "$uncached"); done
  echo "$db: raw odbc-api loop..." >&2
  for m in key filtered page; do raw[$m]=$(raw_loop "$uncached" $m); done
  raw[aggregate]=$("$baseline" --config "$uncached" --query "$aggregate" --seconds "$seconds" \
    --threads "$(nproc)" aggregate | sed 's/.*= //; s|/s||')
  local staff portal
  staff="Authorization: Bearer $(token "$uncached" --scope jobs:read --scope jobs:read:all --scope jobs:read:amounts)"
  portal="Authorization: Bearer $(token "$uncached" --subject portal --scope jobs:read --claim customer_id=C00002)"
  for ttl in uncached cached; do
    echo "$db: Portico $ttl..." >&2
    serve "${!ttl}"
    # Cached lookups ask a hot set of keys (a portal's users ask their own jobs again); over all
    # 100,000 a 12-second run would mostly miss and measure the database.
    keys=$jobs
    [ $ttl = cached ] && keys=${BENCH_HOT_KEYS:-10000}
    read -r "rate[$ttl-key]" "p99[$ttl-key]" < <(BENCH_JOBS=$keys load -H "$staff" -s bench/key.lua "$url")
    read -r "rate[$ttl-filtered]" "p99[$ttl-filtered]" < <(load -H "$staff" "$url/v1/jobs?$filter")
    read -r "rate[$ttl-page]" "p99[$ttl-page]" < <(load -H "$staff" "$url/v1/jobs?limit=100")
    read -r "rate[$ttl-portal]" "p99[$ttl-portal]" < <(load -H "$portal" "$url/v1/jobs?limit=100")
    if [ $ttl = uncached ]; then
      # The same rows everywhere: the filtered list's answer, compared across databases.
      curl -sf -H "$staff" "$url/v1/jobs?$filter" | sha256sum | cut -c1-16 >"$work/answer-$db"
    fi
    # A GROUP BY over every job holds a source slot for a while: as many connections as the
    # demo source has slots (max_concurrency 4), so none is refused as saturated.
    read -r "rate[$ttl-aggregate]" "p99[$ttl-aggregate]" < <(wrk_connections=4 load -H "$staff" "$url/v1/jobs/aggregate?$aggregate")
    stop
  done

  echo
  echo "### $db"
  echo
  echo "| request | own client/s (simple / prepared) | raw odbc-api loop/s | Portico uncached req/s (p99) | Portico cached req/s (p99) | uncached / own client | uncached / raw |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  local label m s p
  for m in key filtered page portal aggregate; do
    case $m in
      key) label='GET /v1/jobs/{id}' ;;
      filtered) label="GET /v1/jobs?$filter (56 rows)" ;;
      page) label='GET /v1/jobs?limit=100' ;;
      portal) label='same, portal token (row policy)' ;;
      aggregate) label="GET /v1/jobs/aggregate?$aggregate" ;;
    esac
    if [ $m = portal ]; then
      s=- p=- r=-
    elif [ $m = aggregate ]; then
      s=- p=- r=${raw[aggregate]}
    else
      read -r s p <<<"${own[$m]}"
      r=${raw[$m]}
    fi
    printf '| %s | %s / %s | %s | %.0f (%s) | %.0f (%s) | %s | %s |\n' "$label" "${s:--}" "${p:--}" "$r" \
      "${rate[uncached-$m]}" "${p99[uncached-$m]}" "${rate[cached-$m]}" "${p99[cached-$m]}" \
      "$(ratio "${rate[uncached-$m]}" "$(best "$s" "$p")")" "$(ratio "${rate[uncached-$m]}" "$r")"
  done
  echo
  case $db in
    postgres)
      "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null; pg_data=
      echo "own client: pgbench -n -c8 -j2 -T$seconds (-M simple / -M prepared), the key drawn by random() and written in SQL." ;;
    mariadb)
      kill "$maria_pid"; wait "$maria_pid" 2>/dev/null || true; maria_pid=
      echo "own client: bench/own_client.c over libmariadb, 8 connections on 8 threads (mysql_real_query / mysql_stmt)." ;;
    sqlite)
      echo "own client: bench/own_client.c over libsqlite3, $(nproc) threads (sqlite3_prepare per query / prepared once)." ;;
  esac
  if [ "$db" != sqlite ] && [ -f "$work/answer-sqlite" ]; then
    cmp -s "$work/answer-sqlite" "$work/answer-$db" && echo "the filtered list's answer is the same as SQLite's." ||
      echo "note: the filtered list's answer differs from SQLite's."
  fi
}

for db in $databases; do bench_database "$db"; done
echo
echo "$jobs jobs; $(nproc) cores shared by every process; each figure a ${seconds}s run; wrk -t$wrk_threads -c$wrk_connections"
echo "cached key lookups ask ${BENCH_HOT_KEYS:-10000} of the jobs again and again (uncached ones: all of them)."
echo "on loopback after a ${warmup}s warm-up; the raw loop: $(nproc) threads, one connection and one prepared statement each;"
echo "uncached / own client is against the better of simple and prepared."
echo "the aggregate: wrk -c4 (the demo source's max_concurrency), the raw loop as above."
