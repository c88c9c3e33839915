#!/usr/bin/env bash
# The test command: installs the Debian packages, then builds and runs every test
# (unit, stress, example, package) under each preset, checks formatting, and prints
# a summary whose last line is "N passed, N failed". Exits non-zero on any failure.
#
#   scripts/test.sh                 presets default clang asan tsan
#   scripts/test.sh default tsan    only those presets (any configure preset name)
#
# Environment: CTXPP_JOBS (default 2), CTXPP_TEST_TIMEOUT (per test, default 300 s),
# CTXPP_SKIP_DEPS=1 (skip scripts/install-deps.sh), CTXPP_TIDY=0 (skip advisory tidy),
# CTXPP_STRESS_SECONDS (wall time of each stress test, default 2 here, 5 when run alone).
#
# What each preset covers (the split keeps the whole run within its time budget):
#   default  g++: everything is built; the example, package and ctxpp-audit tests run
#            (the unit and stress tests run under both sanitizers instead)
#   clang    clang 14: library, adapters and tests are built; the unit tests run
#   asan     ASan+UBSan: everything is built; every test runs but the package tests and
#            the load generator's own (a tool, tested in the default preset)
#   tsan     TSan: library, adapters and their tests; the examples (separate processes
#            talking over sockets) run in the plain and ASan presets
set -uo pipefail
cd "$(dirname "$0")/.."

DEFAULT_PRESETS=(default clang asan tsan)
KNOWN_PRESETS=" default release asan tsan clang tidy "
JOBS=${CTXPP_JOBS:-2}
TEST_TIMEOUT=${CTXPP_TEST_TIMEOUT:-300}

presets=("$@")
[[ ${#presets[@]} -gt 0 ]] || presets=("${DEFAULT_PRESETS[@]}")
for p in "${presets[@]}"; do
  if [[ "$KNOWN_PRESETS" != *" $p "* ]]; then
    echo "unknown preset '$p' (known:$KNOWN_PRESETS)" >&2
    exit 2
  fi
done

export CTXPP_STRESS_SECONDS=${CTXPP_STRESS_SECONDS:-2}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

section() { printf '\n==== %s ====\n' "$*"; }

total_passed=0
total_failed=0
summary=()
start_all=$SECONDS

# --- dependencies --------------------------------------------------------------------
if [[ "${CTXPP_SKIP_DEPS:-0}" != "1" ]]; then
  section "dependencies"
  if ! scripts/install-deps.sh; then
    echo "scripts/install-deps.sh failed"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

LOG_DIR=build/test-logs
mkdir -p "$LOG_DIR"

# --- formatting ----------------------------------------------------------------------
section "clang-format"
format_files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [[ -f "$f" ]] && format_files+=("$f")
  done < <(git ls-files -z --cached --others --exclude-standard -- \
             'include/*.hpp' 'include/*.cpp' 'src/*.hpp' 'src/*.cpp' 'tests/*.hpp' \
             'tests/*.cpp' 'bench/*.hpp' 'bench/*.cpp' 'examples/*.hpp' 'examples/*.cpp' \
             'adapters/*.hpp' 'adapters/*.cpp' 'tools/*.hpp' 'tools/*.cpp')
else
  while IFS= read -r -d '' f; do format_files+=("$f"); done < <(
    find include src tests bench examples adapters tools -type f \( -name '*.hpp' -o -name '*.cpp' \) \
      -print0 2>/dev/null)
fi
if ! command -v clang-format-14 >/dev/null 2>&1; then
  echo "clang-format-14 not found"
  summary+=("format:   FAILED (clang-format-14 missing)")
  total_failed=$((total_failed + 1))
elif [[ ${#format_files[@]} -eq 0 ]]; then
  summary+=("format:   no files")
elif clang-format-14 --dry-run -Werror "${format_files[@]}"; then
  summary+=("format:   ok (${#format_files[@]} files)")
  total_passed=$((total_passed + 1))
else
  echo "formatting differs: run clang-format-14 -i on the files above"
  summary+=("format:   FAILED (run clang-format-14 -i)")
  total_failed=$((total_failed + 1))
fi

# --- TSan on this kernel ---------------------------------------------------------------
# TSan (gcc 12 / clang 14) aborts with "FATAL: ThreadSanitizer: unexpected memory
# mapping" on kernels with high-entropy ASLR; running without ASLR (setarch -R, inherited
# by every child process) works around it.
tsan_wrapper=()
tsan_note=""
probe_tsan() {
  local dir
  dir=$(mktemp -d)
  cat >"$dir/probe.cpp" <<'CPP'
#include <atomic>
#include <thread>
int main() {
  std::atomic<int> n{0};
  std::thread t([&] { n.fetch_add(1); });
  n.fetch_add(1);
  t.join();
  return n.load() == 2 ? 0 : 1;
}
CPP
  if ! g++ -std=c++20 -fsanitize=thread -O1 -g "$dir/probe.cpp" -o "$dir/probe" \
      >"$dir/log" 2>&1; then
    cat "$dir/log"
    tsan_note=" (TSan probe did not compile)"
  elif "$dir/probe" >"$dir/log" 2>&1; then
    echo "TSan runs as is on $(uname -r)"
  elif setarch "$(uname -m)" -R "$dir/probe" >/dev/null 2>&1; then
    grep -m1 'FATAL' "$dir/log" || true
    echo "TSan needs ASLR off on $(uname -r): running the tsan tests under setarch -R"
    tsan_wrapper=(setarch "$(uname -m)" -R)
    tsan_note=" (under setarch -R)"
  else
    cat "$dir/log"
    echo "TSan does not run here, even under setarch -R"
    tsan_note=" (TSan probe failed)"
  fi
  rm -rf "$dir"
}

# --- presets -------------------------------------------------------------------------
run_preset() {
  local p=$1 t0=$SECONDS log="$LOG_DIR/$1.ctest.log"
  local extra=(-DCTXPP_WARNINGS_AS_ERRORS=ON) ctest_extra=()
  case $p in
    # Sanitizers add nothing to the package tests (install, find_package, pkg-config):
    # they run in the default preset.
    asan)
      extra+=(-DCTXPP_BUILD_BENCH=OFF -DCTXPP_PACKAGE_TESTS=OFF)
      ctest_extra=(--exclude-regex '^example[.]gateway[.]load[.]')
      ;;
    tidy) extra+=(-DCTXPP_BUILD_BENCH=OFF -DCTXPP_PACKAGE_TESTS=OFF) ;;
    tsan) extra+=(-DCTXPP_BUILD_BENCH=OFF -DCTXPP_PACKAGE_TESTS=OFF -DCTXPP_BUILD_EXAMPLES=OFF) ;;
    # ctxpp-audit (LibTooling) is built and tested once, with the default preset.
    default)
      extra+=(-DCTXPP_BUILD_AUDIT=ON)
      ctest_extra=(--label-exclude 'unit|stress')
      ;;
    # The benchmarks are compiled (with -Werror) by the default preset; not again here.
    clang)
      extra+=(-DCTXPP_BUILD_BENCH=OFF -DCTXPP_PACKAGE_TESTS=OFF -DCTXPP_BUILD_EXAMPLES=OFF)
      ctest_extra=(--label-regex unit)
      ;;
  esac

  section "$p: configure"
  if ! cmake --preset "$p" "${extra[@]}"; then
    summary+=("$(printf '%-9s configure FAILED' "$p:")")
    total_failed=$((total_failed + 1))
    return
  fi
  section "$p: build"
  if ! cmake --build --preset "$p" -j "$JOBS"; then
    summary+=("$(printf '%-9s build FAILED' "$p:")")
    total_failed=$((total_failed + 1))
    return
  fi

  local wrapper=() note=""
  if [[ $p == tsan ]]; then
    probe_tsan
    wrapper=("${tsan_wrapper[@]}")
    note=$tsan_note
  fi
  section "$p: test$note"
  "${wrapper[@]}" ctest --preset "$p" --output-on-failure -j "$JOBS" --timeout "$TEST_TIMEOUT" \
    "${ctest_extra[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}

  local line failed=0 total=0 passed
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1)
  if [[ -n "$line" ]]; then
    failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
    total=$(sed -E 's/.*failed out of ([0-9]+).*/\1/' <<<"$line")
  fi
  passed=$((total - failed))
  if [[ $rc -ne 0 && $failed -eq 0 ]]; then
    failed=1  # no tests found, ctest crashed, ...
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  summary+=("$(printf '%-9s %d passed, %d failed in %d s%s' "$p:" "$passed" "$failed" \
                 $((SECONDS - t0)) "$note")")
}

for p in "${presets[@]}"; do
  run_preset "$p"
done

# --- clang-tidy on changed files (advisory) ------------------------------------------
if [[ "${CTXPP_TIDY:-1}" != "0" && -f build/clang/compile_commands.json ]] &&
   command -v clang-tidy-14 >/dev/null 2>&1 &&
   git rev-parse --verify -q HEAD >/dev/null 2>&1; then
  section "clang-tidy (advisory, changed files)"
  base=HEAD
  git rev-parse --verify -q HEAD~1 >/dev/null 2>&1 && base=HEAD~1
  mapfile -t tidy_files < <(
    { git diff --name-only --diff-filter=d "$base" -- 'src/*.cpp' 'tests/*.cpp' \
        'examples/*.cpp' 'bench/*.cpp'
      git ls-files --others --exclude-standard -- 'src/*.cpp'; } | sort -u)
  if [[ ${#tidy_files[@]} -gt 0 ]]; then
    tidy_log="$LOG_DIR/clang-tidy.log"
    printf '%s\0' "${tidy_files[@]}" |
      timeout 600 xargs -0 -n 4 -P "$JOBS" clang-tidy-14 -p build/clang --quiet \
        >"$tidy_log" 2>/dev/null || true
    n=$(grep -c 'warning:' "$tidy_log" || true)
    grep -E 'warning:' "$tidy_log" | head -n 50 || true
    summary+=("tidy:     ${n:-0} warnings in ${#tidy_files[@]} changed files (advisory, $tidy_log)")
  fi
fi

section "summary ($((SECONDS - start_all)) s)"
printf '%s\n' "${summary[@]}"
echo "${total_passed} passed, ${total_failed} failed"
[[ $total_failed -eq 0 ]]
