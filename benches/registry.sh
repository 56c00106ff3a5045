#!/usr/bin/env bash
# Share benchmarks, side by side in one run:
#  - push and pull of a multi-layer image (~500 MB) through a loopback CNCF
#    registry (Debian's docker-registry): `wharf push/pull` vs `skopeo copy`;
#  - a re-push of the unchanged image (blobs uploaded, wall time);
#  - sha256 throughput of wharf's digest path vs `openssl dgst -sha256`.
#
# Usage: bash benches/registry.sh
#
# Environment:
#   WHARF=path     wharf binary (default target/release/wharf)
#   INGEST=path    sha256-ingest binary (default target/release/sha256-ingest)
#   SKIP_BUILD=1   do not run cargo build --release first
#   RUNS=n         timed runs per command, median reported (default 3)
#   SIZE_MB=n      total image size (default 500), LAYERS=n layers (default 5)
#
# Each push goes to a registry with empty storage, each pull into an empty
# store or directory, so every run moves every byte.
set -euo pipefail
cd "$(dirname "$0")/.."

WHARF=${WHARF:-target/release/wharf}
INGEST=${INGEST:-target/release/sha256-ingest}
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-500}
LAYERS=${LAYERS:-5}

for tool in docker-registry skopeo openssl python3; do
    command -v "$tool" >/dev/null || { echo "registry.sh: $tool not found" >&2; exit 1; }
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p wharf-cli -p wharf-benches
fi
WHARF=$(realpath "$WHARF")
INGEST=$(realpath "$INGEST")

W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-regbench.XXXXXX")
REG_PID=
cleanup() {
    [[ -n "$REG_PID" ]] && kill "$REG_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
export WHARF_CONFIG="$W/config" DOCKER_CONFIG="$W/docker"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT

# (Re)starts the registry with empty storage.
fresh_registry() {
    [[ -n "$REG_PID" ]] && { kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; }
    rm -rf "$W/registry"
    mkdir -p "$W/registry"
    cat > "$W/registry/config.yml" <<EOF
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $W/registry/data}
http: {addr: $REG}
EOF
    docker-registry serve "$W/registry/config.yml" >"$W/registry/log" 2>&1 &
    REG_PID=$!
    for _ in $(seq 100); do
        curl -fs "http://$REG/v2/" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "registry.sh: registry did not start" >&2
    cat "$W/registry/log" >&2
    exit 1
}

# Seconds taken by a command (its output discarded).
timed() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.3f}')"
}

median() { python3 -c 'import sys,statistics; print(f"{statistics.median(map(float, sys.argv[1:])):.3f}")' "$@"; }

echo "== building a ${SIZE_MB} MB image in $LAYERS layers"
mkdir -p "$W/ctx"
per=$((SIZE_MB / LAYERS))
{
    echo "FROM scratch"
    for i in $(seq "$LAYERS"); do
        # Half random, half zeros: compresses about 2:1, as real layers do.
        head -c $((per * 512 * 1024)) /dev/urandom > "$W/ctx/r$i.bin"
        head -c $((per * 512 * 1024)) /dev/zero > "$W/ctx/z$i.bin"
        echo "COPY r$i.bin z$i.bin /layer$i/"
    done
} > "$W/ctx/Dockerfile"
ROOT="$W/root"
"$WHARF" --root "$ROOT" build -q -t big "$W/ctx" >/dev/null
rm -rf "$W/ctx"
SRC="oci:$ROOT:docker.io/library/big:latest"
du -sh "$ROOT/blobs" | sed 's/^/store blobs: /'

push_w=(); push_s=(); pull_w=(); pull_s=()
for run in $(seq "$RUNS"); do
    fresh_registry
    push_w+=("$(timed "$WHARF" --root "$ROOT" push -q big "$REG/big:w")")
    fresh_registry
    push_s+=("$(timed skopeo copy -q --dest-tls-verify=false "$SRC" "docker://$REG/big:s")")
    # Pull both from the registry that skopeo just filled.
    rm -rf "$W/pull-root" "$W/pull-oci"
    pull_w+=("$(timed "$WHARF" --root "$W/pull-root" pull -q "$REG/big:s")")
    pull_s+=("$(timed skopeo copy -q --src-tls-verify=false "docker://$REG/big:s" "oci:$W/pull-oci:big")")
    echo "run $run: push wharf ${push_w[-1]}s skopeo ${push_s[-1]}s; pull wharf ${pull_w[-1]}s skopeo ${pull_s[-1]}s"
done

# Re-push of the unchanged image: no blob may be uploaded.
"$WHARF" --root "$ROOT" push big "$REG/big:w" >/dev/null 2>&1
repush=$(timed "$WHARF" --root "$ROOT" push big "$REG/big:w")
uploaded=$("$WHARF" --root "$ROOT" push big "$REG/big:w" 2>&1 >/dev/null | grep -c ': pushed ' || true)

echo "== sha256 throughput"
blob=$(ls -S "$ROOT"/blobs/sha256/* | head -1)
blob_mb=$(( $(stat -c %s "$blob") / 1048576 ))
cat "$blob" > /dev/null # warm the page cache for both
hash_w=(); hash_o=()
for run in $(seq "$RUNS"); do
    hash_w+=("$(timed "$INGEST" hash "$blob")")
    hash_o+=("$(timed openssl dgst -sha256 "$blob")")
done
[[ "$("$INGEST" hash "$blob")" == "sha256:$(basename "$blob")" ]] || { echo "digest mismatch" >&2; exit 1; }

pw=$(median "${push_w[@]}"); ps=$(median "${push_s[@]}")
lw=$(median "${pull_w[@]}"); ls_=$(median "${pull_s[@]}")
hw=$(median "${hash_w[@]}"); ho=$(median "${hash_o[@]}")
python3 - "$pw" "$ps" "$lw" "$ls_" "$repush" "$uploaded" "$hw" "$ho" "$blob_mb" <<'EOF'
import sys
pw, ps, lw, ls, repush = map(float, sys.argv[1:6])
uploaded = int(sys.argv[6]); hw, ho = map(float, sys.argv[7:9]); mb = int(sys.argv[9])
print()
print(f"{'':22} {'wharf s':>9} {'peer s':>9} {'ratio':>7}  target")
print(f"{'push vs skopeo':22} {pw:9.3f} {ps:9.3f} {pw/ps:6.2f}x  <= 1.00x")
print(f"{'pull vs skopeo':22} {lw:9.3f} {ls:9.3f} {lw/ls:6.2f}x  <= 0.67x")
print(f"{'re-push unchanged':22} {repush:9.3f} {'':9} {'':7}  blobs uploaded: {uploaded}")
tw, to = mb / hw, mb / ho
print(f"{'sha256 MB/s vs openssl':22} {tw:9.0f} {to:9.0f} {tw/to:6.2f}x  >= 0.90x (of a {mb} MB blob)")
EOF
