#!/usr/bin/env bash
# Installs the Debian 12 packages ctxpp needs to build, test and benchmark.
#   scripts/install-deps.sh            skip quickly when everything is installed
#   FORCE=1 scripts/install-deps.sh    always apt-get update + install
# Under CI=true it always runs apt-get update + install.
# Never add libboost-dev / libboost-all-dev: they conflict with libboost1.81-dev.
set -euo pipefail

PACKAGES=(
  g++ clang-14 clang-format-14 clang-tidy-14 libclang-rt-14-dev
  libclang-14-dev libclang-cpp14-dev llvm-14-dev
  cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql libpq-dev libsqlite3-dev
  libboost1.81-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  golang-go git ca-certificates
  python3 python3-jsonschema
  prometheus-cpp-dev nlohmann-json3-dev chromium
)

log() { printf '[install-deps] %s\n' "$*"; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ "${CI:-}" != "true" && "${FORCE:-0}" != "1" && ${#missing[@]} -eq 0 ]]; then
  log "all ${#PACKAGES[@]} packages already installed (FORCE=1 to reinstall)"
  exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo)
  else
    log "need root (or password-less sudo) to install: ${missing[*]:-${PACKAGES[*]}}"
    exit 1
  fi
fi

# Wait for another apt/dpkg run instead of failing on its lock.
APT=(apt-get -o DPkg::Lock::Timeout=900 -o Acquire::Retries=3)

attempt() {
  local n
  for n in 1 2 3; do
    if "$@"; then return 0; fi
    log "attempt $n failed: $*"
    sleep $((n * 5))
  done
  return 1
}

start=$SECONDS
log "apt-get update${missing[*]:+ (missing: ${missing[*]})}"
if ! attempt "${SUDO[@]}" "${APT[@]}" update -q; then
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "WARNING: apt-get update failed, but every package is installed: continuing"
    exit 0
  fi
  log "apt-get update failed"
  exit 1
fi
if ! attempt "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -q \
    --no-install-recommends "${PACKAGES[@]}"; then
  log "apt-get install failed"
  exit 1
fi
log "done in $((SECONDS - start)) s"
