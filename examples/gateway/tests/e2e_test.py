#!/usr/bin/env python3
"""End-to-end checks of ctxpp-gateway and ctxpp-upstream on random loopback ports.

  e2e_test.py --gateway BIN --upstream BIN [--grpc] [--bound-ms N]

Starts an upstream and a gateway (and, for the comparison, a second gateway with
--broken-propagation), then checks the guarantees of docs/gateway.md: answers, a
client that disconnects stops all downstream work within the bound, deadlines give
504 and stop the upstream, an abandoned checkout is undone, bad input gets clear
errors and the server stays up, /metrics and /debug/contexts serve what they promise,
SIGTERM stops both servers cleanly. Exits 0 when every check passed.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

FAILURES = []


def check(ok, what):
    print(("  ok      " if ok else "  FAILED  ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def start(command, marker, timeout=30.0):
    """Starts a server and returns (process, {label: "host:port"}) from its stdout."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    found = {}
    deadline = time.monotonic() + timeout
    while marker not in found:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("no '%s' line from %s" % (marker, command[0]))
        line = process.stdout.readline()
        if " listening on " in line:
            label, address = line.strip().split(" listening on ")
            found[label] = address
    return process, found


def stop(process, name):
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = "killed"
    check(code == 0, "%s exits 0 on SIGTERM (got %s)" % (name, code))


def request(address, method, target, body=None, headers=None, timeout=20.0):
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), dict(response.getheaders())
    finally:
        connection.close()


def stats(address):
    return json.loads(request(address, "GET", "/debug/stats")[1])


def raw_exchange(address, data, read_for=5.0):
    """Sends raw bytes; returns what the server sent until it closed or read_for passed."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=read_for) as sock:
        sock.sendall(data)
        received = b""
        end = time.monotonic() + read_for
        try:
            while time.monotonic() < end:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
        return received


def abandon(address, target, request_id, after_s, method="GET", body=b""):
    """Sends a request, waits after_s, then resets the connection; returns the
    steady-clock instant (ns) of the close."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    head = "%s %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n" % (
        method, target, request_id, len(body))
    if body:
        head += "Content-Type: application/json\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    time.sleep(after_s)
    closed_ns = time.monotonic_ns()
    sock.close()
    return closed_ns


def wait_until(predicate, bound_s, step_s=0.005):
    """Polls predicate until it holds or bound_s passed; returns the seconds it took,
    or None."""
    start_time = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start_time
        if time.monotonic() - start_time > bound_s:
            return None
        time.sleep(step_s)


def upstream_records(upstream, request_id):
    records = json.loads(request(upstream, "GET", "/debug/requests")[1])
    return [r for r in records if r["id"] == request_id]


def idle(gateway, upstream):
    g = stats(gateway)
    u = stats(upstream)
    return (g["requests_inflight"] == 0 and g["db_inflight"] == 0 and g["upstream_inflight"] == 0 and
            g["background_inflight"] == 0 and g["pool_leased"] == 0 and u["inflight"] == 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--grpc", action="store_true", help="payments over gRPC")
    parser.add_argument("--bound-ms", type=float, default=100.0,
                        help="how soon downstream work must stop after a disconnect")
    args = parser.parse_args()
    bound = args.bound_ms / 1000.0
    workdir = tempfile.mkdtemp(prefix="ctxpp-gateway-e2e-")

    upstream_command = [args.upstream, "--listen", "127.0.0.1:0"]
    if args.grpc:
        upstream_command += ["--grpc-listen", "127.0.0.1:0"]
    upstream_process, upstream_lines = start(upstream_command, "ctxpp-upstream")
    upstream = upstream_lines["ctxpp-upstream"]
    gateway_command = [args.gateway, "--listen", "127.0.0.1:0", "--db",
                       os.path.join(workdir, "gateway.db"), "--upstream", "http://" + upstream,
                       "--read-timeout-ms", "500"]
    if args.grpc:
        gateway_command += ["--grpc-upstream", upstream_lines["ctxpp-upstream grpc"]]
    gateway_process, gateway_lines = start(gateway_command, "ctxpp-gateway")
    gateway = gateway_lines["ctxpp-gateway"]
    print("upstream %s, gateway %s%s" % (upstream, gateway, " (gRPC payments)" if args.grpc else ""))
    try:
        print("answers")
        status, body, _ = request(gateway, "GET", "/api/orders/17")
        check(status == 200 and json.loads(body)["id"] == 17, "GET /api/orders/17 is 200 with order 17")
        check(request(gateway, "GET", "/api/orders/5000")[0] == 404, "an unknown order is 404")
        status, body, _ = request(gateway, "GET", "/api/report?db_ms=30&upstream_ms=40",
                                  headers={"X-Request-Id": "e2e-report"})
        check(status == 200 and json.loads(body)["orders"] == 1000, "GET /api/report is 200")
        records = upstream_records(upstream, "e2e-report")
        check(len(records) == 1 and records[0]["outcome"] == "completed",
              "the report's upstream call carried X-Request-Id and completed")
        status, body, _ = request(gateway, "POST", "/api/checkout",
                                  body=json.dumps({"order_id": "17", "amount_cents": 1200}),
                                  headers={"Content-Type": "application/json",
                                           "X-Request-Id": "e2e-checkout"})
        check(status == 200 and "payment_id" in json.loads(body), "POST /api/checkout is 200")

        print("a client that disconnects stops everything downstream")
        closed_ns = abandon(gateway, "/api/report?db_ms=3000&upstream_ms=3000", "e2e-gone", 0.15)
        took = wait_until(lambda: idle(gateway, upstream), max(bound, 0.1) * 5)
        check(took is not None and took <= bound,
              "DB lease, upstream call, background work all released %s ms after the "
              "close (bound %.0f ms)" % ("%.1f" % (took * 1000) if took is not None else "never",
                                         args.bound_ms))
        records = upstream_records(upstream, "e2e-gone")
        after_ms = (records[0]["end_ns"] - closed_ns) / 1e6 if records else None
        check(len(records) == 1 and records[0]["outcome"] == "cancelled" and after_ms <= args.bound_ms,
              "the upstream stopped its work %s ms after the client left"
              % ("%.1f" % after_ms if after_ms is not None else "?"))
        s = stats(gateway)
        check(s["requests"]["canceled"] >= 1, "counted as outcome canceled")

        print("deadlines")
        begin = time.monotonic()
        status, _, _ = request(gateway, "GET", "/api/report?db_ms=3000&upstream_ms=3000",
                               headers={"X-Request-Timeout-Ms": "80", "X-Request-Id": "e2e-late"})
        elapsed = time.monotonic() - begin
        check(status == 504 and elapsed < 2.0, "X-Request-Timeout-Ms: 80 gives 504 in %.0f ms" % (elapsed * 1000))
        took = wait_until(lambda: idle(gateway, upstream), 2.0)
        records = upstream_records(upstream, "e2e-late")
        check(took is not None and len(records) == 1 and records[0]["outcome"] == "cancelled",
              "the upstream got the remaining budget and stopped")

        print("an abandoned checkout is undone")
        before = stats(upstream)
        abandon(gateway, "/api/checkout?step_ms=300", "e2e-abandoned", 0.45, method="POST",
                body=json.dumps({"order_id": "18", "amount_cents": 900}).encode())
        wait_until(lambda: idle(gateway, upstream), 3.0)
        after = stats(upstream)
        committed = stats(gateway)["checkouts_committed"]
        paths = [r["path"] for r in upstream_records(upstream, "e2e-abandoned")]
        check("/inventory/reserve" in paths and "/inventory/release" in paths,
              "the abandoned checkout had reserved, and released: %s" % ", ".join(paths))
        check(after["reservations_open"] == committed and after["payments_open"] == committed,
              "reservations open %d, payments open %d == checkouts committed %d (before: %d, %d)"
              % (after["reservations_open"], after["payments_open"], committed,
                 before["reservations_open"], before["payments_open"]))

        print("bad input")
        status, body, _ = request(gateway, "GET", "/api/orders/1", headers={"X-Request-Timeout-Ms": "soon"})
        check(status == 400 and "X-Request-Timeout-Ms" in body, "a garbage deadline header is 400 naming it")
        status, body, _ = request(gateway, "GET", "/api/orders/1", headers={"grpc-timeout": "99999999999H"})
        check(status == 400, "a garbage grpc-timeout is 400")
        check(request(gateway, "GET", "/api/orders/abc")[0] == 400, "a non-numeric order id is 400")
        check(request(gateway, "GET", "/api/report?db_ms=-1")[0] == 400, "a negative db_ms is 400")
        check(request(gateway, "POST", "/api/checkout", body="{not json")[0] == 400, "a malformed JSON body is 400")
        check(request(gateway, "POST", "/api/checkout", body='{"order_id":"1","amount_cents":-5}')[0] == 400,
              "a negative amount is 400")
        check(request(gateway, "DELETE", "/api/orders/1")[0] == 405, "a wrong method is 405")
        reply = raw_exchange(gateway, b"GARBAGE\r\n\r\n", 3.0)
        check(reply.startswith(b"HTTP/1.1 400"), "a malformed request line is 400")
        reply = raw_exchange(gateway, b"GET /api/orders/1 HTTP/1.1\r\nHost: x\r\nX-Big: " +
                             b"a" * 20000 + b"\r\n\r\n", 3.0)
        check(reply.startswith(b"HTTP/1.1 431"), "a 20 KB header is 431")
        begin = time.monotonic()
        reply = raw_exchange(gateway, b"GET /api/orders/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ", 6.0)
        elapsed = time.monotonic() - begin
        check(elapsed < 3.0, "a slowloris request is cut off after the read timeout (%.2f s)" % elapsed)
        check(request(gateway, "GET", "/healthz")[0] == 200, "the gateway is still up")
        check(wait_until(lambda: idle(gateway, upstream), 2.0) is not None, "and holds nothing")

        print("metrics and the live view")
        status, body, _ = request(gateway, "GET", "/metrics")
        for name in ['gateway_requests_total{outcome="ok"}', 'gateway_requests_total{outcome="canceled"}',
                     'gateway_requests_total{outcome="deadline"}', 'gateway_requests_total{outcome="error"}',
                     "gateway_upstream_inflight", "gateway_db_queries_inflight",
                     'ctxpp_pool_leased{pool="db"}', "ctxpp_cancellations_total",
                     "ctxpp_propagation_seconds", "ctxpp_cleanup_seconds", "ctxpp_contexts_live"]:
            check(status == 200 and name in body, "/metrics has " + name)
        status, body, headers = request(gateway, "GET", "/debug/contexts")
        check(status == 200 and "contexts" in json.loads(body), "/debug/contexts is JSON by default")
        status, body, headers = request(gateway, "GET", "/debug/contexts", headers={"Accept": "text/html"})
        check(status == 200 and headers.get("Content-Type", "").startswith("text/html") and
              '<table id="contexts">' in body and "http" not in body.split("<body>")[1].split("created at")[0],
              "/debug/contexts is an HTML page without external assets for Accept: text/html")

        print("the same gateway with its propagation broken")
        broken_process, broken_lines = start(
            [args.gateway, "--listen", "127.0.0.1:0", "--db", os.path.join(workdir, "broken.db"),
             "--upstream", "http://" + upstream, "--broken-propagation"], "ctxpp-gateway")
        broken = broken_lines["ctxpp-gateway"]
        try:
            closed_ns = abandon(broken, "/api/report?db_ms=400&upstream_ms=600", "e2e-broken", 0.1)
            wait_until(lambda: idle(broken, upstream), 3.0)
            records = upstream_records(upstream, "e2e-broken")
            after_ms = (records[0]["end_ns"] - closed_ns) / 1e6 if records else 0
            check(len(records) == 1 and records[0]["outcome"] == "completed" and after_ms > 300,
                  "broken: the upstream worked on %.0f ms after the client left" % after_ms)
        finally:
            stop(broken_process, "the broken gateway")
    finally:
        stop(gateway_process, "ctxpp-gateway")
        stop(upstream_process, "ctxpp-upstream")

    print("%d check(s) failed" % len(FAILURES) if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
