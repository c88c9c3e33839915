#!/usr/bin/env python3
"""A stand-in for ctxpp-gateway and ctxpp-upstream, for testing ctxpp-load's orchestration.

It speaks the same command line, announcement line, endpoints and /debug JSON as the real
servers, without any cancellation: a request runs to its end whether or not the client is
still there. Started with --db it plays the gateway, otherwise the upstream.
"""
import json
import signal
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ARGS = sys.argv[1:]
IS_GATEWAY = "--db" in ARGS
UPSTREAM = ARGS[ARGS.index("--upstream") + 1] if "--upstream" in ARGS else None
LOCK = threading.Lock()
COUNTERS = {"ok": 0, "deadline": 0, "db": 0, "calls": 0, "inflight": 0, "completed": 0}
REQUESTS = []


def add(name, delta):
    with LOCK:
        COUNTERS[name] += delta


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client hung up

    def call_upstream(self, ms):
        add("calls", 1)
        try:
            request = urllib.request.Request(
                UPSTREAM + "/work?ms=%d" % ms,
                headers={"X-Request-Id": self.headers.get("X-Request-Id", "0")})
            urllib.request.urlopen(request, timeout=10).read()
        finally:
            add("calls", -1)

    def query(self, ms):
        add("db", 1)
        time.sleep(ms / 1000)
        add("db", -1)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        for _ in range(3):
            self.call_upstream(20)
        add("ok", 1)
        self.reply(200, '{"status":"paid"}')

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not IS_GATEWAY:
            if url.path == "/work":
                start = time.monotonic_ns()
                add("inflight", 1)
                time.sleep(int(query["ms"][0]) / 1000)
                add("inflight", -1)
                add("completed", 1)
                with LOCK:
                    REQUESTS.append({"id": self.headers.get("X-Request-Id", ""), "start_ns": start,
                                     "end_ns": time.monotonic_ns(), "outcome": "completed"})
                return self.reply(200, "done")
            if url.path == "/debug/stats":
                with LOCK:
                    return self.reply(200, json.dumps({"inflight": COUNTERS["inflight"],
                                                       "completed": COUNTERS["completed"],
                                                       "cancelled": 0}))
            if url.path == "/debug/requests":
                with LOCK:
                    return self.reply(200, json.dumps(REQUESTS[-200000:]))
            return self.reply(404, "")
        if url.path.startswith("/api/orders/"):
            add("ok", 1)
            return self.reply(200, '{"id":"%s"}' % url.path.rsplit("/", 1)[1])
        if url.path == "/api/report":
            database = threading.Thread(target=self.query, args=(int(query["db_ms"][0]),))
            database.start()
            timeout = self.headers.get("X-Request-Timeout-Ms")
            if timeout:
                time.sleep(int(timeout) / 1000)
                add("deadline", 1)
                return self.reply(504, "deadline exceeded")
            self.call_upstream(int(query["upstream_ms"][0]))
            database.join()
            add("ok", 1)
            return self.reply(200, "{}")
        if url.path == "/debug/stats":
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * 4096
            with LOCK:
                return self.reply(200, json.dumps({
                    "requests": {"ok": COUNTERS["ok"], "canceled": 0,
                                 "deadline": COUNTERS["deadline"], "error": 0},
                    "db_inflight": COUNTERS["db"], "upstream_inflight": COUNTERS["calls"],
                    "pool_leased": COUNTERS["db"], "lingering_leases": 0,
                    "cancel_cleanup_ms": {"count": 0, "p50": 0, "p99": 0, "max": 0},
                    "rss_bytes": rss}))
        return self.reply(404, "")


def main():
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    name = "ctxpp-gateway" if IS_GATEWAY else "ctxpp-upstream"
    print("%s listening on 127.0.0.1:%d" % (name, server.server_address[1]), flush=True)
    if not IS_GATEWAY and "--grpc-listen" in ARGS:
        print("ctxpp-upstream grpc listening on 127.0.0.1:9", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
