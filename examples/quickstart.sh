#!/usr/bin/env bash
# Builds wharf and the hello example, then runs it: Build -> Run.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null
cargo build -p wharf-cli   # the `wharf` and `wharf-full` executables
bash examples/build.sh
root=${WHARF_ROOT:-$(mktemp -d)}
wharf="${CARGO_TARGET_DIR:-target}/debug/wharf"
"$wharf" --root "$root" build -t hello examples/hello
"$wharf" --root "$root" run hello from the quick start
