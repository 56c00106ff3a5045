#!/usr/bin/env bash
# Regenerates cli/wharf.order: the functions a cached `wharf run` executes,
# which the linker places side by side at the start of `wharf`'s .text
# (cli/build.rs, spec/decisions/0008-startup-cost.md).
#
# Usage: bash benches/order.sh
#
# Run it after a change of Rust toolchain or of the wasmtime version (symbol
# hashes change with both, and benches/run-hello.sh reports how much of the
# file still matches), or after large changes to the run path. Needs
# valgrind (apt-get install valgrind) and the example guests
# (examples/build.sh).
#
# Environment:
#   SKIP_BUILD=1    do not run cargo build first
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    echo "order.sh: valgrind not found (apt-get install valgrind)" >&2
    exit 1
fi
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p wharf-cli
fi
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
WHARF="$target_dir/release/wharf"
for example in hello hello-p2; do
    if ! ls examples/$example/target/wasm32-wasip*/release/*.wasm >/dev/null 2>&1; then
        bash examples/build.sh
        break
    fi
done

R=$(mktemp -d "${TMPDIR:-/tmp}/wharf-order.XXXXXX")
trap 'rm -rf "$R"' EXIT

"$WHARF" --root "$R" build -t hello examples/hello >/dev/null
"$WHARF" --root "$R" build -t hello-p2 examples/hello-p2 >/dev/null

# valgrind presents its own CPU to wasmtime, whose compiled-module cache key
# then differs from a native run's: the first traced run of each image
# compiles and is thrown away; the second is the cached run to order for.
for image in hello hello-p2; do
    valgrind -q --tool=none "$WHARF" --root "$R" run "$image" >/dev/null 2>&1
    valgrind -q --tool=callgrind --demangle=no --callgrind-out-file="$R/$image.cg" \
        "$WHARF" --root "$R" run "$image" >/dev/null
done

nm --defined-only "$WHARF" | awk '{print $3}' | sort -u >"$R/defined"
{
    echo "# Functions a cached \`wharf run\` executes (hello, then hello-p2), in"
    echo "# the order callgrind first met them. Written by benches/order.sh;"
    echo "# read by the linker through cli/build.rs."
    for image in hello hello-p2; do
        grep -oE '^c?fn=\([0-9]+\) \S+' "$R/$image.cg" | sed -E 's/^c?fn=\([0-9]+\) //'
    done | awk '!seen[$0]++' | grep -Fxf "$R/defined"
} >cli/wharf.order

echo "cli/wharf.order: $(grep -vc '^#' cli/wharf.order) functions"
