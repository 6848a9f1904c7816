"""The state store's size after 100,000 change events, with retention on and off, in one run.

Two Porticos watch the same SQLite legacy table (high_water_mark, 200 ms poll) and deliver every
event to one subscription each: one with `[state] event_retention` and `delivery_retention` of
10 s and a 2 s prune interval, one with the defaults (3 days: nothing in this run is old enough
to be pruned, which is what a store without retention holds). Every row of the table changes
once per round; a round starts when both have delivered the previous one, so each detects every
change. The receiver answers 204 without verifying (the store's size is measured, not the
receiver; tests/api verifies signatures).

Reports rows per table and the bytes in use (pages minus free pages) when the last event is
delivered, and each file's size once Portico has stopped and the WAL is checkpointed.

Run from the repository root after `cargo build --release`: .venv/bin/python bench/state_size.py
(BENCH_EVENTS, default 100000; BENCH_ROWS rows changed per round, default 1000; PORTICO_BIN,
default target/release/portico).
"""
import base64
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000"))
PORTS = {"on": int(os.environ.get("BENCH_PORT", "18082")), "off": int(os.environ.get("BENCH_PORT", "18082")) + 1}
PORTICO = os.environ.get("PORTICO_BIN", "target/release/portico")
RETENTION = {"on": 'event_retention = "10s"\ndelivery_retention = "10s"\nprune_interval = "2s"', "off": ""}


class Counting(BaseHTTPRequestHandler):
    """Answers every POST 204 and counts it per path (`/on`, `/off`)."""
    protocol_version = "HTTP/1.1"
    counts = {"/on": 0, "/off": 0}
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.lock:
            self.counts[self.path] = self.counts.get(self.path, 0) + 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def wait(what, seconds, done):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if done():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def size(path):
    """Rows per table and bytes in use, read from the store while Portico runs."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    one = lambda sql: conn.execute(sql).fetchone()[0]
    found = {t: one(f"SELECT count(*) FROM {t}") for t in ("events", "deliveries", "attempts", "feed_rows")}
    found["in use"] = (one("PRAGMA page_count") - one("PRAGMA freelist_count")) * one("PRAGMA page_size")
    conn.close()
    return found


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def main():
    rounds = EVENTS // ROWS
    work = tempfile.mkdtemp()
    db = os.path.join(work, "legacy.db")
    legacy = sqlite3.connect(db, isolation_level=None)
    legacy.execute("PRAGMA journal_mode = WAL")
    legacy.execute("CREATE TABLE TICKETS (ID TEXT PRIMARY KEY, STATUS TEXT NOT NULL, "
                   "CUST TEXT NOT NULL, UPDATED TIMESTAMP NOT NULL)")
    legacy.executemany("INSERT INTO TICKETS VALUES (?, 'O', 'C00042', '2026-01-01 00:00:00')",
                       [(f"T{i:06d}",) for i in range(ROWS)])
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    processes, stores = {}, {}
    try:
        for mode in ("on", "off"):
            stores[mode] = os.path.join(work, f"state-{mode}.sqlite3")
            config = os.path.join(work, f"portico-{mode}.toml")
            with open(config, "w") as f:
                f.write(f"""
[server]
listen = "127.0.0.1:{PORTS[mode]}"
[sources.legacy]
kind = "odbc"
dialect = "sqlite"
connection_string = "Driver=SQLite3;Database={db}"
[state]
path = "{stores[mode]}"
{RETENTION[mode]}
[webhooks]
allow_private = ["127.0.0.1"]
[subscriptions.bench]
url = "{url}/{mode}"
version = "v1"
secret = "{secret}"
[versions.v1.resources.tickets]
source = "legacy"
table = "TICKETS"
key = ["id"]
anonymous = true
changes = {{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "200ms" }}
[versions.v1.resources.tickets.fields]
id = {{ column = "ID", type = "string" }}
status = {{ column = "STATUS", type = "string" }}
customer = {{ column = "CUST", type = "string" }}
updated_at = {{ column = "UPDATED", type = "datetime" }}
""")
            processes[mode] = subprocess.Popen([PORTICO, "serve", "--config", config],
                                               env={**os.environ, "PORTICO_LOG": "error"})

        def polled(mode):
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{PORTS[mode]}/metrics").read().decode()
            except OSError:
                return False
            return any(l.startswith("portico_change_poll_lag_seconds") and not l.endswith(" -1")
                       for l in text.splitlines())
        for mode in processes:
            wait(f"the first poll ({mode})", 60, lambda: polled(mode))

        started, peak = time.time(), 0
        for r in range(1, rounds + 1):
            stamp = f"2026-01-02 {r // 3600:02d}:{r // 60 % 60:02d}:{r % 60:02d}"
            legacy.execute("UPDATE TICKETS SET STATUS = ?, UPDATED = ?", ("C" if r % 2 else "O", stamp))
            wait(f"round {r}", 300, lambda: min(Counting.counts["/on"], Counting.counts["/off"]) >= r * ROWS)
            if r % 10 == 0:
                peak = max(peak, size(stores["on"])["in use"])
                print(f"  {r * ROWS} events delivered by each, {time.time() - started:.0f} s", file=sys.stderr)
        elapsed = time.time() - started
        at_end = {mode: size(stores[mode]) for mode in stores}
    finally:
        for p in processes.values():
            p.terminate()
            p.wait()
        receiver.shutdown()
    files = {}
    for mode, path in stores.items():
        sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        files[mode] = os.path.getsize(path)

    print(f"state store after {rounds * ROWS:,} events ({ROWS} rows x {rounds} rounds, high_water_mark, "
          f"one subscription, every event delivered; {elapsed:.0f} s, {rounds * ROWS / elapsed:.0f} events/s each):")
    print("| retention | events | deliveries | attempts | feed_rows | in use at the end | file |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for mode, label in (("off", "off (defaults, 3 days)"), ("on", "on (10 s, pruned every 2 s)")):
        s = at_end[mode]
        print(f"| {label} | {s['events']:,} | {s['deliveries']:,} | {s['attempts']:,} | {s['feed_rows']:,} | "
              f"{mib(s['in use'])} | {mib(files[mode])} |")
    off = at_end["off"]["in use"]
    print(f"without retention: {off / (rounds * ROWS):.0f} B in use per event (its delivery and attempt "
          f"included); with it, at most {mib(peak)} in use at any sampled point")


if __name__ == "__main__":
    main()
