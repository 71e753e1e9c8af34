#!/usr/bin/env bash
# local-cluster.sh: a whole afd cluster on 127.0.0.1: two ffnd shards (one FFN group, EP 2),
# a prefill attnd, a decode attnd and the router.
#
#   deploy/local-cluster.sh [--model DIR | --preset tiny|mini] [--port N] [--build DIR]
#                           [--state DIR] [--layout pd|both] [--background] [--ready-timeout S]
#                           [--router-arg ARG]... [--attnd-arg ARG]... [--once]
#   deploy/local-cluster.sh --stop [--state DIR]
#
# Foreground (default): prints the URL and a curl example, serves until Ctrl-C, then stops
# everything (SIGTERM: each daemon drains) and exits. --background: starts the cluster, waits
# for /ready, writes pids to STATE/pids, and prints the router's base URL on its last line;
# --stop ends it. --layout both: one attnd of role both instead of prefill + decode.
# In the foreground a sample chat request is sent once the cluster is ready and its answer
# printed; --once stops the cluster right after it (what `make test` checks of `make run`).
# Logs: STATE/*.log (JSON lines). Servers bind 127.0.0.1 only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=$src/build
model=""
preset=tiny
port=8000
state=${AFD_STATE:-/tmp/afd-local-$(id -u)}
layout=pd
background=false
stop=false
once=false
ready_timeout=120
router_args=()
attnd_args=()

die() { echo "local-cluster: $*" >&2; exit 1; }

while (($#)); do
    case $1 in
    --model) model=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --state) state=$2; shift 2 ;;
    --layout) layout=$2; shift 2 ;;
    --background) background=true; shift ;;
    --stop) stop=true; shift ;;
    --once) once=true; shift ;;
    --ready-timeout) ready_timeout=$2; shift 2 ;;
    --router-arg) router_args+=("$2"); shift 2 ;;
    --attnd-arg) attnd_args+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done

stop_all() {
    local pids=() p
    [[ -f $state/pids ]] || return 0
    mapfile -t pids < "$state/pids"
    # router first (it stops taking requests), then attnds, then ffnds: the file's order
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -f "$state/pids"
}

if $stop; then
    stop_all
    echo "local-cluster: stopped"
    exit 0
fi

[[ $layout == pd || $layout == both ]] || die "--layout must be pd or both"
[[ $port =~ ^[0-9]+$ ]] || die "--port must be a number"
for b in ffnd attnd afd-router afd-mkmodel; do
    [[ -x $build/bin/$b ]] || die "$build/bin/$b is missing: run make first"
done
if [[ -z $model ]]; then
    model=$build/models/$preset
    if [[ ! -f $model/config.json ]]; then
        echo "local-cluster: generating the $preset model into $model"
        "$build/bin/afd-mkmodel" --preset "$preset" --out "$model" --force >/dev/null
    fi
fi
[[ -f $model/config.json ]] || die "$model has no config.json"
[[ -f $model/tokenizer.json ]] || die "$model has no tokenizer.json (the router needs it)"
model=$(cd "$model" && pwd)

mkdir -p "$state"
if [[ -f $state/pids ]]; then
    stop_all # a previous cluster of this state dir
fi
rm -f "$state"/*.ports
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo} UCX_WARN_UNUSED_ENV_VARS=n

started=()
cleanup() {
    if ((${#started[@]})); then
        printf '%s\n' "${started[@]}" | tac > "$state/pids"
        stop_all
    fi
}
trap 'cleanup; exit 1' ERR

wait_ports() { # name pid
    for _ in $(seq $((ready_timeout * 10))); do
        [[ -s $state/$1.ports ]] && return 0
        kill -0 "$2" 2>/dev/null || { tail -5 "$state/$1.log" >&2; die "$1 exited at start-up (log: $state/$1.log)"; }
        sleep 0.1
    done
    die "$1 did not start within ${ready_timeout}s (log: $state/$1.log)"
}
port_of() { sed -n 's/.*"data_port": *\([0-9]*\).*/\1/p' "$state/$1.ports"; }

common=(--model "$model" --listen-addr 127.0.0.1 --listen-port 0 --admin-addr 127.0.0.1
        --admin-port 0 --threads 1)
ffn=()
for ep in 0 1; do
    name=ffnd-ep$ep
    "$build/bin/ffnd" "${common[@]}" --ep-rank $ep --ep-size 2 --instance-id $((100 + ep)) \
        --port-file "$state/$name.ports" > "$state/$name.log" 2>&1 &
    started+=($!)
    wait_ports $name $!
    ffn+=("127.0.0.1:$(port_of $name)")
done
ffn_list=$(IFS=,; echo "${ffn[*]}")

if [[ $layout == pd ]]; then roles=(prefill decode); else roles=(both); fi
attnds=()
id=10
for role in "${roles[@]}"; do
    name=attnd-$role
    id=$((id + 1))
    "$build/bin/attnd" "${common[@]}" --role $role --instance-id $id --ffn "$ffn_list" \
        --ffn-ep-size 2 --kv-mem 256mb --port-file "$state/$name.ports" \
        "${attnd_args[@]}" > "$state/$name.log" 2>&1 &
    started+=($!)
    wait_ports $name $!
    attnds+=("127.0.0.1:$(port_of $name)")
done
attnd_list=$(IFS=,; echo "${attnds[*]}")

"$build/bin/afd-router" --model "$model" --listen-addr 127.0.0.1 --port "$port" \
    --attnd "$attnd_list" --port-file "$state/router.ports" "${router_args[@]}" \
    > "$state/router.log" 2>&1 &
started+=($!)
wait_ports router $!
rport=$(port_of router)
printf '%s\n' "${started[@]}" | tac > "$state/pids"
trap - ERR

url=http://127.0.0.1:$rport
for _ in $(seq $((ready_timeout * 10))); do
    curl -sf "$url/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "$url/ready" >/dev/null 2>&1 || { cleanup; die "the router did not become ready (logs: $state)"; }
name=$(basename "$model")

if $background; then
    echo "local-cluster: ready (pids in $state/pids, logs in $state); stop with $0 --stop"
    echo "$url"
    exit 0
fi

trap 'echo; echo "local-cluster: stopping"; cleanup; exit 0' INT TERM
body='{"model":"'"$name"'","messages":[{"role":"user","content":"Hello! Who are you?"}],"max_tokens":16,"temperature":0}'
echo "local-cluster: POST $url/v1/chat/completions $body"
if ! answer=$(curl -sS --max-time 120 "$url/v1/chat/completions" -H 'Content-Type: application/json' -d "$body"); then
    cleanup
    die "the sample request failed"
fi
echo "local-cluster: answer: $answer"
if ! grep -q '"finish_reason"' <<<"$answer"; then
    cleanup
    die "the sample request got no completion"
fi
if $once; then
    cleanup
    echo "local-cluster: stopped (--once)"
    exit 0
fi
cat <<EOF
local-cluster: serving $name at $url  (logs: $state)
  curl -s $url/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model":"$name","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'
Ctrl-C stops the cluster.
EOF
while kill -0 "${started[-1]}" 2>/dev/null; do sleep 1; done
echo "local-cluster: the router exited; stopping"
cleanup
