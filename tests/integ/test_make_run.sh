#!/usr/bin/env bash
# `make run`'s path: deploy/local-cluster.sh brings up two ffnd shards, a prefill and a decode
# attnd and the router, answers the sample chat request, and (--once) stops everything.
# Also --background / --stop: the URL on the last line, the pids gone after --stop.
set -uo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
state=$(mktemp -d /tmp/afd-run-test-XXXXXX)
trap '"$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null 2>&1; rm -rf "$state"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

out=$(timeout 180 "$src/deploy/local-cluster.sh" --build "$build" --port 0 --state "$state" --once 2>&1)
rc=$?
((rc == 0)) || { echo "$out" | tail -20; fail "local-cluster --once exited $rc"; }
grep -q '"finish_reason":"length"' <<<"$out" || { echo "$out"; fail "no completion in the sample answer"; }
grep -q '"completion_tokens":16' <<<"$out" || fail "the sample answer is not 16 tokens"
[[ ! -f $state/pids ]] || fail "pids file left after --once"

url=$(timeout 180 "$src/deploy/local-cluster.sh" --build "$build" --port 0 --state "$state" --background | tail -1)
[[ $url =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || fail "last line is not the base URL: $url"
mapfile -t pids < "$state/pids"
((${#pids[@]} == 5)) || fail "${#pids[@]} processes, want 5"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/ready")
[[ $code == 200 ]] || fail "/ready $code"
"$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null
for p in "${pids[@]}"; do
    ! kill -0 "$p" 2>/dev/null || fail "pid $p still alive after --stop"
done
# every daemon drained and exited cleanly: no error lines
if grep -h '"level":"error"' "$state"/*.log | grep -v "ucx:" | head -3 | grep .; then
    fail "error lines in the logs"
fi
echo "ok: make run path (sample answered, --once, --background, --stop)"
