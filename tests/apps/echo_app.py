"""A tiny image-style service for tests: answers on $PORT with its instance id.

Env: FAIL_RATE (0..1, share of requests answered 500), SLOW_MS (added latency),
START_DELAY (seconds before listening), START_WHEN_FILE (listen only once this file exists:
a test decides when the instance becomes ready), EXIT_CODE (exit at once with this code).
"""

import json
import os
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("EXIT_CODE"):
    print("echo_app: refusing to start, EXIT_CODE is set", flush=True)
    sys.exit(int(os.environ["EXIT_CODE"]))
time.sleep(float(os.environ.get("START_DELAY", "0")))
while os.environ.get("START_WHEN_FILE") and not os.path.exists(os.environ["START_WHEN_FILE"]):
    time.sleep(0.1)
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0"))
SLOW = float(os.environ.get("SLOW_MS", "0")) / 1000
NAME = os.environ.get("EAS_INSTANCE_ID", "?")
VERSION = os.environ.get("APP_VERSION", "1")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one response, several writes: no 40 ms delayed-ACK stalls

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if SLOW:
            time.sleep(SLOW)
        status = 500 if FAIL_RATE and random.random() < FAIL_RATE else 200
        out = json.dumps({"instance": NAME, "version": VERSION, "path": self.path, "echo": body.decode()}).encode()
        # one write for the whole response, as real servers do for small bodies: a kill -9 then
        # either loses nothing or the whole response (which the gateway retries), never half of it
        reason = "OK" if status == 200 else "Internal Server Error"
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(out)}\r\n\r\n"
        self.wfile.write(head.encode() + out)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


ThreadingHTTPServer.daemon_threads = True
# socketserver's default backlog is 5: the gateway's 64 connections at once would overflow it on a busy
# machine, and a dropped SYN reads as a dead instance (real servers listen with 128 or more)
ThreadingHTTPServer.request_queue_size = 128
print(f"echo_app {NAME} listening on {os.environ['PORT']}", flush=True)
ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
