"""The fleet, measured in one run: webhook deliveries per second from one and from three
replicas over one PostgreSQL state store to the same receiver, and the latency of a POST with
an `Idempotency-Key` (its claim and its answer go through the state store) on the SQLite store
and on the PostgreSQL store.

Deliveries: a SQLite legacy table watched by `high_water_mark` (1 s poll) with BENCH_BULK rows
inserted at once, directly in the database; BENCH_SUBSCRIPTIONS subscriptions (the
per-subscription in-flight limit holds across the fleet, so one subscription would cap the
fleet at 16 requests at once) all to one receiver, examples/webhook_sink.rs, which verifies
every signature and counts distinct (subscription, webhook-id) pairs. The rate runs from the first to the last
delivery received; the receiver's own ceiling (wrk posting one signed request) is measured in
the same run. Each replica count gets a fresh table and a fresh state database.

Writes: one replica, BENCH_WRITES sequential POSTs over a kept-alive connection, each with a
new key; then the same without a key (the write alone), and the first keys sent again
(replays answered from the store). PostgreSQL runs with its default durability (fsync on),
as Portico's SQLite store does (synchronous = FULL).

Run from the repository root (make bench does both):
  cargo build --release --locked --bin portico --example webhook_sink
  .venv/bin/python bench/fleet.py
"""
import base64
import datetime
import glob
import http.client
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from standardwebhooks.webhooks import Webhook

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
BULK = int(os.environ.get("BENCH_BULK", "5000"))
SUBSCRIPTIONS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "4"))
WRITES = int(os.environ.get("BENCH_WRITES", "2000"))
TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
PORTICO = os.environ.get("BENCH_PORTICO", os.path.join(TARGET, "release", "portico"))
SINK = os.path.join(TARGET, "release", "examples", "webhook_sink")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, seconds, done):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if done():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


class Postgres:
    """A throwaway PostgreSQL server in a temporary directory (as bench/run.sh starts its own)."""

    def __init__(self, work):
        pg_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(p.split("/")[-2]))[-1]
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        self.pg_ctl = os.path.join(pg_bin, "pg_ctl")
        self.dir = os.path.join(work, "pg")
        os.mkdir(self.dir)
        if self.as_pg:
            shutil.chown(self.dir, "postgres")
        self.data = os.path.join(self.dir, "data")
        subprocess.run(self.as_pg + [os.path.join(pg_bin, "initdb"), "-U", "postgres", "--auth=trust",
                                     "--locale=C", "-E", "UTF8", "-D", self.data],
                       check=True, stdout=subprocess.DEVNULL)
        self.port = free_port()
        subprocess.run(self.as_pg + [self.pg_ctl, "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                                     "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                                           "-c max_connections=200", "start"],
                       check=True, stdout=subprocess.DEVNULL)

    def database(self, name):
        """A new, empty database: its state URL."""
        subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-d", "postgres", "-c", f"CREATE DATABASE {name}"], check=True)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        subprocess.run(self.as_pg + [self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tickets_table(path):
    legacy = sqlite3.connect(path, isolation_level=None)
    legacy.execute("PRAGMA journal_mode = WAL")
    legacy.execute("CREATE TABLE TICKETS (ID TEXT PRIMARY KEY, STATUS TEXT NOT NULL, UPDATED TIMESTAMP NOT NULL)")
    return legacy


def config_text(db, state, listen, replica=None, feed=True, subscriptions=""):
    """A Portico configuration serving TICKETS of the SQLite file `db`; `state` is a [state]
    url (postgres://) or a path."""
    state_line = f'url = "{state}"' if state.startswith("postgres") else f'path = "{state}"'
    if replica and state.startswith("postgres"):
        state_line += f'\nreplica = "{replica}"'
    changes = ('changes = { strategy = "high_water_mark", column = "UPDATED", poll_interval = "1s" }'
               if feed else "")
    return f"""
[server]
listen = "{listen}"
[auth]
development = true
issuer = "bench"
audience = "portico"
[[auth.keys]]
algorithm = "HS256"
secret = "bench-secret-bench-secret-bench-secret"
[sources.legacy]
kind = "odbc"
dialect = "sqlite"
connection_string = "Driver=SQLite3;Database={db}"
[state]
{state_line}
[webhooks]
allow_private = ["127.0.0.1"]
{subscriptions}
[versions.v1.resources.tickets]
source = "legacy"
table = "TICKETS"
key = ["id"]
read_scope = "tickets:read"
write_scope = "tickets:write"
writes = ["create"]
write_values = {{ UPDATED = {{ value = "now", column_type = "timestamp" }} }}
{changes}
[versions.v1.resources.tickets.fields]
id = {{ column = "ID", type = "string" }}
status = {{ column = "STATUS", type = "string" }}
updated_at = {{ column = "UPDATED", type = "datetime", read_only = true }}
"""


def serve(work, name, text):
    """Starts a Portico on configuration `text`; returns (process, base URL)."""
    path = os.path.join(work, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    listen = text.split('listen = "', 1)[1].split('"', 1)[0]
    process = subprocess.Popen([PORTICO, "serve", "--config", path],
                               env={**os.environ, "PORTICO_LOG": "warn"})
    base = f"http://{listen}"
    wait(f"{name} to answer", 60, lambda: get(f"{base}/healthz") is not None)
    return process, base


def stop(processes):
    for p in processes:
        p.terminate()
    for p in processes:
        p.wait()


def polled(bases):
    """The feed's poller (its leader, in a fleet) has completed a poll."""
    for base in bases:
        lines = (get(f"{base}/metrics") or "").splitlines()
        leads = [l for l in lines if l.startswith("portico_feed_leader{")]
        if leads and not any(l.endswith(" 1") for l in leads):
            continue
        if any(l.startswith("portico_change_poll_lag_seconds") and not l.endswith(" -1") for l in lines):
            return True
    return False


def stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def sink_stats(sink_url):
    return json.loads(get(f"{sink_url}/stats"))


def deliveries(work, sink_url, label, state, replicas):
    """Deliveries per second from `replicas` replicas over `state`: (rate, received, distinct,
    seconds after the commit for the last)."""
    db = os.path.join(work, f"legacy-{label}.db")
    legacy = tickets_table(db)
    subscriptions = "".join(f"""
[subscriptions.s{i}]
url = "{sink_url}/hook/{i}"
version = "v1"
secret = "{SECRET}"
scopes = ["tickets:read"]
""" for i in range(SUBSCRIPTIONS))
    processes, bases = [], []
    try:
        for r in range(replicas):
            name = f"{label}-{chr(ord('a') + r)}"
            p, base = serve(work, name, config_text(db, state, f"127.0.0.1:{free_port()}", name,
                                                    subscriptions=subscriptions))
            processes.append(p)
            bases.append(base)
        wait("the feed's first poll", 60, lambda: polled(bases))
        # One row through the whole path first: the feed and every subscription are live.
        urllib.request.urlopen(urllib.request.Request(f"{sink_url}/reset", method="POST")).read()
        legacy.execute("INSERT INTO TICKETS VALUES ('W', 'O', ?)", (stamp(),))
        wait("the first row's deliveries", 60, lambda: sink_stats(sink_url)["distinct"] >= SUBSCRIPTIONS)
        urllib.request.urlopen(urllib.request.Request(f"{sink_url}/reset", method="POST")).read()
        expected = BULK * SUBSCRIPTIONS
        legacy.execute("BEGIN")
        now = stamp()
        legacy.executemany("INSERT INTO TICKETS VALUES (?, 'O', ?)", [(f"N{i:06d}", now) for i in range(BULK)])
        legacy.execute("COMMIT")
        committed = time.time()
        wait("every delivery", 900, lambda: sink_stats(sink_url)["distinct"] >= expected)
        time.sleep(1)  # late duplicates, if any, are counted too
        s = sink_stats(sink_url)
        if s["bad_signatures"]:
            sys.exit(f"{s['bad_signatures']} deliveries failed the signature check")
        return (s["accepted"] - 1) / (s["last"] - s["first"]), s["accepted"], s["distinct"], s["last"] - committed
    finally:
        stop(processes)


def sink_ceiling(work, sink_url, connections):
    """Requests per second the receiver takes from wrk posting one signed delivery."""
    now = datetime.datetime.now(datetime.timezone.utc)
    body = json.dumps({"type": "tickets.created", "data": {"key": "x"}})
    signature = Webhook(SECRET).sign("msg_ceiling", now, body)
    script = os.path.join(work, "sink.lua")
    with open(script, "w") as f:
        f.write(f"""wrk.method = "POST"
wrk.body = {json.dumps(body)}
wrk.headers["content-type"] = "application/json"
wrk.headers["webhook-id"] = "msg_ceiling"
wrk.headers["webhook-timestamp"] = "{int(now.timestamp())}"
wrk.headers["webhook-signature"] = "{signature}"
""")
    urllib.request.urlopen(urllib.request.Request(f"{sink_url}/reset", method="POST")).read()
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", "-d5s", "-s", script, f"{sink_url}/hook/0"],
                         check=True, capture_output=True, text=True).stdout
    s = sink_stats(sink_url)
    if s["bad_signatures"] or not s["accepted"]:
        sys.exit(f"the receiver refused wrk's signed requests: {s}")
    return float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def post_latencies(base, token, bodies, keys):
    """Seconds each POST took, sequentially on one kept-alive connection."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    seconds = []
    for body, key in zip(bodies, keys):
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        if key:
            headers["idempotency-key"] = key
        started = time.perf_counter()
        connection.request("POST", "/v1/tickets", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        seconds.append(time.perf_counter() - started)
        if response.status != 201:
            sys.exit(f"POST answered {response.status}")
    connection.close()
    return seconds


def write_latency(work, store, state):
    """p50/p99 (ms) of POSTs with a new key, without a key, and of replays."""
    db = os.path.join(work, f"writes-{store}.db")
    tickets_table(db).close()
    process, base = serve(work, f"writes-{store}", config_text(db, state, f"127.0.0.1:{free_port()}", feed=False))
    try:
        token = subprocess.run([PORTICO, "token", "--config", os.path.join(work, f"writes-{store}.toml"),
                                "--subject", "bench", "--scope", "tickets:write", "--scope", "tickets:read"],
                               check=True, capture_output=True, text=True).stdout.strip()
        body = lambda prefix, i: json.dumps({"id": f"{prefix}{i:06d}", "status": "O"})
        post_latencies(base, token, [body("WARM", i) for i in range(100)], [f"warm-{i}" for i in range(100)])
        keyed = post_latencies(base, token, [body("K", i) for i in range(WRITES)], [f"key-{i}" for i in range(WRITES)])
        plain = post_latencies(base, token, [body("P", i) for i in range(WRITES)], [None] * WRITES)
        replays = min(WRITES, 500)
        replayed = post_latencies(base, token, [body("K", i) for i in range(replays)],
                                  [f"key-{i}" for i in range(replays)])
        ms = lambda xs: (statistics.median(xs) * 1000, percentile(xs, 0.99) * 1000)
        return ms(keyed), ms(plain), ms(replayed)
    finally:
        stop([process])


def main():
    for binary in (PORTICO, SINK):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: cargo build --release --locked --bin portico --example webhook_sink")
    work = tempfile.mkdtemp(prefix="portico-fleet.")
    os.chmod(work, 0o755)
    pg = Postgres(work)
    sink = subprocess.Popen([SINK, "--secret", SECRET], stdout=subprocess.PIPE, text=True)
    try:
        sink_url = "http://" + sink.stdout.readline().strip().removeprefix("listening on ")
        ceiling = sink_ceiling(work, sink_url, 64)
        runs = {
            "1 (SQLite store)": deliveries(work, sink_url, "sqlite", os.path.join(work, "deliveries.sqlite3"), 1),
            "1": deliveries(work, sink_url, "one", pg.database("fleet_one"), 1),
            "3": deliveries(work, sink_url, "three", pg.database("fleet_three"), 3),
        }
        writes = {
            "SQLite": write_latency(work, "sqlite", os.path.join(work, "state.sqlite3")),
            "PostgreSQL": write_latency(work, "postgres", pg.database("writes")),
        }
    finally:
        sink.terminate()
        sink.wait()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nwebhook deliveries: {BULK} rows inserted at once, {SUBSCRIPTIONS} subscriptions "
          f"({BULK * SUBSCRIPTIONS} deliveries), one receiver (its ceiling: {ceiling:.0f} req/s, "
          f"wrk -t2 -c64 posting one signed request)")
    print("| replicas | deliveries/s | received | distinct (subscription, webhook-id) | last delivery after the commit |")
    print("| --- | --- | --- | --- | --- |")
    for n, (rate, received, distinct, last) in runs.items():
        print(f"| {n} | {rate:.0f} | {received} | {distinct} | {last:.1f} s |")
    print(f"\nPOST /v1/tickets, {WRITES} sequential requests on one connection, one replica "
          f"(replays: the first {min(WRITES, 500)} keys again)")
    print("| state store | with a new Idempotency-Key p50 / p99 | without a key p50 / p99 | replay p50 / p99 |")
    print("| --- | --- | --- | --- |")
    for store, (keyed, plain, replayed) in writes.items():
        print(f"| {store} | {keyed[0]:.2f} / {keyed[1]:.2f} ms | {plain[0]:.2f} / {plain[1]:.2f} ms | "
              f"{replayed[0]:.2f} / {replayed[1]:.2f} ms |")
    print(f"\n{os.cpu_count()} cores shared by every process (the replicas, PostgreSQL, the receiver).")


if __name__ == "__main__":
    main()
