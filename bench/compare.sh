#!/usr/bin/env bash
# bench/compare.sh — ctxpp against its baselines, side by side, in one run.
# Builds the `release` preset, runs bench/ctxpp-bench, then the Go baseline, the naive
# std baseline and (only if Debian's cargo and tokio crates are installed, offline) the
# tokio baseline from ../shared/bench, and prints one table (bench/compare.py): each
# workload, each implementation's median, and the ratios baseline/ours.
# Raw JSON lines, the benchmark tables and the result go to build/bench/.
#
# Knobs (environment):
#   QUICK=1          fewer repetitions everywhere, skips std's 10,000-thread W6 (~2 min)
#   SKIP_GO=1 SKIP_STD=1 SKIP_TOKIO=1 SKIP_BUILD=1
#   SKIP_STRUCTURED=1  skip the task-group/call_blocking (G*, B*), cleanup (C1), pool
#                      (P1-P3) and observation (O3, O6) suites, each with its own baseline
#   SKIP_POOL=1       skip only the pool suite (P1-P3, ~25 s)
#   SKIP_OBSERVE=1    skip the observation-cost suite (O3, O6: W3 and W6 observed, ~30 s)
#   POOL_REPS=n       repetitions of each pool benchmark (default 5; QUICK=1: 3)
#   SHARED_BENCH=dir  the baselines (default: ../shared/bench next to the repository)
#   OUT=dir           output directory (default: build/bench)
#   WAIT_QUIET=secs   first wait up to secs for the 1-min load average to drop below 1
#   CTXPP_BENCH_*     passed through to ctxpp-bench (see bench/ctxpp_bench.cpp)
# Whole run: ~3.5 min on 2 vCPUs (ctxpp ~55 s, Go ~60 s, std ~70-90 s, build), plus any WAIT_QUIET.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
shared="${SHARED_BENCH:-$root/../shared/bench}"
out="${OUT:-$root/build/bench}"
mkdir -p "$out"
rm -f "$out"/{ctxpp,go,std,tokio}.jsonl

log() { printf '[compare] %s\n' "$*" >&2; }
notes=()
load1() { cut -d' ' -f1 /proc/loadavg; }
# Other work on the machine moves every figure; record the load around each suite.
stage_load() { echo "load after $1: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"; }

std_args=()
if [[ "${QUICK:-0}" == 1 ]]; then
  export CTXPP_BENCH_REPS="${CTXPP_BENCH_REPS:-3}" CTXPP_BENCH_MIN_TIME="${CTXPP_BENCH_MIN_TIME:-0.2}"
  export CTXPP_BENCH_W6_REPS="${CTXPP_BENCH_W6_REPS:-9}" CTXPP_BENCH_W9_RUNS="${CTXPP_BENCH_W9_RUNS:-1}"
  export COUNT="${COUNT:-3}" BENCHTIME="${BENCHTIME:-200ms}" W9RUNS="${W9RUNS:-1}"
  export W6REPS="${W6REPS:-9}"
  std_args+=(--benchmark_filter=-^W6/iterations)  # the 10,000-thread W6 alone takes ~40 s
  notes+=("QUICK=1: fewer repetitions; std's 10,000-thread W6 skipped.")
fi

# --- machine -----------------------------------------------------------------------------
if [[ -n "${WAIT_QUIET:-}" ]]; then
  waited=0
  while awk "BEGIN{exit !($(load1) >= 1)}" && ((waited < WAIT_QUIET)); do
    sleep 5
    waited=$((waited + 5))
  done
  log "waited ${waited}s for a quiet machine (load $(load1))"
fi
if awk "BEGIN{exit !($(load1) >= $(nproc) / 2)}"; then
  log "warning: load average $(load1) on $(nproc) CPUs: figures will be noisy"
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -srm)"
  echo "compiler: $(g++ --version | head -1)"
  echo "go: $(go version 2>/dev/null || echo none)"
  # The library measured: the commit, and a fingerprint of uncommitted edits, if any.
  if git -C "$root" rev-parse --short HEAD >/dev/null 2>&1; then
    tree="$(git -C "$root" rev-parse --short HEAD)"
    if ! git -C "$root" diff --quiet HEAD -- include src; then
      tree+=" + uncommitted include/src edits (diff sha1 $(git -C "$root" diff HEAD -- include src | sha1sum | cut -c1-12))"
    fi
    echo "ctxpp tree: $tree"
  fi
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

# --- ctxpp -------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building the release preset (ctxpp-bench)"
  (cd "$root" && cmake --preset release >"$out/build.log" 2>&1 &&
    cmake --build --preset release --target ctxpp-bench ctxpp-group-bench ctxpp-cleanup-bench \
      ctxpp-pool-bench ctxpp-observe-bench >>"$out/build.log" 2>&1) || {
    cat "$out/build.log" >&2
    exit 1
  }
fi
bin="$root/build/release/bench/ctxpp-bench"
[[ -x "$bin" ]] || { log "missing $bin (Google Benchmark not found at configure time?)"; exit 1; }
log "running ctxpp-bench"
SECONDS=0
"$bin" >"$out/ctxpp.jsonl" 2>"$out/ctxpp.log"
log "ctxpp done in ${SECONDS}s"
stage_load ctxpp

# --- Go ----------------------------------------------------------------------------------
if [[ "${SKIP_GO:-0}" == 1 ]]; then
  notes+=("go: skipped (SKIP_GO=1).")
elif ! command -v go >/dev/null; then
  notes+=("go: skipped, \`go\` not found (apt-get install golang-go).")
else
  log "running the Go baseline"
  SECONDS=0
  if RAW=1 "$shared/go/run.sh" >"$out/go.jsonl" 2>"$out/go.log"; then
    log "go done in ${SECONDS}s"
    stage_load go
  else
    notes+=("go: run.sh failed, see build/bench/go.log.")
  fi
fi

# --- std ---------------------------------------------------------------------------------
if [[ "${SKIP_STD:-0}" == 1 ]]; then
  notes+=("std: skipped (SKIP_STD=1).")
else
  log "running the std baseline"
  SECONDS=0
  export STD_BASELINE_OUT="$out/std-build"
  if "$shared/std/run.sh" "${std_args[@]}" >"$out/std.jsonl" 2>"$out/std.log"; then
    log "std done in ${SECONDS}s"
    stage_load std
  else
    notes+=("std: run.sh failed, see build/bench/std.log.")
  fi
fi

# --- tokio (offline, Debian packages only) -----------------------------------------------
registry=/usr/share/cargo/registry
cargo_bin="${CARGO:-/usr/bin/cargo}"
if [[ "${SKIP_TOKIO:-0}" == 1 ]]; then
  notes+=("tokio: skipped (SKIP_TOKIO=1).")
elif [[ ! -x "$cargo_bin" ]] || ! compgen -G "$registry/tokio-util-0.7*" >/dev/null ||
  ! compgen -G "$registry/tokio-1.*" >/dev/null; then
  notes+=("tokio: skipped, Debian's cargo and crates are not installed (needs \`apt-get install rustc cargo librust-tokio-dev librust-tokio-util-dev librust-libc-dev\`; see ../shared/bench/tokio/README.md).")
else
  log "running the tokio baseline"
  SECONDS=0
  export CARGO_TARGET_DIR="$out/tokio-target"
  if CARGO="$cargo_bin" "$shared/tokio/run.sh" >"$out/tokio.jsonl" 2>"$out/tokio.log"; then
    log "tokio done in ${SECONDS}s"
    stage_load tokio
  else
    notes+=("tokio: run.sh failed, see build/bench/tokio.log.")
  fi
fi

cat "$out"/{ctxpp,go,std,tokio}.jsonl 2>/dev/null >"$out/all.jsonl" || true

# --- table -------------------------------------------------------------------------------
note_args=()
for note in "${notes[@]+"${notes[@]}"}"; do note_args+=(--note "$note"); done
{
  echo '```'
  cat "$out/machine.txt"
  echo '```'
  echo
  python3 "$here/compare.py" --ours "$out/ctxpp.jsonl" --go "$out/go.jsonl" \
    --std "$out/std.jsonl" --tokio "$out/tokio.jsonl" "${note_args[@]+"${note_args[@]}"}"
} >"$out/table.md"

# --- structured concurrency, cleanup and pool (own std baselines, same run) --------------
if [[ "${SKIP_STRUCTURED:-0}" != 1 ]]; then
  suites=(group cleanup)
  [[ "${SKIP_POOL:-0}" == 1 ]] || suites+=(pool)
  [[ "${SKIP_OBSERVE:-0}" == 1 ]] || suites+=(observe)
  for suite in "${suites[@]}"; do
    suite_bin="$root/build/release/bench/ctxpp-$suite-bench"
    [[ -x "$suite_bin" ]] || { log "missing $suite_bin, skipped"; continue; }
    suite_args=(--benchmark_color=false)
    if [[ "$suite" == pool ]]; then
      pool_reps="${POOL_REPS:-5}"
      if [[ "${QUICK:-0}" == 1 ]]; then pool_reps="${POOL_REPS:-3}"; fi
      suite_args+=("--benchmark_repetitions=$pool_reps" --benchmark_report_aggregates_only=true)
    fi
    log "running ctxpp-$suite-bench"
    SECONDS=0
    if "$suite_bin" "${suite_args[@]}" >"$out/$suite.txt" 2>"$out/$suite.log"; then
      log "ctxpp-$suite-bench done in ${SECONDS}s"
      {
        echo
        echo "### ctxpp-$suite-bench"
        echo '```'
        grep -E '^\|' "$out/$suite.txt" || true
        grep -E '(_median|goal|exit check)' "$out/$suite.txt" || true
        echo "load after ctxpp-$suite-bench: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo '```'
      } >>"$out/table.md"
    else
      echo "ctxpp-$suite-bench failed, see build/bench/$suite.log" >>"$out/table.md"
    fi
  done
fi
cat "$out/table.md"
log "raw results and table in ${out#"$root"/}/"
