#!/usr/bin/env bash
# `wharf serve` under load, side by side with `wasmtime serve` in one run:
#  - the http-hello wasi:http component: requests/s and p99 latency, wharf
#    vs `wasmtime serve -O pooling-allocator -S cli` on the same .wasm;
#  - the cgi-hello wasip1 handler in CGI mode: requests/s.
# Load comes from wrk (Debian: apt-get install wrk) on the same machine.
#
# Usage: bash benches/serve.sh
#
# Environment:
#   WHARF=path      wharf binary (default target/release/wharf)
#   WASMTIME=path   wasmtime CLI (default: `wasmtime` on PATH; skipped when
#                   missing; install with `cargo install wasmtime-cli
#                   --version 48.0.8 --locked`, about 25 minutes here)
#   SKIP_BUILD=1    do not run cargo build --release first
#   DURATION=10s    wrk duration per measurement
#   CONNECTIONS=16  wrk connections (2 threads)
set -euo pipefail
cd "$(dirname "$0")/.."

WHARF=${WHARF:-target/release/wharf}
WASMTIME=${WASMTIME:-$(command -v wasmtime || true)}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "serve.sh: $tool not found" >&2; exit 1; }
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p wharf-cli
fi
bash examples/build.sh >/dev/null
WHARF=$(realpath "$WHARF")
HTTP_WASM=examples/http-hello/target/wasm32-wasip2/release/http_hello.wasm

W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-servebench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

"$WHARF" --root "$W/root" build -q -t http-hello examples/http-hello >/dev/null
"$WHARF" --root "$W/root" build -q -t cgi-hello examples/cgi-hello >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until URL answers 200.
wait_up() {
    for _ in $(seq 200); do
        curl -fs "$1" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "serve.sh: $1 did not come up" >&2
    exit 1
}

# Runs wrk against URL; prints "requests_per_sec p99_ms".
load() {
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$1" > "$W/wrk.out"
    python3 - "$W/wrk.out" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", text)
unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"wrk saw {errors.group(1)} error responses")
print(f"{rps:.0f} {float(m.group(1)) * unit:.2f}")
EOF
}

P=$(port)
"$WHARF" --root "$W/root" serve --listen "127.0.0.1:$P" http-hello 2>/dev/null &
PIDS+=($!)
wait_up "http://127.0.0.1:$P/hi"
read -r w_rps w_p99 < <(load "http://127.0.0.1:$P/hi")
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

t_rps=; t_p99=
if [[ -n "$WASMTIME" ]]; then
    P=$(port)
    "$WASMTIME" serve -O pooling-allocator -S cli --addr "127.0.0.1:$P" "$HTTP_WASM" 2>/dev/null &
    PIDS+=($!)
    wait_up "http://127.0.0.1:$P/hi"
    read -r t_rps t_p99 < <(load "http://127.0.0.1:$P/hi")
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
fi

P=$(port)
"$WHARF" --root "$W/root" serve --listen "127.0.0.1:$P" cgi-hello 2>/dev/null &
PIDS+=($!)
wait_up "http://127.0.0.1:$P/hi"
read -r c_rps c_p99 < <(load "http://127.0.0.1:$P/hi")

python3 - "$w_rps" "$w_p99" "${t_rps:-0}" "${t_p99:-0}" "$c_rps" "$c_p99" <<'EOF'
import sys
w_rps, w_p99, t_rps, t_p99, c_rps, c_p99 = map(float, sys.argv[1:])
print()
print(f"{'':34} {'req/s':>9} {'p99 ms':>8}")
print(f"{'wharf serve (wasi:http)':34} {w_rps:9.0f} {w_p99:8.2f}")
if t_rps:
    print(f"{'wasmtime serve -O pooling-allocator':34} {t_rps:9.0f} {t_p99:8.2f}")
    print(f"ratio wharf/wasmtime: req/s {w_rps / t_rps:.2f}x (target >= 1.0), "
          f"p99 {w_p99 / t_p99:.2f}x (target <= 1.2)")
else:
    print("wasmtime CLI not found: no side-by-side ratio")
print(f"{'wharf serve (CGI, wasip1)':34} {c_rps:9.0f} {c_p99:8.2f}   target >= 10000 req/s")
EOF
