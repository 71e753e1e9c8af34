#!/usr/bin/env bash
# The router's SIGTERM drain: it stops accepting connections at once, a stream already running
# finishes with [DONE], and the router exits 0; with a drain deadline shorter than the stream,
# the stream is cut (no [DONE]: never a clean end after wrong text), the sequence is cancelled
# on the attnd, and the router exits 1.
set -uo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
state=$(mktemp -d /tmp/afd-drain-XXXXXX)
cleanup() { "$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null 2>&1; rm -rf "$state"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -3 "$state"/router.log; exit 1; }
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n
field() { sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$state/$1.ports"; }
long='{"model":"tiny","prompt":"drain","max_tokens":150,"temperature":0,"ignore_eos":true,"stream":true}'

run() { # drain_timeout_ms -> sets url, rpid
    url=$(timeout 120 "$src/deploy/local-cluster.sh" --build "$build" --port 0 --state "$state" \
          --layout both --router-arg --drain-timeout-ms="$1" --background | tail -1)
    [[ $url == http://* ]] || fail "no cluster"
    rpid=$(field router pid)
}

run 60000
curl -sN --max-time 60 "$url/v1/completions" -H 'Content-Type: application/json' -d "$long" > "$state/s1" &
c=$!
for _ in $(seq 100); do (( $(grep -c '^data: {' "$state/s1") >= 3 )) && break; sleep 0.05; done
kill -TERM "$rpid"
sleep 0.3
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/health")
[[ $code == 000 ]] || fail "a new connection was accepted while draining ($code)"
wait $c
grep -q '^data: \[DONE\]' "$state/s1" || fail "the running stream did not finish"
for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$rpid" 2>/dev/null || fail "the router did not exit after its stream finished"
grep -q 'drained cleanly' "$state/router.log" || fail "the router did not say it drained cleanly"
"$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null

run 300
curl -sN --max-time 60 "$url/v1/completions" -H 'Content-Type: application/json' \
    -d "${long/150/5000}" > "$state/s2" &
c=$!
for _ in $(seq 100); do (( $(grep -c '^data: {' "$state/s2") >= 3 )) && break; sleep 0.05; done
kill -TERM "$rpid"
wait $c
grep -q '\[DONE\]' "$state/s2" && fail "a cut stream ended with [DONE]"
for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$rpid" 2>/dev/null || fail "the router did not exit at its drain deadline"
grep -q 'open requests cut' "$state/router.log" || fail "the router did not report the cut"
admin=$(field attnd-both admin_port)
for _ in $(seq 50); do
    r=$(curl -s "127.0.0.1:$admin/metrics" | awk '/^afd_attnd_running /{print $2}')
    [[ $r == 0 ]] && break
    sleep 0.1
done
[[ $r == 0 ]] || fail "the cut sequence still runs on the attnd (running $r)"
echo "ok: router drain (stream finished, exit 0) and drain deadline (stream cut, cancelled)"
