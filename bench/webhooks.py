"""Change-to-delivery latency and sustained deliveries per second, in one run.

Serves a SQLite legacy table with a high_water_mark feed polled every second, changes rows
directly in the database (not through Portico), and times their arrival at the test receiver
(tests/api/support/webhook_receiver.py, which verifies every signature with standardwebhooks).
The baseline is the same receiver loaded directly by a 16-thread Python client with signed
requests: what the receiver can take at Portico's per-subscription concurrency.

Run from the repository root after `cargo build --release`: .venv/bin/python bench/webhooks.py
"""
import base64
import datetime
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from standardwebhooks.webhooks import Webhook

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
UPDATES = int(os.environ.get("BENCH_UPDATES", "100"))
BULK = int(os.environ.get("BENCH_BULK", "5000"))
PORT = int(os.environ.get("BENCH_PORT", "18081"))


def log_lines(path):
    """The receiver's complete log lines (one may be half written while it is read)."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def wait(what, seconds, done):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if done():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def start_receiver(log):
    receiver = subprocess.Popen(
        [sys.executable, "tests/api/support/webhook_receiver.py", "--secret", SECRET, "--log", log],
        stdout=subprocess.PIPE, text=True)
    address = receiver.stdout.readline().strip().removeprefix("listening on ")
    return receiver, f"http://{address}/hook"


def main():
    work = tempfile.mkdtemp()
    db = os.path.join(work, "legacy.db")
    legacy = sqlite3.connect(db, isolation_level=None)
    legacy.execute("PRAGMA journal_mode = WAL")
    legacy.execute("CREATE TABLE TICKETS (ID TEXT PRIMARY KEY, STATUS TEXT NOT NULL, UPDATED TIMESTAMP NOT NULL)")
    legacy.executemany("INSERT INTO TICKETS VALUES (?, 'O', '2026-01-01 00:00:00')",
                       [(f"T{i:04d}",) for i in range(UPDATES)])
    log = os.path.join(work, "received.jsonl")
    receiver, url = start_receiver(log)
    config = os.path.join(work, "portico.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{PORT}"
[sources.legacy]
kind = "odbc"
dialect = "sqlite"
connection_string = "Driver=SQLite3;Database={db}"
[state]
path = "{work}/state.sqlite3"
[webhooks]
allow_private = ["127.0.0.1"]
[subscriptions.bench]
url = "{url}"
version = "v1"
secret = "{SECRET}"
[versions.v1.resources.tickets]
source = "legacy"
table = "TICKETS"
key = ["id"]
anonymous = true
changes = {{ strategy = "high_water_mark", column = "UPDATED", poll_interval = "1s" }}
[versions.v1.resources.tickets.fields]
id = {{ column = "ID", type = "string" }}
status = {{ column = "STATUS", type = "string" }}
updated_at = {{ column = "UPDATED", type = "datetime" }}
""")
    portico = subprocess.Popen(["target/release/portico", "serve", "--config", config],
                               env={**os.environ, "PORTICO_LOG": "warn"})
    try:
        def polled():
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics").read().decode()
            except OSError:
                return False
            return any(l.startswith("portico_change_poll_lag_seconds") and not l.endswith(" -1")
                       for l in text.splitlines())
        wait("the first poll", 30, polled)

        # Latency: one row changed at a time, at random moments relative to the poll.
        written = {}
        for i in range(UPDATES):
            key = f"T{i:04d}"
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            legacy.execute("UPDATE TICKETS SET STATUS = 'C', UPDATED = ? WHERE ID = ?", (stamp, key))
            written[key] = time.time()
            time.sleep(random.uniform(0.05, 0.4))
        wait("every update", 60, lambda: len(log_lines(log)) >= UPDATES)
        arrived = {e["body"]["data"]["key"]: e["received_at"] for e in log_lines(log) if e["outcome"] == "accepted"}
        latencies = sorted(arrived[k] - written[k] for k in written)
        median = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]

        # Throughput: BULK rows appear at once; deliveries from the first to the last arrival.
        before = len(log_lines(log))
        legacy.execute("BEGIN")
        legacy.executemany("INSERT INTO TICKETS VALUES (?, 'O', '2026-02-01 00:00:00')",
                           [(f"N{i:05d}",) for i in range(BULK)])
        legacy.execute("COMMIT")
        committed = time.time()
        wait("the bulk deliveries", 600, lambda: len(log_lines(log)) >= before + BULK)
        bulk = [e["received_at"] for e in log_lines(log)[before:] if e["outcome"] == "accepted"]
        rate = (len(bulk) - 1) / (max(bulk) - min(bulk))
        end_to_end = max(bulk) - committed
    except BaseException:
        receiver.terminate()
        raise
    finally:
        portico.terminate()
        portico.wait()

    # Baseline: the receiver loaded directly, 16 threads, signed requests.
    webhook = Webhook(SECRET)
    body = json.dumps({"type": "tickets.created", "data": {"key": "x"}})
    counter = iter(range(BULK))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            now = datetime.datetime.now(datetime.timezone.utc)
            msg_id = f"msg_{n}"
            request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
                "content-type": "application/json", "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": webhook.sign(msg_id, now, body)})
            urllib.request.urlopen(request).read()
    started = time.time()
    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    direct = BULK / (time.time() - started)
    receiver.terminate()

    print(f"change-to-delivery latency at a 1 s poll ({UPDATES} single-row updates): "
          f"median {median * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"sustained deliveries ({BULK} rows inserted at once): {rate:.0f}/s "
          f"(last delivery {end_to_end:.1f} s after the commit)")
    print(f"baseline, the receiver loaded directly by 16 threads: {direct:.0f} req/s; "
          f"Portico / direct = {rate / direct:.2f}")


if __name__ == "__main__":
    main()
