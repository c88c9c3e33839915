#!/usr/bin/env bash
# The demo command: installs the Debian packages, builds the release preset and runs
# the demo program (the client-disconnect example until the reference gateway exists).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_TARGET=ctxpp-example-disconnect
DEMO_BINARY=build/release/examples/ctxpp-example-disconnect

[[ "${CTXPP_SKIP_DEPS:-0}" == "1" ]] || scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j "${CTXPP_JOBS:-2}" --target "$DEMO_TARGET"
exec "$DEMO_BINARY" "$@"
