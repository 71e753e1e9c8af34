#!/usr/bin/env bash
# Live scaling with afdctl on the local cluster: list the pool; add a decode attnd; drain the
# original one (it finishes, exits 0, traffic moves); move the attnds to a new FFN group (a new
# pair of ffnd shards) at a step boundary while a long request streams, then stop the old
# shards; remove an instance. Greedy answers stay exactly the reference throughout.
set -uo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
state=$(mktemp -d /tmp/afd-ctl-XXXXXX)
extra=()
cleanup() {
    for p in "${extra[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null; done
    "$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null 2>&1
    rm -rf "$state"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -3 "$state"/*.log; exit 1; }
ctl() { "$build/bin/afdctl" --router "$url" "$@"; }
field() { sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$state/$1.ports"; }
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n
body='{"model":"tiny","messages":[{"role":"user","content":"Scale me"}],"max_tokens":12,"temperature":0}'
chat() { curl -s --max-time 60 "$url/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" | jq -r '.choices[0].message.content // ("ERR " + (.error.message // "?"))'; }
until_list() { # jq filter over the list, seconds
    for _ in $(seq $(($2 * 10))); do
        ctl --json list | jq -e "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    ctl list; fail "pool never satisfied: $1"
}

url=$(timeout 120 "$src/deploy/local-cluster.sh" --build "$build" --port 0 --state "$state" --background | tail -1)
[[ $url == http://* ]] || fail "no cluster"
ref=$(chat)
[[ $ref != ERR* && -n $ref ]] || fail "reference answer: $ref"
ctl list | grep -q prefill || fail "list: no prefill instance"
until_list 'length == 2 and all(.state == "ready")' 10

# add: a second decode attnd on the same FFN group, dialed by the router on request
ffn="127.0.0.1:$(field ffnd-ep0 data_port),127.0.0.1:$(field ffnd-ep1 data_port)"
"$build/bin/attnd" --model "$build/models/tiny" --role decode --instance-id 31 --ffn "$ffn" \
    --ffn-ep-size 2 --listen-port 0 --admin-port 0 --threads 1 --kv-mem 128mb \
    --port-file "$state/d31.ports" --log-level warn > "$state/d31.log" 2>&1 &
d31=$!; extra+=($d31)
for _ in $(seq 100); do [[ -s $state/d31.ports ]] && break; sleep 0.1; done
ctl add "127.0.0.1:$(field d31 data_port)" || fail "afdctl add"
until_list 'map(select(.instance_id == 31 and .state == "ready")) | length == 1' 10

# drain the original decode instance (id 12): it exits 0; traffic goes to 31
d12=$(field attnd-decode pid)
ctl drain 12 || fail "afdctl drain"
for _ in $(seq 100); do kill -0 "$d12" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$d12" 2>/dev/null || fail "the drained attnd did not exit"
grep -q 'attnd drained cleanly' "$state/attnd-decode.log" || fail "the drained attnd did not drain cleanly"
until_list 'map(select(.instance_id == 12)) | length == 0' 10
a=$(chat); [[ $a == "$ref" ]] || fail "after the drain: '$a' != '$ref'"

# ffn-move: a new pair of shards; a long stream runs across the move
for ep in 0 1; do
    "$build/bin/ffnd" --model "$build/models/tiny" --ep-rank $ep --ep-size 2 --instance-id $((200 + ep)) \
        --listen-port 0 --admin-port 0 --threads 1 --port-file "$state/n$ep.ports" \
        --log-level warn > "$state/n$ep.log" 2>&1 &
    extra+=($!)
done
for _ in $(seq 100); do [[ -s $state/n0.ports && -s $state/n1.ports ]] && break; sleep 0.1; done
long='{"model":"tiny","messages":[{"role":"user","content":"Scale me"}],"max_tokens":200,"temperature":0,"ignore_eos":true,"stream":true}'
curl -sN --max-time 120 "$url/v1/chat/completions" -H 'Content-Type: application/json' -d "$long" > "$state/long.sse" &
cpid=$!
sleep 0.5
newffn="127.0.0.1:$(field n0 data_port),127.0.0.1:$(field n1 data_port)"
admins="127.0.0.1:$(field attnd-prefill admin_port),127.0.0.1:$(field d31 admin_port)"
ctl ffn-move --attnd "$admins" --ffn "$newffn" --ep-size 2 || fail "afdctl ffn-move"
wait $cpid
grep -q '\[DONE\]' "$state/long.sse" || fail "the stream across the move did not complete"
grep -q '"error"' "$state/long.sse" && fail "the stream across the move carried an error"
n=$(grep -c '"content":"' "$state/long.sse")
((n >= 150)) || fail "the stream across the move has $n content chunks"
# the old shards go; answers stay the same
for ep in 0 1; do kill -TERM "$(field ffnd-ep$ep pid)"; done
sleep 1
a=$(chat); [[ $a == "$ref" ]] || fail "after ffn-move: '$a' != '$ref'"
# the same text through the moved group as through the old one, over a long greedy output
a2=$(curl -s --max-time 60 "$url/v1/chat/completions" -H 'Content-Type: application/json' -d "${long/\"stream\":true/\"stream\":false}" | jq -r '.choices[0].message.content')
b2=$(sed -n 's/^data: //p' "$state/long.sse" | grep -v DONE | jq -rj '.choices[0].delta.content // ""')
[[ $a2 == "$b2" ]] || fail "the stream across the move differs from a run after it"

# remove: forget an instance
ctl remove 31 || fail "afdctl remove"
until_list 'map(select(.instance_id == 31)) | length == 0' 10
ctl drain 999 2>/dev/null && fail "drain of an unknown instance succeeded"
echo "ok: afdctl list, add, drain (exit 0), ffn-move under a stream, remove"
