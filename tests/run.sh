#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs them.
# Used by README's Quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use as real peers: skopeo and umoci read and
# write our images, docker-registry is the CNCF distribution registry,
# htpasswd and openssl set up its basic auth and TLS, busybox (static) is
# the content of linux images, runc runs the OCI bundles wharf writes,
# tini-static is the init of `run --init`. "command:package".
missing=()
for need in skopeo:skopeo umoci:umoci docker-registry:docker-registry \
            htpasswd:apache2-utils openssl:openssl busybox:busybox-static \
            runc:runc tini-static:tini; do
  command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
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

# Real Docker clients drive `wharf daemon`: the docker CLI (client only;
# Debian's docker.io when none is installed) and the Python docker SDK.
if ! command -v docker >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io
fi
if ! python3 -c 'import docker' >/dev/null 2>&1; then
  python3 -m pip install -q docker 2>/dev/null \
    || python3 -m pip install -q --break-system-packages docker
fi

# Guest programs are built for both WASI targets.
rustup target add wasm32-wasip1 wasm32-wasip2

cargo fmt --all -- --check
# The end-to-end tests drive target/debug/wharf, which `cargo test` alone
# does not build.
cargo build --workspace
cargo test --workspace
cargo clippy --workspace --all-targets -- -D warnings
