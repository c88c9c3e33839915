#!/usr/bin/env bash
# bench/compare_revisions.sh — the core workloads (W1-W9 of ctxpp-bench) at two commits,
# run alternately in one session, so that a change can show what it costs when its
# feature is off (issue 5: observation must not slow W1-W9 by more than 3 %).
#
#   bench/compare_revisions.sh [BASE [HEAD]]     default: BASE=HEAD~1, HEAD=working tree
#
# Each revision is built with the release preset in build/revisions/<name>; the two
# binaries then run ROUNDS times each, ABAB..., and the table gives per workload the
# median over rounds of each side's median and the ratio head/base (above 1: slower).
# Knobs: ROUNDS (default 3), BENCH_ARGS (extra arguments, e.g.
# --benchmark_filter='W3|W4'), CTXPP_BENCH_* (passed through; default REPS=3,
# MIN_TIME=0.2, W6_REPS=9, W9_RUNS=1), OUT (default build/revisions).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
base_rev="${1:-HEAD~1}"
head_rev="${2:-}"
out="${OUT:-$root/build/revisions}"
rounds="${ROUNDS:-3}"
export CTXPP_BENCH_REPS="${CTXPP_BENCH_REPS:-3}" CTXPP_BENCH_MIN_TIME="${CTXPP_BENCH_MIN_TIME:-0.2}"
export CTXPP_BENCH_W6_REPS="${CTXPP_BENCH_W6_REPS:-9}" CTXPP_BENCH_W9_RUNS="${CTXPP_BENCH_W9_RUNS:-1}"
mkdir -p "$out"
log() { printf '[revisions] %s\n' "$*" >&2; }

build_at() {  # name rev -> path of ctxpp-bench
  local name=$1 rev=$2 src
  if [[ -z "$rev" ]]; then
    src="$root"
  else
    src="$out/src-$name"
    rm -rf "$src"
    mkdir -p "$src"
    git -C "$root" archive "$rev" | tar -x -C "$src"
  fi
  log "building $name (${rev:-working tree})"
  cmake -S "$src" -B "$out/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ \
    -DCTXPP_BUILD_TESTS=OFF -DCTXPP_BUILD_EXAMPLES=OFF -DCTXPP_BUILD_BENCH=ON \
    >"$out/$name.configure.log" 2>&1
  cmake --build "$out/$name" -j "${CTXPP_JOBS:-2}" --target ctxpp-bench >"$out/$name.build.log" 2>&1
  echo "$out/$name/bench/ctxpp-bench"
}

base_bin=$(build_at base "$base_rev")
head_bin=$(build_at head "$head_rev")
rm -f "$out"/base.*.jsonl "$out"/head.*.jsonl
for ((i = 1; i <= rounds; i++)); do
  for side in base head; do
    bin=base_bin
    [[ $side == head ]] && bin=head_bin
    log "round $i/$rounds: $side"
    # shellcheck disable=SC2086
    "${!bin}" ${BENCH_ARGS:-} >"$out/$side.$i.jsonl" 2>"$out/$side.$i.log"
  done
done

python3 - "$out" "$rounds" "$base_rev" "${head_rev:-working tree}" <<'PY'
import json, statistics, sys
out, rounds, base_rev, head_rev = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(side):
    per = {}
    for i in range(1, rounds + 1):
        for line in open(f"{out}/{side}.{i}.jsonl"):
            row = json.loads(line)
            name = row["workload"]
            for key in ("ns_per_op", "overhead_pct", "us_per_fanout", "p99_late_us", "bytes_per_op"):
                if key in row and isinstance(row[key], (int, float)):
                    per.setdefault((name, key), []).append(row[key])
                    break
    return per
base, head = load("base"), load("head")
print(f"\n{base_rev} (base) vs {head_rev} (head); median of {rounds} rounds, each a median of repetitions")
print("| workload | unit | base | head | head/base |")
print("|---|---|---|---|---|")
worst = 0.0
for key in sorted(base):
    if key not in head:
        continue
    b, h = statistics.median(base[key]), statistics.median(head[key])
    ratio = h / b if b else float("nan")
    if key[1] != "overhead_pct" and b > 1:
        worst = max(worst, ratio)
    print(f"| {key[0]} | {key[1]} | {b:.3f} | {h:.3f} | {ratio:.3f} |")
print(f"\nworst head/base over workloads above 1 unit: {worst:.3f}")
PY
