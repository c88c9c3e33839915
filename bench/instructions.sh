#!/usr/bin/env bash
# bench/instructions.sh — instructions per W3 and W4 iteration at two revisions,
# counted by callgrind (Debian `valgrind`): unlike time, the count does not move with
# the machine's load, so a few-percent change of a hot path shows on a busy machine.
#
#   bench/instructions.sh [BASE [HEAD]]    default: BASE=HEAD~1, HEAD=working tree
#
# Builds the core library (release) of each revision under build/instructions/ and
# bench/instruction_loop.cpp against it (BASE uses the loop of HEAD: the public API it
# touches is the same), then prints instructions per iteration and head/base.
# Instructions are not time: a store costs less than a locked read-modify-write; read
# this beside bench/compare_revisions.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
base_rev="${1:-HEAD~1}"
head_rev="${2:-}"
out="$root/build/instructions"
iterations="${ITERATIONS:-200000}"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
mkdir -p "$out"

build_at() {  # name rev -> prints the loop binary's path
  local name=$1 rev=$2 src
  if [[ -z "$rev" ]]; then
    src="$root"
  else
    src="$out/src-$name"
    rm -rf "$src" && mkdir -p "$src"
    git -C "$root" archive "$rev" | tar -x -C "$src"
  fi
  cmake -S "$src" -B "$out/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ \
    -DCTXPP_BUILD_TESTS=OFF -DCTXPP_BUILD_EXAMPLES=OFF -DCTXPP_BUILD_BENCH=OFF \
    -DCTXPP_INSTALL=OFF >"$out/$name.configure.log" 2>&1
  cmake --build "$out/$name" -j "${CTXPP_JOBS:-2}" --target ctxpp >"$out/$name.build.log" 2>&1
  g++ -std=c++20 -O2 -DNDEBUG -I"$src/include" "$root/bench/instruction_loop.cpp" \
    "$out/$name/libctxpp.a" -lpthread -o "$out/$name/instruction-loop"
  echo "$out/$name/instruction-loop"
}

base_bin=$(build_at base "$base_rev")
head_bin=$(build_at head "$head_rev")
count() {  # binary workload -> instructions per iteration
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" "$iterations" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' |
    awk -v n="$iterations" '{ printf "%.1f", $1 / n }'
}
echo "| workload | $base_rev | ${head_rev:-working tree} | head/base |"
echo "|---|---|---|---|"
for workload in W3 W4; do
  b=$(count "$base_bin" "$workload")
  h=$(count "$head_bin" "$workload")
  awk -v w="$workload" -v b="$b" -v h="$h" 'BEGIN { printf "| %s | %s | %s | %.3f |\n", w, b, h, h / b }'
done
