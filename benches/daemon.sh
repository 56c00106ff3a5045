#!/usr/bin/env bash
# `wharf daemon` through the Docker Engine API, against runwasi's
# published figures (containerd's wasm shims, which need containerd and
# are not packaged here):
#  - burst: N short wasm containers (probe `exit 0`), C at a time, each
#    create + start + wait + remove over the API socket: tasks per second,
#    beside runwasi's best published 330 tasks/s; with the daemon's guest
#    host running them on threads, then (the host killed) with monitors
#    forked by its monitor server, then (the server killed too) with
#    monitors executed, as the CLI starts them;
#  - idle memory: M detached wasm containers (probe `tick 0 600000`, which
#    sleeps) started through the API (all on the guest host) and M more by
#    the CLI (a monitor each), the proportional set size (PSS: shared pages
#    split between the processes that map them) and the RSS of the
#    processes that run them, per container, beside runwasi's published
#    22.7 MB per container.
#
# Usage: bash benches/daemon.sh
#
# Environment:
#   WHARF=path     wharf binary (default target/release/wharf)
#   SKIP_BUILD=1   do not run cargo build --release first
#   N=1000 C=4     burst size and concurrency
#   M=100          idle containers
set -euo pipefail
cd "$(dirname "$0")/.."

WHARF=${WHARF:-target/release/wharf}
N=${N:-1000}
C=${C:-4}
M=${M:-100}
RUNWASI_TASKS_PER_S=330
RUNWASI_MB_PER_CONTAINER=22.7

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    cargo build --release -p wharf-cli -p wharf-benches --bin api-burst
fi
bash examples/build.sh >/dev/null
WHARF=$(realpath "$WHARF")
# The burst's client: plain HTTP/1.1 over the socket, one keep-alive
# connection per worker (a Python client tops out near the target).
BURST=$(realpath "${BURST:-target/release/api-burst}")

W=$(mktemp -d "${TMPDIR:-/tmp}/wharf-daemonbench.XXXXXX")
DAEMON=
cleanup() {
    "$WHARF" --root "$W/root" ps -aq 2>/dev/null | xargs -r "$WHARF" --root "$W/root" rm -f >/dev/null 2>&1 || true
    [[ -n "$DAEMON" ]] && kill "$DAEMON" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

"$WHARF" --root "$W/root" build -t probe examples/probe >/dev/null 2>&1
SOCK="$W/wharf.sock"
"$WHARF" --root "$W/root" daemon --host "unix://$SOCK" 2>/dev/null &
DAEMON=$!
for _ in $(seq 100); do [[ -S "$SOCK" ]] && break; sleep 0.05; done
# Compile the module once (as runwasi's figures are for a warm shim).
"$WHARF" --root "$W/root" run --rm probe exit 0

# The Docker Engine API over the daemon's socket, for the idle containers.
cat > "$W/api.py" <<'EOF'
import http.client, json, socket

class Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

def call(conn, method, path, body=None):
    conn.request(method, "/v1.43" + path, body=json.dumps(body) if body else None,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data!r}")
    return json.loads(data) if data else None
EOF

burst() {
    local out took rate
    out=$("$BURST" "$SOCK" "$N" "$C" probe exit 0)
    took=${out#* }
    python3 -c "
n, took, peer = $N, $took, $RUNWASI_TASKS_PER_S
rate = n / took
print(f'wharf ($1): {n} tasks in {took:.2f} s = {rate:.0f} tasks/s; runwasi (published): {peer} tasks/s; ratio {rate / peer:.2f}x (target >= 10x)')"
}
echo "== burst: $N containers, $C at a time, create+start+wait+remove over the API"
burst "guests on the guest host of the daemon"
# The same daemon once its guest host is gone forks a monitor per start;
# once its monitor server is gone too, executes one, as the CLI does.
pkill -P "$DAEMON" -f guest-host
burst "monitors forked by the monitor server"
pkill -P "$DAEMON" -f monitor-server
burst "monitors executed"

echo "== idle memory: $M detached wasm containers started through the API, $M by the CLI"
# A fresh daemon (the burst killed the first one's helpers): its
# containers run on its guest host, the CLI's in monitors it executes.
kill "$DAEMON"; wait "$DAEMON" 2>/dev/null || true
rm -f "$SOCK"
"$WHARF" --root "$W/root" daemon --host "unix://$SOCK" 2>/dev/null &
DAEMON=$!
for _ in $(seq 100); do [[ -S "$SOCK" ]] && break; sleep 0.05; done
python3 - "$SOCK" "$M" "$W" >"$W/api-ids" <<'EOF'
import sys
sys.path.insert(0, sys.argv[3])
from api import Conn, call
sock, m = sys.argv[1], int(sys.argv[2])
conn = Conn(sock)
for _ in range(m):
    cid = call(conn, "POST", "/containers/create", {"Image": "probe", "Cmd": ["tick", "0", "600000"]})["Id"]
    call(conn, "POST", f"/containers/{cid}/start")
    print(cid)
EOF
for i in $(seq "$M"); do
    "$WHARF" --root "$W/root" run -d probe tick 0 600000
done >"$W/cli-ids"
sleep 2
python3 - "$W/root" "$RUNWASI_MB_PER_CONTAINER" "$W/api-ids" "$W/cli-ids" <<'EOF'
import json, os, sys
root, peer = sys.argv[1], float(sys.argv[2])
cdir = os.path.join(root, "wharf/containers")
for label, ids in [("through the API, on the guest host", sys.argv[3]), ("by the CLI, monitors executed", sys.argv[4])]:
    pids = set()
    for cid in open(ids).read().split():
        with open(os.path.join(cdir, cid, "state.json")) as f:
            st = json.load(f)
        assert st.get("status") == "running" and st.get("pid"), (cid, st)
        pids.add(st["pid"])
    m = len(open(ids).read().split())
    pss = rss = 0
    for p in pids:
        with open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                k, v = line.split(":", 1)
                if k == "Pss":
                    pss += int(v.split()[0])
                elif k == "Rss":
                    rss += int(v.split()[0])
    per_pss = pss / m / 1024
    per_rss = rss / m / 1024
    print(f"wharf ({label}): {per_pss:.2f} MB PSS per container ({per_rss:.2f} MB RSS, RSS of the processes divided by the containers); runwasi (published): {peer} MB; ratio {per_pss / peer:.3f}x (target < 2 MB)")
EOF
