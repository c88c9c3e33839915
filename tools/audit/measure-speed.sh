#!/usr/bin/env bash
# Times ctxpp-audit against clang-tidy with a single check on the same files, both with
# the same number of parallel jobs; prints the two wall times and their ratio.
#
#   tools/audit/measure-speed.sh [BUILD_DIR] [JOBS]    (default: build/default 2)
#
# BUILD_DIR must hold compile_commands.json and a built ctxpp-audit (configure with
# -DCTXPP_BUILD_AUDIT=ON). The files are the library, adapter and example sources in
# that database — the same set as the self-audit test.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/default}
jobs=${2:-2}
tool=$build/tools/audit/ctxpp-audit
tidy=${CLANG_TIDY:-clang-tidy-14}

[[ -x $tool ]] || { echo "no $tool: build with -DCTXPP_BUILD_AUDIT=ON" >&2; exit 2; }
[[ -f $build/compile_commands.json ]] || { echo "no $build/compile_commands.json" >&2; exit 2; }
command -v "$tidy" >/dev/null || { echo "no $tidy" >&2; exit 2; }

root=$(pwd)
mapfile -t files < <(grep -o '"file": *"[^"]*"' "$build/compile_commands.json" |
  sed -E 's/.*"file": *"([^"]*)"/\1/' |
  grep -E "^$root/(src|adapters/[^/]+/src|examples)/" | sort -u)
echo "${#files[@]} files, $jobs jobs"

now() { date +%s.%N; }

t0=$(now)
"$tool" -p "$build" -j "$jobs" "${files[@]}" >/dev/null 2>&1 || true
t1=$(now)
printf '%s\0' "${files[@]}" |
  xargs -0 -n 1 -P "$jobs" "$tidy" -p "$build" --quiet \
    --checks='-*,bugprone-use-after-move' >/dev/null 2>&1 || true
t2=$(now)

awk -v a="$t0" -v b="$t1" -v c="$t2" -v j="$jobs" 'BEGIN {
  printf "ctxpp-audit -j %s:                               %6.1f s\n", j, b - a
  printf "clang-tidy --checks=-*,bugprone-use-after-move: %6.1f s\n", c - b
  printf "ratio audit/tidy: %.2f\n", (b - a) / (c - b)
}'
