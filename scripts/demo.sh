#!/usr/bin/env bash
# The demo command: installs the Debian packages, builds the release preset, and runs the
# reference gateway under load (docs/gateway.md): ctxpp-load starts ctxpp-upstream and
# ctxpp-gateway on loopback ports, drives a bounded mix of normal requests, clients that
# hang up and short deadlines, once with correct propagation and once with
# --broken-propagation, checks memory over 100,000 requests, prints the report and
# writes build/gateway-demo/report.{txt,json,html}. Exit 0 when every goal passed.
# Arguments are passed to `ctxpp-load demo` (e.g. --quick, --requests N).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${CTXPP_DEMO_OUT:-build/gateway-demo}
BIN=build/release/examples/gateway

[[ "${CTXPP_SKIP_DEPS:-0}" == "1" ]] || scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j "${CTXPP_JOBS:-2}" \
  --target ctxpp-gateway ctxpp-upstream ctxpp-load
transport=()
# Payments go over gRPC when the gRPC adapter was built (it is with the packages above).
grep -q '^CTXPP_GATEWAY_HAS_GRPC:INTERNAL=ON' build/release/CMakeCache.txt && transport=(--grpc)
exec "$BIN/load/ctxpp-load" demo --gateway-bin "$BIN/ctxpp-gateway" \
  --upstream-bin "$BIN/ctxpp-upstream" --out "$OUT" "${transport[@]}" "$@"
