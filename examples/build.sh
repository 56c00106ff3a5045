#!/usr/bin/env bash
# Build every wharf example guest in release mode.
#
# Each example is a standalone cargo package whose .cargo/config.toml selects
# the wasm target (wasm32-wasip1 or wasm32-wasip2), so a plain
# `cargo build --release` inside its directory is enough. Every example uses
# its own target/ directory; nothing is shared with the parent workspace.
set -euo pipefail
# Each example keeps its own target/ (Dockerfiles and tests look there),
# whatever target directory the caller uses for the workspace.
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
examples=(hello hello-p2 probe build-step http-hello cgi-hello tcp-echo tcp-listen)

for name in "${examples[@]}"; do
    dir="$here/$name"
    echo "==> building $name"
    (cd "$dir" && cargo build --release)
done

echo
echo "built modules:"
for name in "${examples[@]}"; do
    ls -l "$here/$name"/target/wasm32-wasip*/release/*.wasm
done
