"""A Standard Webhooks receiver for Portico's webhook delivery tests.

Usage:
    webhook_receiver.py --secret whsec_... [--secret whsec_... ...] --log FILE
                        [--secret-file PATH] [--fail-first N]
                        [--fail-until-file PATH] [--status 500]
                        [--retry-after SECONDS] [--redirect-to URL]
                        [--fail-rate P [--seed S]]

Listens on 127.0.0.1 on an ephemeral port, prints exactly one line
`listening on 127.0.0.1:PORT` to stdout (flushed) and serves until killed.

Every POST is checked with the independent `standardwebhooks` library against
each --secret, and each line of --secret-file as it reads at that moment (a
secret Portico generates after the receiver started; any one verifying is
enough), and answered:
  --redirect-to given               -> 307 + Location          outcome "redirected"
  no secret verifies                -> 400                     outcome "bad-signature"
  fewer than N verified requests
  failed so far (--fail-first N)    -> --status (+Retry-After) outcome "failed"
  --fail-until-file PATH missing    -> --status (+Retry-After) outcome "failed"
  a random draw below P (--fail-rate,
  seeded with --seed)               -> --status (+Retry-After) outcome "failed"
  otherwise                         -> 204                     outcome "accepted"

One JSON object per request is appended to --log (written, flushed and fsynced
under a lock):
  {"outcome", "id", "timestamp" (int or null), "signature", "received_at", "body"}
where "body" is the parsed JSON body, or the raw text when it is not JSON.
"""
import argparse
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--secret", action="append", required=True,
                        help="whsec_<base64> signing secret; repeatable, any one verifying is enough")
    parser.add_argument("--secret-file", metavar="PATH",
                        help="more secrets, one a line, read at every request (absent: none)")
    parser.add_argument("--log", required=True, help="JSON-lines file to append one object per request to")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N",
                        help="answer --status to the first N correctly signed requests")
    parser.add_argument("--fail-until-file", metavar="PATH",
                        help="answer --status to correctly signed requests while PATH does not exist")
    parser.add_argument("--status", type=int, default=500, help="status of failed answers (default 500)")
    parser.add_argument("--retry-after", metavar="SECONDS",
                        help="Retry-After header value sent with failed answers (sent verbatim)")
    parser.add_argument("--redirect-to", metavar="URL",
                        help="answer every POST with 307 and this Location")
    parser.add_argument("--fail-rate", type=float, default=0.0, metavar="P",
                        help="answer --status to this fraction of correctly signed requests, at random")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of --fail-rate's random draws (default 0)")
    args = parser.parse_args(argv)
    webhooks = []
    for secret in args.secret:
        try:
            webhooks.append(Webhook(secret))
        except Exception as exc:  # empty secret, bad base64
            parser.error(f"invalid --secret {secret!r}: {exc}")
    if args.fail_first < 0:
        parser.error("--fail-first must be >= 0")
    if not 0.0 <= args.fail_rate <= 1.0:
        parser.error("--fail-rate must be from 0 to 1")
    if not 100 <= args.status <= 599:
        parser.error("--status must be an HTTP status code")
    return args, webhooks


class Receiver:
    def __init__(self, args, webhooks):
        self.args = args
        self.webhooks = webhooks
        self.state_lock = threading.Lock()
        self.failed_so_far = 0
        self.random = random.Random(args.seed)
        self.log_lock = threading.Lock()
        self.log_file = open(args.log, "a", encoding="utf-8")

    def current_webhooks(self):
        webhooks = list(self.webhooks)
        path = self.args.secret_file
        if path is not None and os.path.exists(path):
            with open(path, encoding="utf-8") as lines:
                for secret in filter(None, (line.strip() for line in lines)):
                    webhooks.append(Webhook(secret))
        return webhooks

    def verified(self, body, headers):
        for webhook in self.current_webhooks():
            try:
                # json_parse=False: with True, a correctly signed non-JSON body
                # raises json.JSONDecodeError instead of returning.
                webhook.verify(body, headers, json_parse=False)
                return True
            except WebhookVerificationError:
                continue
            except Exception:
                # The library lets malformed input escape as other exceptions
                # (ValueError for a signature without ",", binascii.Error for
                # bad base64, UnicodeDecodeError for a non-UTF-8 body).
                continue
        return False

    def decide(self, body, headers):
        """Returns (outcome, status)."""
        args = self.args
        if args.redirect_to is not None:
            return "redirected", 307
        if not self.verified(body, headers):
            return "bad-signature", 400
        with self.state_lock:
            if self.failed_so_far < args.fail_first:
                self.failed_so_far += 1
                return "failed", args.status
            if args.fail_rate and self.random.random() < args.fail_rate:
                return "failed", args.status
        if args.fail_until_file is not None and not os.path.exists(args.fail_until_file):
            return "failed", args.status
        return "accepted", 204

    def log(self, record):
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.log_lock:
            self.log_file.write(line)
            self.log_file.flush()
            os.fsync(self.log_file.fileno())


def make_handler(receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self):
            return "webhook-receiver"

        def log_message(self, format, *args):  # silence per-request stderr logging
            pass

        def read_body(self):
            """Reads the request body; returns None when it could not be read whole."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size_line = self.rfile.readline(65537)
                    if not size_line:
                        return None
                    try:
                        size = int(size_line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        return None
                    if size == 0:
                        while True:  # trailers, up to the empty line
                            trailer = self.rfile.readline(65537)
                            if trailer in (b"\r\n", b"\n", b""):
                                break
                        return b"".join(chunks)
                    chunk = self.rfile.read(size)
                    if len(chunk) != size:
                        return None
                    chunks.append(chunk)
                    self.rfile.readline(65537)  # CRLF after the chunk
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return None
            if length < 0:
                return None
            body = self.rfile.read(length) if length else b""
            if len(body) != length:
                return None
            return body

        def do_POST(self):
            body = self.read_body()
            if body is None:
                self.close_connection = True
                body = b""
            received_at = time.time()
            headers = {
                name: self.headers.get(name)
                for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
                if self.headers.get(name) is not None
            }
            outcome, status = receiver.decide(body, headers)

            timestamp = headers.get("webhook-timestamp")
            try:
                timestamp = int(timestamp) if timestamp is not None else None
            except ValueError:
                timestamp = None
            text = body.decode("utf-8", errors="replace")
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            receiver.log({
                "outcome": outcome,
                "id": headers.get("webhook-id"),
                "timestamp": timestamp,
                "signature": headers.get("webhook-signature"),
                "received_at": received_at,
                "body": parsed,
            })

            self.send_response(status)
            if status == 307:
                self.send_header("Location", receiver.args.redirect_to)
            if outcome == "failed" and receiver.args.retry_after is not None:
                self.send_header("Retry-After", receiver.args.retry_after)
            if status != 204 and not 100 <= status < 200 and status != 304:
                # RFC 9110 forbids Content-Length on 1xx/204; those have no body anyway.
                self.send_header("Content-Length", "0")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def handle_error(self, request, client_address):
        # A sender closing an idle pooled connection is normal, not worth a traceback in the
        # test output (where it buried the failures that matter).
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    args, webhooks = parse_args(argv)
    receiver = Receiver(args, webhooks)
    server = Server(("127.0.0.1", 0), make_handler(receiver))
    host, port = server.server_address[:2]
    sys.stdout.write(f"listening on {host}:{port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
