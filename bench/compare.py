#!/usr/bin/env python3
"""Pairs ctxpp's benchmark results with the Go, std and tokio baselines of the same run.

Every input is a file of JSON lines ({"workload": ..., "impl": ..., <metrics>}) as printed
by bench/ctxpp-bench and ../shared/bench/{go,std,tokio}/run.sh. Prints a Markdown table:
one row per (workload, metric), the value of each implementation, and the ratios
baseline/ours (every metric here is lower-is-better, so a ratio > 1 means ctxpp wins),
followed by the goals of issue 2 with a met/missed verdict. Standard library only.

Usage: compare.py --ours F [--go F] [--std F] [--tokio F] [--note TEXT]...
"""
import argparse
import json
import math
import sys

# (label, unit, ours workload, ours key, go workload, std workload, tokio workload, key)
# A baseline workload of None means that baseline has no such workload. `key` is the
# baselines' key (None: same as ours).
ROWS = [
    ("W1 done-check", "ns", "W1/done", "ns_per_op", "W1", "W1", "W1", None),
    ("W1b err-check", "ns", "W1b/err", "ns_per_op", "W1b", None, None, None),
    ("W2 loop with check", "ns/iter", "W2", "ns_per_op_check", "W2", "W2", "W2", None),
    ("W2 loop without check", "ns/iter", "W2", "ns_per_op_nocheck", "W2", "W2", "W2", None),
    ("W2 check overhead", "%", "W2", "overhead_pct", "W2", "W2", "W2", None),
    ("W3 child create+cancel", "ns", "W3/with_cancel", "ns_per_op", "W3", "W3", "W3", None),
    ("W4 timeout create+cancel", "ns", "W4/with_timeout", "ns_per_op", "W4", None, "W4", None),
    ("W5 value, depth 1", "ns", "W5/depth:1", "ns_per_op", "W5/depth=1", None, None, None),
    ("W5 value, depth 8", "ns", "W5/depth:8", "ns_per_op", "W5/depth=8", None, None, None),
    ("W5 value, depth 64", "ns", "W5/depth:64", "ns_per_op", "W5/depth=64", None, None, None),
    ("W6 fan-out 10k: scoped_callback", "µs", "W6/scoped_callback", "us_per_fanout",
     "W6", "W6", "W6", None),
    ("W6 fan-out 10k: coroutine", "µs", "W6/coroutine", "us_per_fanout", "W6", "W6", "W6", None),
    ("W6 fan-out 10k: after_func", "µs", "W6/after_func", "us_per_fanout", "W6", "W6", "W6", None),
    ("W6 fan-out 1k: threads", "µs", "W6/threads:1000", "us_per_fanout",
     "W6/n=1000", "W6/n=1000", "W6/n=1000", None),
    ("W7 2-thread create+cancel", "ns", "W7/with_cancel", "ns_per_op", "W7", "W7", "W7", None),
    ("W8 W3 child bytes", "B/op", "W8/W3", "bytes_per_op", "W8/W3", "W8/W3", "W8/W3", None),
    ("W8 W3 child usable bytes", "B/op", "W8/W3", "usable_bytes_per_op",
     "W8/W3", "W8/W3", "W8/W3", "usable_bytes_per_op"),
    ("W8 W3 child allocs", "allocs/op", "W8/W3", "allocs_per_op", "W8/W3", "W8/W3", "W8/W3", None),
    ("W8 W4 child bytes", "B/op", "W8/W4", "bytes_per_op", "W8/W4", None, "W8/W4", None),
    ("W8 W4 child usable bytes", "B/op", "W8/W4", "usable_bytes_per_op",
     "W8/W4", None, "W8/W4", "usable_bytes_per_op"),
    ("W8 W4 child allocs", "allocs/op", "W8/W4", "allocs_per_op", "W8/W4", None, "W8/W4", None),
]
for name, what in (("W9", "callback"), ("W9/coroutines", "coroutines"),
                   ("W9/waiters", "threads")):
    for key, label, unit in (("p50_late_us", "p50 late", "µs"), ("p99_late_us", "p99 late", "µs"),
                             ("max_late_us", "max late", "µs"),
                             ("steady_p99_late_us", "steady p99 late", "µs"),
                             ("cpu_s", "CPU", "s"), ("create_ms", "create 100k", "ms")):
        ROWS.append((f"W9 {label} ({what})", unit, name, key, "W9", None, "W9", None))

# Spread of our value, shown next to it: (min key, max key) per metric.
SPREAD = {
    "ns_per_op": ("ns_min", "ns_max"),
    "us_per_fanout": ("min_us", "max_us"),
    "overhead_pct": ("overhead_pct_min", "overhead_pct_max"),
    "p50_late_us": ("p50_late_us_min", "p50_late_us_max"),
    "p99_late_us": ("p99_late_us_min", "p99_late_us_max"),
    "max_late_us": ("max_late_us_min", "max_late_us_max"),
    "cpu_s": ("cpu_s_min", "cpu_s_max"),
}


def load(path):
    results = {}
    if not path:
        return results
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "workload" in obj:
                    results[obj["workload"]] = obj
    except FileNotFoundError:
        pass
    return results


def value(results, workload, key):
    if workload is None:
        return None
    v = results.get(workload, {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def fmt(v):
    if v is None:
        return "–"
    a = abs(v)
    if a == 0:
        return "0"
    if a < 1:
        return f"{v:.3f}"
    if a < 10:
        return f"{v:.2f}"
    if a < 1000:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def ratio(baseline, ours, unit):
    if unit == "%" or baseline is None or ours is None:
        return "–"
    if ours == 0:
        return "=" if baseline == 0 else "∞"
    r = baseline / ours
    if r < 0.1:
        return f"{r:.3f}×"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def table(ours, go, std, tokio):
    have_tokio = bool(tokio)
    head = ["workload", "unit", "ctxpp", "go", "std", "tokio", "go/ours", "std/ours"]
    if have_tokio:
        head.append("tokio/ours")
    head.append("ctxpp min–max")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, unit, ow, key, gw, sw, tw, bkey in ROWS:
        bkey = bkey or key
        o = value(ours, ow, key)
        g, s, t = value(go, gw, bkey), value(std, sw, bkey), value(tokio, tw, bkey)
        if o is None and g is None and s is None and t is None:
            continue
        cells = [label, unit, fmt(o), fmt(g), fmt(s), fmt(t) if have_tokio else "skipped",
                 ratio(g, o, unit), ratio(s, o, unit)]
        if have_tokio:
            cells.append(ratio(t, o, unit))
        lo_key, hi_key = SPREAD.get(key, (None, None))
        lo, hi = value(ours, ow, lo_key) if lo_key else None, value(ours, ow, hi_key) if hi_key else None
        cells.append(f"{fmt(lo)}–{fmt(hi)}" if lo is not None and hi is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(ours, go, std):
    """The goals of issue 2, each with what was measured and whether it was met."""
    rows = []

    def add(goal, measured, ok):
        verdict = "–" if ok is None else ("met" if ok else "**missed**")
        rows.append(f"| {goal} | {measured} | {verdict} |")

    def v(res, wl, key):
        return value(res, wl, key)

    w1 = v(ours, "W1/done", "ns_per_op")
    add("W1 done-check ≤ 0.5 ns", f"{fmt(w1)} ns", None if w1 is None else w1 <= 0.5)
    w2 = ours.get("W2", {})
    if w2:
        lo, hi, mid = w2.get("overhead_pct_min"), w2.get("overhead_pct_max"), w2.get(
            "overhead_pct")
        noise = w2.get("nocheck_spread_pct")
        inside = lo is not None and hi is not None and lo <= 0 <= hi
        add("W2 overhead indistinguishable from noise",
            f"{fmt(mid)} % (pairs {fmt(lo)}…{fmt(hi)} %, A/A spread {fmt(noise)} %)", inside)
    w3 = v(ours, "W3/with_cancel", "ns_per_op")
    s3 = v(std, "W3", "ns_per_op")
    g3 = v(go, "W3", "ns_per_op")
    add("W3 ≤ 30 ns", f"{fmt(w3)} ns", None if w3 is None else w3 <= 30)
    add("W3 ≥ 8× Go", ratio(g3, w3, "ns"), None if g3 is None or w3 is None else g3 / w3 >= 8)
    add("W3 no slower than naive std", f"{fmt(w3)} vs {fmt(s3)} ns",
        None if s3 is None or w3 is None else w3 <= s3)
    w4, g4 = v(ours, "W4/with_timeout", "ns_per_op"), v(go, "W4", "ns_per_op")
    add("W4 ≥ 6× Go (≤ ~100 ns)", f"{fmt(w4)} ns, {ratio(g4, w4, 'ns')}",
        None if g4 is None or w4 is None else g4 / w4 >= 6)
    w5, g5 = v(ours, "W5/depth:64", "ns_per_op"), v(go, "W5/depth=64", "ns_per_op")
    add("W5 depth 64 ≥ 3× Go", ratio(g5, w5, "ns"),
        None if g5 is None or w5 is None else g5 / w5 >= 3)
    g6 = v(go, "W6", "us_per_fanout")
    for wl in ("W6/scoped_callback", "W6/coroutine", "W6/after_func"):
        o6 = v(ours, wl, "us_per_fanout")
        add(f"{wl} ≥ 10× Go", f"{fmt(o6)} µs, {ratio(g6, o6, 'µs')}",
            None if g6 is None or o6 is None else g6 / o6 >= 10)
    o6 = v(ours, "W6/scoped_callback", "us_per_fanout")
    add("W6 inline scoped callbacks ≤ 0.3 ms", f"{fmt(o6)} µs",
        None if o6 is None else o6 <= 300)
    w7, s7 = v(ours, "W7/with_cancel", "ns_per_op"), v(std, "W7", "ns_per_op")
    add("W7 no slower than naive std", f"{fmt(w7)} vs {fmt(s7)} ns",
        None if s7 is None or w7 is None else w7 <= s7)
    for wl, limit in (("W8/W3", 64), ("W8/W4", 96)):
        b, a = v(ours, wl, "bytes_per_op"), v(ours, wl, "allocs_per_op")
        add(f"{wl} one allocation, ≤ {limit} B", f"{fmt(a)} allocs, {fmt(b)} B",
            None if a is None or b is None else round(a, 2) <= 1 and b <= limit)
    g9c = v(go, "W9", "cpu_s")
    for wl in ("W9", "W9/coroutines", "W9/waiters"):
        p99, cpu = v(ours, wl, "p99_late_us"), v(ours, wl, "cpu_s")
        add(f"{wl} p99 lateness ≤ 1 ms", f"{fmt(p99)} µs",
            None if p99 is None else p99 <= 1000)
        add(f"{wl} CPU ≤ Go's", f"{fmt(cpu)} vs {fmt(g9c)} s",
            None if cpu is None or g9c is None else cpu <= g9c)
    return "| goal | measured | verdict |\n|---|---|---|\n" + "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", required=True)
    parser.add_argument("--go")
    parser.add_argument("--std")
    parser.add_argument("--tokio")
    parser.add_argument("--note", action="append", default=[])
    args = parser.parse_args()
    ours, go, std, tokio = load(args.ours), load(args.go), load(args.std), load(args.tokio)
    if not ours:
        print(f"compare.py: no results in {args.ours}", file=sys.stderr)
        return 1
    out = [table(ours, go, std, tokio), ""]
    out.append("Ratios are baseline/ours: every metric is lower-is-better, so > 1× means "
               "ctxpp is ahead. Values are medians of repetitions; `ctxpp min–max` is the "
               "spread over repetitions.")
    for note in args.note:
        out.append(f"- {note}")
    out += ["", "Goals of issue 2:", "", goals(ours, go, std)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
