#!/usr/bin/env python3
"""Open a rendered report in headless chromium and check what a reader would see.

usage: browser_test.py CTXPP_LOAD_BINARY WORK_DIR [REPORT_JSON]

Renders made-up results (ctxpp-load render --synthetic), or a demo's real report.json
when one is given, dumps the DOM chromium built from
report.html with the network off, and checks that the four charts are there with
polylines that have points; then takes a screenshot and checks it is a real picture
(non-trivial size, many distinct colours), decoding the PNG with zlib alone.
Exit 0 pass, 1 fail, 77 skip (no chromium).
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from html.parser import HTMLParser

SKIP = 77
CHART_IDS = ["chart-db-correct", "chart-db-broken", "chart-upstream-correct",
             "chart-upstream-broken", "chart-rss"]


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


class TagBalance(HTMLParser):
    """Checks that every element the report opens is closed, in order."""
    VOID = {"meta", "line", "polyline", "br", "img", "link", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.open_tags, self.problems = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.open_tags or self.open_tags[-1] != tag:
            self.problems.append("</%s> closes %s" % (tag, self.open_tags[-1:] or "nothing"))
        else:
            self.open_tags.pop()


def check_well_formed(path):
    checker = TagBalance()
    with open(path, encoding="utf-8") as report:
        text = report.read()
    checker.feed(text)
    checker.close()
    if checker.problems or checker.open_tags:
        fail("report.html is not well formed: %s; left open: %s" %
             (checker.problems[:5], checker.open_tags))
    for forbidden in ("<script", "http://", "https://", "<link", " src="):
        # The SVG namespace is the one URL allowed: it is a name, never fetched.
        if forbidden in text.replace('xmlns="http://www.w3.org/2000/svg"', ""):
            fail("report.html is not self-contained: found %s" % forbidden)
    print("ok: report.html is well formed and self-contained")


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_command(chromium, profile_dir):
    # The network stays off: a proxy that refuses and a resolver that finds nothing, so
    # the report must be self-contained to render.
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--user-data-dir=" + profile_dir]


def run_chromium(command, timeout_s):
    try:
        return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        fail("chromium did not finish within %d s: %s" % (timeout_s, " ".join(command)))


def png_pixels(path):
    """Yields (width, height, bytes per pixel, rows of raw pixel bytes)."""
    with open(path, "rb") as png:
        data = png.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("screenshot is not a PNG")
    position, width, height, depth, colour, idat = 8, 0, 0, 0, 0, b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    if depth != 8 or colour not in (2, 6):
        fail("unexpected PNG format: depth %d colour type %d" % (depth, colour))
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous, offset = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[offset], bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        return 2
    load_binary, work_dir = sys.argv[1], os.path.abspath(sys.argv[2])
    source = ["--in", os.path.abspath(sys.argv[3])] if len(sys.argv) == 4 else ["--synthetic"]
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    render = subprocess.run([load_binary, "render"] + source + ["--out", work_dir],
                            check=False, timeout=60)
    if render.returncode != 0:
        fail("ctxpp-load render exited %d" % render.returncode)
    report = os.path.join(work_dir, "report.html")
    check_well_formed(report)
    chromium = find_chromium()
    if chromium is None:
        print("SKIP: chromium is not installed (apt-get install chromium)")
        return SKIP
    url = "file://" + report

    with tempfile.TemporaryDirectory(prefix="ctxpp-load-chromium-") as profile:
        dump = run_chromium(chromium_command(chromium, profile) + ["--dump-dom", url], 45)
    dom = dump.stdout.decode("utf-8", "replace")
    if dump.returncode != 0 or "<svg" not in dom:
        fail("chromium --dump-dom exited %d; stderr:\n%s" %
             (dump.returncode, dump.stderr.decode("utf-8", "replace")[-2000:]))
    for chart_id in CHART_IDS:
        match = re.search(r'<svg[^>]*\bid="%s"[^>]*>(.*?)</svg>' % chart_id, dom, re.S)
        if not match:
            fail("chart %s missing from the DOM" % chart_id)
        polylines = re.findall(r'<polyline[^>]*\bpoints="([^"]*)"', match.group(1))
        if not polylines:
            fail("chart %s has no polyline" % chart_id)
        for points in polylines:
            pairs = points.split()
            if len(pairs) < 2 or not all(re.fullmatch(r"-?[\d.]+,-?[\d.]+", p) for p in pairs):
                fail("chart %s has a polyline without usable points: %.80s" % (chart_id, points))
        print("ok: %s: %d polylines, %d points in the first" %
              (chart_id, len(polylines), len(polylines[0].split())))
    if "PASS" not in dom or "FAIL" not in dom:
        fail("goal verdicts missing from the DOM")
    # The synthetic results carry a note with markup in it; a real report need not.
    if source == ["--synthetic"] and "&lt;broken&gt;" not in dom:
        fail("note text was not escaped")

    screenshot = os.path.join(work_dir, "report.png")
    with tempfile.TemporaryDirectory(prefix="ctxpp-load-chromium-") as profile:
        shot = run_chromium(chromium_command(chromium, profile) +
                            ["--screenshot=" + screenshot, "--window-size=1200,900", url], 45)
    if not os.path.exists(screenshot):
        fail("no screenshot; chromium exited %d; stderr:\n%s" %
             (shot.returncode, shot.stderr.decode("utf-8", "replace")[-2000:]))
    size = os.path.getsize(screenshot)
    if size < 10000:
        fail("screenshot is only %d bytes" % size)
    width, height, channels, rows = png_pixels(screenshot)
    colours = set()
    for row in rows[::3]:  # every third row is plenty to tell a page from a blank
        for x in range(0, len(row), channels * 2):
            colours.add(row[x:x + 3])
    if len(colours) < 16:
        fail("screenshot looks blank: %d distinct colours" % len(colours))
    print("ok: screenshot %s: %dx%d, %d bytes, %d distinct colours" %
          (screenshot, width, height, size, len(colours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
