#!/usr/bin/env python3
"""ctxpp-load's command line and demo orchestration, against stand-in servers.

usage: demo_test.py CTXPP_LOAD_BINARY WORK_DIR

Checks the exit codes (0/1 judged, 2 setup error), that a server that fails to start is
reported and nothing is left running, and that a demo against fake_server.py (which never
cancels anything) writes all three reports with both runs measured. Exit 0 pass, 1 fail.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def run(command, timeout_s=90):
    started = time.monotonic()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        fail("did not finish within %d s: %s" % (timeout_s, " ".join(command)))
    return done.returncode, done.stdout.decode(), done.stderr.decode(), time.monotonic() - started


def processes_running(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def expect_exit(command, expected, what):
    code, out, err, seconds = run(command)
    if code != expected:
        fail("%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s" % (what, code, expected,
                                                                      out[-3000:], err[-3000:]))
    print("ok: %s: exit %d in %.1f s" % (what, code, seconds))
    return out, err


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    load, work = sys.argv[1], os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    # A private copy with a unique name, so leftover processes are ours to find.
    fake = os.path.join(work, "fake-server-%s.py" % uuid.uuid4().hex[:8])
    shutil.copy(os.path.join(HERE, "fake_server.py"), fake)
    os.chmod(fake, 0o755)

    help_text, _ = expect_exit([load, "--help"], 0, "--help")
    for flag in ["--gateway", "--upstream", "--requests", "--concurrency", "--seed",
                 "--duration-limit-s", "--label", "--mix", "--id-base", "--out", "--gateway-bin",
                 "--upstream-bin", "--rss-requests-small", "--rss-requests-large", "--no-rss",
                 "--grpc", "--quick", "--in", "--synthetic"]:
        if flag not in help_text:
            fail("--help does not document " + flag)
    expect_exit([load, "demo", "--bogus"], 2, "unknown flag")
    expect_exit([load, "run", "--gateway", "127.0.0.1:1", "--out", os.path.join(work, "r.json")],
                2, "run against a closed port")
    expect_exit([load, "render", "--in", os.path.join(work, "missing.json"), "--out", work], 2,
                "render of a missing file")

    _, err = expect_exit([load, "demo", "--gateway-bin", "/bin/false", "--upstream-bin", fake,
                          "--out", os.path.join(work, "failed")], 2, "gateway that cannot start")
    if "gateway" not in err:
        fail("the setup error does not name the gateway: " + err)
    if processes_running(os.path.basename(fake)):
        fail("the upstream was left running after the setup error")

    out_dir = os.path.join(work, "demo")
    out, err = expect_exit([load, "demo", "--gateway-bin", fake, "--upstream-bin", fake,
                            "--out", out_dir, "--quick", "--requests", "400", "--concurrency", "8",
                            "--rss-requests-small", "100", "--rss-requests-large", "300",
                            "--duration-limit-s", "4"],
                           1, "demo against servers that never cancel (goals fail)")
    if processes_running(os.path.basename(fake)):
        fail("servers left running after the demo")
    for name in ("report.txt", "report.json", "report.html"):
        if not os.path.getsize(os.path.join(out_dir, name)):
            fail(name + " is empty")
    if "FAIL" not in out or "cancel to cleanup p99" not in out:
        fail("the printed report lacks the goals:\n" + out)
    with open(os.path.join(out_dir, "report.json")) as report_file:
        report = json.load(report_file)
    for role in ("correct", "broken"):
        result = report[role]
        outcomes = result["outcomes"]
        if result["requests_sent"] < 50 or outcomes["ok"] == 0:
            fail("%s run sent %d requests, %d ok" % (role, result["requests_sent"], outcomes["ok"]))
        if outcomes["disconnected"] == 0 or outcomes["deadline_504"] == 0:
            fail("%s run: no disconnects or no 504s: %s" % (role, outcomes))
        if outcomes["transport_errors"] > 0:
            fail("%s run: transport errors: %s" % (role, result["notes"]))
        if len(result["samples"]) < 10:
            fail("%s run: only %d samples" % (role, len(result["samples"])))
        gone = result["upstream_work_after_client_gone_ms"]
        # The stand-in never cancels, so the upstream works on after every hang-up.
        if gone["positive"] == 0 or gone["total"] <= 0:
            fail("%s run: no upstream work after the client left was measured: %s" % (role, gone))
        if any("did not stop cleanly" in note for note in result["notes"]):
            fail("%s run: %s" % (role, result["notes"]))
    if not report["rss_check"]["measured"] or report["rss_check"]["large_requests"] < 100:
        fail("RSS check not measured: %s" % report["rss_check"])
    print("ok: demo wrote the reports; correct run %d requests, %d hang-ups" %
          (report["correct"]["requests_sent"], report["correct"]["outcomes"]["disconnected"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
