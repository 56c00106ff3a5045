#!/usr/bin/env bash
# Side-by-side start-to-exit of `true` in a busybox image: `wharf run`
# against crun and runc running the OCI bundle `wharf bundle` writes for
# the same image (same spec), and `podman run --rm` of the same image when
# podman is installed (with runc, and the nofile/nproc limits this
# machine lets it set). Root only.
#
# Usage: sudo bash benches/linux-run.sh
#
# Environment:
#   WHARF=path    wharf binary (default target/release/wharf)
#   SKIP_BUILD=1  do not run cargo build --release first
#   RUNS=n        hyperfine runs per command (default 30)
#
# Needs hyperfine, runc, busybox-static; crun and podman are optional
# (apt-get install crun podman). On hosts with cgroup v1 and a hybrid v2
# mount, crun refuses to start unless /sys/fs/cgroup/unified is hidden, so
# every command is timed inside one private mount namespace where it is
# unmounted (wharf and runc do not care either way).
set -euo pipefail
cd "$(dirname "$0")/.."

WHARF=${WHARF:-target/release/wharf}
RUNS=${RUNS:-30}
if [[ "$(id -u)" != 0 ]]; then
    echo "linux-run.sh: run as root (containers)" >&2
    exit 1
fi
for tool in hyperfine runc; do
    command -v "$tool" >/dev/null || { echo "linux-run.sh: $tool missing (apt-get install $tool)" >&2; exit 1; }
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p wharf-cli
fi
WHARF=$(realpath "$WHARF")

R=$(mktemp -d "${TMPDIR:-/tmp}/wharf-linux-bench.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/ctx/root/proc" "$R/ctx/root/dev" "$R/ctx/root/sys"
cp /bin/busybox "$R/ctx/busybox"
# The mount points every distribution image has (/proc, /dev, /sys), so
# that no runtime makes them at each start: crun and runc make them once
# in the bundle's rootfs, wharf would make them in each container's
# fresh upper layer.
printf 'FROM scratch\nCOPY root/ /\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\nCMD ["true"]\n' >"$R/ctx/Dockerfile"
"$WHARF" --root "$R/store" build --platform linux/amd64 -t bb "$R/ctx" >/dev/null
"$WHARF" --root "$R/store" run bb          # untimed: unpacks the snapshot
"$WHARF" --root "$R/store" bundle bb "$R/bundle" >/dev/null

commands=("$WHARF --root $R/store run bb" "runc run --bundle $R/bundle bench-runc")
names=(wharf runc)
if command -v crun >/dev/null; then
    commands+=("crun run --bundle $R/bundle bench-crun")
    names+=(crun)
fi
if command -v podman >/dev/null; then
    "$WHARF" --root "$R/store" save -o "$R/bb.tar" bb
    podman load -q -i "$R/bb.tar" >/dev/null
    commands+=("podman run --rm --runtime runc --network none --ulimit nofile=20000:20000 --ulimit nproc=1024:1024 docker.io/library/bb:latest")
    names+=(podman)
fi
name_args=()
for n in "${names[@]}"; do name_args+=(--command-name "$n"); done

unshare -m --propagation private bash -c '
    umount /sys/fs/cgroup/unified 2>/dev/null || true
    exec hyperfine --warmup 3 --runs "$0" -N --output=null --export-json "$1" "${@:2}"
' "$RUNS" "$R/linux.json" "${name_args[@]}" "${commands[@]}"

python3 - "$R/linux.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
w = results["wharf"]["mean"]
print()
print(f"{'command':<8} {'mean ms':>9} {'stddev ms':>10} {'wharf / it':>11}")
for name, r in results.items():
    print(f"{name:<8} {r['mean']*1e3:>9.2f} {r['stddev']*1e3:>10.2f} {w / r['mean']:>10.2f}x")
if "crun" in results:
    print(f"\nwharf/crun = {w / results['crun']['mean']:.2f} (target <= 1.0)")
if "podman" in results:
    print(f"wharf/podman = {w / results['podman']['mean']:.2f} (target <= 0.1)")
PY
