#!/usr/bin/env bash
# Pool membership: an attnd with `routers` joins a running router by itself (live
# registration), is dropped when it dies (the router's /ready turns 503 and requests get 503,
# not a hang), joins again when restarted, and rejoins a restarted router.
set -uo pipefail
build=$1
model=$build/models/tiny
[[ -f $model/config.json ]] || "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null
dir=$(mktemp -d /tmp/afd-reg-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -5 "$dir"/*.log; exit 1; }
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n
field() { sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$dir/$1.ports"; }
wait_file() { for _ in $(seq 300); do [[ -s $dir/$1 ]] && return 0; sleep 0.1; done; fail "no $1"; }
ready_is() { # code seconds
    for _ in $(seq $(($2 * 10))); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/ready") == "$1" ]] && return 0
        sleep 0.1
    done
    fail "/ready did not turn $1 within $2 s: $(curl -s "$url/ready")"
}
chat() {
    curl -s -o "$dir/out.json" -w '%{http_code}' --max-time 30 "$url/v1/chat/completions" \
        -H 'Content-Type: application/json' \
        -d '{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}'
}
start_router() {
    "$build/bin/afd-router" --model "$model" --port "${1:-0}" --ctrl-port "${2:-0}" \
        --port-file "$dir/router.ports" --log-level info > "$dir/router.log" 2>&1 &
    rpid=$!; pids+=($rpid)
    wait_file router.ports
}
start_attnd() {
    rm -f "$dir/attnd.ports"
    "$build/bin/attnd" --model "$model" --ffn "127.0.0.1:$(field ffnd data_port)" \
        --listen-port 0 --admin-port 0 --port-file "$dir/attnd.ports" --threads 1 \
        --kv-mem 32mb --routers "127.0.0.1:$ctrl" --heartbeat-ms 100 --peer-timeout-ms 600 \
        --log-level warn > "$dir/attnd.log" 2>&1 &
    apid=$!; pids+=($apid)
    wait_file attnd.ports
}

start_router
ctrl=$(field router admin_port); http=$(field router data_port)
url=http://127.0.0.1:$http
((ctrl > 0)) || fail "no control port in the port file"
ready_is 503 5
code=$(chat); [[ $code == 503 ]] || fail "a request without instances: $code, want 503"
"$build/bin/ffnd" --model "$model" --listen-port 0 --admin-port 0 --port-file "$dir/ffnd.ports" \
    --threads 1 --log-level warn > "$dir/ffnd.log" 2>&1 &
pids+=($!)
wait_file ffnd.ports
start_attnd
ready_is 200 10
code=$(chat); [[ $code == 200 ]] || fail "chat after registration: $code $(cat "$dir/out.json")"
first=$(jq -r '.choices[0].message.content' "$dir/out.json")
# the attnd dies: dropped from the pool
kill -KILL $apid; wait $apid 2>/dev/null
ready_is 503 10
code=$(chat); [[ $code == 503 ]] || fail "chat with the attnd dead: $code"
# back
start_attnd
ready_is 200 10
code=$(chat); [[ $code == 200 ]] || fail "chat after the attnd came back: $code"
[[ $(jq -r '.choices[0].message.content' "$dir/out.json") == "$first" ]] || fail "greedy text changed"
# the router restarts on the same ports: the attnd rejoins
kill -TERM $rpid; wait $rpid 2>/dev/null
rm -f "$dir/router.ports"
start_router "$http" "$ctrl"
ready_is 200 15
code=$(chat); [[ $code == 200 ]] || fail "chat after the router restarted: $code"
echo "ok: live registration, drop on death, rejoin (attnd and router restarts)"
