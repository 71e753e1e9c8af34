#!/usr/bin/env bash
# The daemons' side of Type=notify: under a fake NOTIFY_SOCKET (a datagram listener written in
# Python) ffnd, attnd and afd-router each send READY=1 only once they serve (ffnd listening,
# attnd with its FFN group, the router with its attnd pool), WATCHDOG=1 repeatedly at about
# half of WATCHDOG_USEC (petted from the loop), STATUS lines, and STOPPING=1 on SIGTERM.
set -uo pipefail
build=$1
py=/usr/bin/python3
[[ -x $py ]] || { echo "skip: /usr/bin/python3 missing"; exit 77; }
model=$build/models/tiny
[[ -f $model/config.json ]] || "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null
dir=$(mktemp -d /tmp/afd-notify-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    for f in "$dir"/*.msgs; do echo "== $f"; tail -8 "$f"; done
    echo "FAIL: $*"
    exit 1
}
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n

# listener NAME: records "<monotonic ms> <message>" lines into $dir/NAME.msgs
listen() {
    "$py" - "$dir/$1.sock" "$dir/$1.msgs" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as f:
    while True:
        d = s.recv(4096).decode("utf-8", "replace")
        for line in d.split("\n"):
            if line:
                f.write("%d %s\n" % (time.monotonic() * 1000, line))
PY
    pids+=($!)
    for _ in $(seq 50); do [[ -S $dir/$1.sock ]] && return; sleep 0.1; done
    fail "listener $1 did not start"
}

# start NAME CMD...: the daemon with NOTIFY_SOCKET and a 1 s watchdog
start() {
    local name=$1; shift
    listen "$name"
    (export NOTIFY_SOCKET=$dir/$name.sock WATCHDOG_USEC=1000000 WATCHDOG_PID=$BASHPID
     exec "$@" > "$dir/$name.log" 2>&1) &
    pids+=($!)
    eval "pid_$name=$!"
}
has() { grep -q " $2" "$dir/$1.msgs" 2>/dev/null; }
wait_msg() { # name message seconds
    for _ in $(seq $(($3 * 10))); do has "$1" "$2" && return 0; sleep 0.1; done
    fail "$1: no '$2' within $3 s"
}
port() { sed -n 's/.*"data_port": *\([0-9]*\).*/\1/p' "$dir/$1.ports"; }

common=(--model "$model" --listen-port 0 --admin-port 0 --threads 1 --log-level warn)
start ffnd "$build/bin/ffnd" "${common[@]}" --port-file "$dir/ffnd.ports"
wait_msg ffnd READY=1 30
[[ -s $dir/ffnd.ports ]] || fail "ffnd said READY=1 before listening (no port file)"
start attnd "$build/bin/attnd" "${common[@]}" --ffn "127.0.0.1:$(port ffnd)" --kv-mem 32mb \
    --port-file "$dir/attnd.ports"
wait_msg attnd READY=1 30
# the router is READY only with its pool: first without any attnd reachable
start router "$build/bin/afd-router" --model "$model" --port 0 --attnd 127.0.0.1:1 \
    --port-file "$dir/router.ports" --log-level warn --reconnect-ms 100
wait_msg router STATUS= 10
sleep 1
! has router READY=1 || fail "router READY=1 without any attnd"
kill -TERM $pid_router; wait $pid_router 2>/dev/null
rm -f "$dir/router.sock"
start router2 "$build/bin/afd-router" --model "$model" --port 0 \
    --attnd "127.0.0.1:$(port attnd)" --port-file "$dir/router2.ports" --log-level warn
wait_msg router2 READY=1 30
# watchdog: pets keep coming, never further apart than the 1 s watchdog allows (with margin
# for this shared 2-core machine: 900 ms), never closer than the rate limit (a quarter: 250 ms,
# 10 ms slack)
sleep 3
for n in ffnd attnd router2; do
    gaps=$(awk '/ WATCHDOG=1/ { if (t) print $1 - t; t = $1 }' "$dir/$n.msgs")
    c=$(wc -l <<<"$gaps")
    ((c >= 4)) || fail "$n: only $c watchdog gaps"
    max=$(sort -n <<<"$gaps" | tail -1); min=$(sort -n <<<"$gaps" | head -1)
    ((max <= 900)) || fail "$n: a $max ms gap between watchdog pets"
    ((min >= 240)) || fail "$n: pets $min ms apart (rate limit)"
    has $n STATUS= || fail "$n: no STATUS line"
done
# STOPPING=1 on SIGTERM, and a clean exit
for n in router2 attnd ffnd; do
    eval "p=\$pid_$n"
    kill -TERM "$p"
    wait_msg $n STOPPING=1 10
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$p" 2>/dev/null || fail "$n did not exit after SIGTERM"
    wait "$p"; rc=$?
    ((rc == 0)) || fail "$n exit status $rc"
done
echo "ok: READY after serving, watchdog from the loop, STATUS, STOPPING (ffnd, attnd, router)"
