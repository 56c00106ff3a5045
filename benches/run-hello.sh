#!/usr/bin/env bash
# Side-by-side timing of a cached `wharf run hello` against the minimal
# wasmtime embedding in src/bin/wasm-baseline.rs (and, when a `wasmtime`
# CLI is on PATH, against `wasmtime run` of a module it precompiled).
#
# Usage: bash benches/run-hello.sh
#
# Environment:
#   WHARF=path      wharf binary      (default target/debug/wharf)
#   BASELINE=path   baseline binary   (default target/debug/wasm-baseline)
#   SKIP_BUILD=1    do not run cargo build first
#   RUNS=n          hyperfine runs per command (default 50)
#   OUT=path        where to keep hyperfine's JSON (default: in the temp dir,
#                   removed at exit)
#
# Relative paths are taken from the repository root. Needs hyperfine
# (Debian/Ubuntu: apt-get install hyperfine) and python3.
set -euo pipefail

cd "$(dirname "$0")/.."

WHARF=${WHARF:-target/debug/wharf}
BASELINE=${BASELINE:-target/debug/wasm-baseline}
RUNS=${RUNS:-50}

for tool in hyperfine python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "run-hello.sh: $tool not found (hyperfine: apt-get install hyperfine)" >&2
        exit 1
    fi
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build -p wharf-cli -p wharf-benches
fi
for bin in "$WHARF" "$BASELINE"; do
    if [[ ! -x "$bin" ]]; then
        echo "run-hello.sh: $bin is missing or not executable" >&2
        exit 1
    fi
done
# The linker lays out `wharf`'s start-up path from cli/wharf.order; symbol
# names change with the toolchain, so say how much of it still matches
# (benches/order.sh rewrites it).
if command -v nm >/dev/null; then
    listed=$(grep -vc '^#' cli/wharf.order)
    found=$(nm --defined-only "$WHARF" | awk '{print $3}' | sort -u \
        | grep -Fxc -f <(grep -v '^#' cli/wharf.order) || true)
    echo "cli/wharf.order: $found of $listed functions found in $WHARF"
fi
# hyperfine -N runs commands without a shell, from this directory; absolute
# paths keep the printed commands unambiguous.
WHARF=$(realpath "$WHARF")
BASELINE=$(realpath "$BASELINE")

HELLO_WASM=examples/hello/target/wasm32-wasip1/release/hello.wasm
if [[ ! -f "$HELLO_WASM" ]]; then
    bash examples/build.sh
fi

R=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench.XXXXXX")
trap 'rm -rf "$R"' EXIT
OUT=${OUT:-$R/hello.json}

"$WHARF" --root "$R" build -t hello examples/hello >/dev/null
# One run fills the compiled-module cache; every timed run is a cache hit.
"$WHARF" --root "$R" run hello >/dev/null

shopt -s nullglob
cached=("$R"/wharf/modules/*/*.cwasm)
shopt -u nullglob
if [[ ${#cached[@]} -ne 1 ]]; then
    echo "run-hello.sh: expected one compiled module under $R/wharf/modules, found ${#cached[@]}" >&2
    exit 1
fi
CWASM=${cached[0]}

# The baseline must run the same code wharf runs: check once, untimed.
"$BASELINE" "$CWASM" >/dev/null

commands=("$WHARF --root $R run hello" "$BASELINE $CWASM")
names=(wharf baseline)
if command -v wasmtime >/dev/null; then
    # The CLI's own configuration differs from wharf's, so it compiles its
    # own copy instead of reusing wharf's cache file.
    wasmtime compile "$HELLO_WASM" -o "$R/hello-cli.cwasm"
    commands+=("wasmtime run --allow-precompiled $R/hello-cli.cwasm")
    names+=(wasmtime-cli)
fi
# hyperfine splits -N commands on whitespace: no path here may contain any.
for c in "${commands[@]}"; do
    if [[ "$c" == *[\'\"]* ]]; then
        echo "run-hello.sh: quotes in command: $c" >&2
        exit 1
    fi
done
name_args=()
for n in "${names[@]}"; do
    name_args+=(--command-name "$n")
done

hyperfine --warmup 5 --runs "$RUNS" -N --output=null \
    --export-json "$OUT" "${name_args[@]}" "${commands[@]}"

python3 - "$OUT" <<'PY'
import json
import sys

with open(sys.argv[1]) as f:
    results = json.load(f)["results"]
by_name = {r["command"]: r for r in results}
base = by_name["baseline"]["mean"]

print()
print(f"{'command':<14} {'mean ms':>9} {'stddev ms':>10} {'vs baseline':>12}")
for r in results:
    print(
        f"{r['command']:<14} {r['mean'] * 1e3:>9.2f} {r['stddev'] * 1e3:>10.2f}"
        f" {r['mean'] / base:>11.2f}x"
    )
print()
print(f"ratio wharf/baseline = {by_name['wharf']['mean'] / base:.2f} (target <= 1.20)")
PY
