#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs them.
# Used by README's Quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use as real peers (skopeo reads our archives).
missing=()
for tool in skopeo umoci; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
  else
    echo "warning: ${missing[*]} missing and not root: those tests will be skipped" >&2
  fi
fi

# Guest programs are built for both WASI targets.
rustup target add wasm32-wasip1 wasm32-wasip2

cargo fmt --all -- --check
# The end-to-end tests drive target/debug/wharf, which `cargo test` alone
# does not build.
cargo build --workspace
cargo test --workspace
