#!/usr/bin/env bash
# serve_sla.sh: the SLA admission benchmark (issue 5): the same open-loop load on a local
# cluster, once with the router's TPOT admission (its default) and once without
# (--sla-enable=false), measured by afd-bench serve. Prints one JSON line per regime (afd-bench
# serve's summary plus "admission", "target_ms", "others_cores" and the decoding attnd's
# "attnd_steps", "attnd_step_mean_ms", "attnd_batch_mean"), admission on first.
#
#   bench/serve_sla.sh [--build DIR] [--preset mini|tiny | --model DIR] [--target-ms 50]
#                      [--rate 1] [--duration 60] [--warmup 10] [--prompt-len DIST]
#                      [--output-len DIST] [--seed 1] [--timeout 600] [--layout both|pd]
#                      [--out DIR] [--router-arg X]... [--attnd-arg X]... [--only on|off]
#
# Defaults: the mini preset, a 50 ms target, Poisson arrivals at 1 req/s for 60 s after 10 s of
# warmup, prompts lognorm:64:0.5 and outputs lognorm:64:0.5 tokens, one attnd of role both.
# The cluster is restarted between the regimes. DIR (default build/serve-sla) keeps each
# regime's --json-out file, the bench's text report and the cluster logs. "others_cores" is
# the CPU that processes other than this benchmark's used meanwhile, in cores: a latency
# figure taken with others_cores well above 0 measured the machine's load as much as afd.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build
preset=mini
model=""
target=50
rate=1
duration=60
warmup=10
prompt_len=lognorm:64:0.5
output_len=lognorm:64:0.5
seed=1
timeout_s=600
layout=both
out=""
only=""
router_args=()
attnd_args=()
die() { echo "serve_sla: $*" >&2; exit 2; }
while (($#)); do
    case $1 in
    --build) build=$(cd "$2" && pwd); shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --target-ms) target=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --prompt-len) prompt_len=$2; shift 2 ;;
    --output-len) output_len=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --layout) layout=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --router-arg) router_args+=(--router-arg "$2"); shift 2 ;;
    --attnd-arg) attnd_args+=(--attnd-arg "$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ $target =~ ^[0-9]+$ && $target -gt 0 ]] || die "--target-ms must be a positive integer"
[[ -z $only || $only == on || $only == off ]] || die "--only must be on or off"
command -v jq >/dev/null || die "jq is required"
[[ -x $build/bin/afd-bench ]] || die "$build/bin/afd-bench is missing: run make first"
out=${out:-$build/serve-sla}
mkdir -p "$out"
state=$out/cluster
model_args=(--preset "$preset")
[[ -n $model ]] && model_args=(--model "$model")
name=${model:-$preset}
name=$(basename "$name")
trap '"$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null 2>&1' EXIT

# CPU of the whole machine minus this benchmark's processes (the cluster's daemons, and the
# children this shell waited for), in cores, between cpu_mark and cpu_others.
cpu_total() { awk '/^cpu /{ b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
cpu_ours() {
    local p s v
    s=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat)
    if [[ -f $state/pids ]]; then
        while read -r p; do
            v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) && s=$((s + v))
        done <"$state/pids"
    fi
    echo "$s"
}
cpu_mark() { read -r m_busy m_all < <(cpu_total); m_ours=$(cpu_ours); }
cpu_others() {
    local busy all ours
    read -r busy all < <(cpu_total)
    ours=$(cpu_ours)
    awk -v b=$((busy - m_busy)) -v a=$((all - m_all)) -v o=$((ours - m_ours)) -v n="$(nproc)" \
        'BEGIN { printf "%.2f", (a > 0 ? (b - o) / a * n : 0) }'
}

# The decoding attnd's own view, from its /metrics (whole run, warmup included): steps, the
# mean step and the mean decode batch (generated tokens per step). Sets $astats (JSON).
attnd_stats() {
    local f=$state/attnd-decode.ports port m
    [[ -f $f ]] || f=$state/attnd-both.ports
    port=$(sed -n 's/.*"admin_port": *\([0-9]*\).*/\1/p' "$f" 2>/dev/null)
    m=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" 2>/dev/null) || m=""
    astats=$(awk '/^afd_attnd_step_seconds_sum /{ s = $2 } /^afd_attnd_step_seconds_count /{ n = $2 }
        /^afd_attnd_generated_tokens_total /{ g = $2 }
        END { if (n > 0) printf "{\"attnd_steps\": %d, \"attnd_step_mean_ms\": %.2f, \"attnd_batch_mean\": %.2f}", n, s / n * 1e3, g / n;
              else printf "{}" }' <<<"$m")
}

# regime on|off
regime() {
    local r=$1 flag=true url others
    [[ $r == off ]] && flag=false
    url=$("$src/deploy/local-cluster.sh" --background --port 0 --state "$state" --build "$build" \
        --layout "$layout" "${model_args[@]}" --router-arg --sla-enable=$flag \
        --router-arg --sla-target-ms="$target" "${router_args[@]}" "${attnd_args[@]}" |
        tail -n 1)
    [[ $url == http://* ]] || die "the cluster did not start (logs: $state)"
    echo "serve_sla: admission $r: $url, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    cpu_mark
    "$build/bin/afd-bench" serve --url "$url" --model "$name" --rate "$rate" \
        --duration "$duration" --warmup "$warmup" --prompt-len "$prompt_len" \
        --output-len "$output_len" --seed "$seed" --sla-ms "$target" --timeout "$timeout_s" \
        --json-out "$out/$r.json" >"$out/$r.txt" || true
    others=$(cpu_others)
    attnd_stats
    mkdir -p "$out/logs-$r"
    cp "$state"/*.log "$out/logs-$r/" 2>/dev/null || true
    "$src/deploy/local-cluster.sh" --stop --state "$state" >/dev/null
    tail -n 1 "$out/$r.txt" | jq -c --argjson on "$flag" --argjson t "$target" \
        --argjson o "$others" --argjson a "$astats" \
        '{admission: $on, target_ms: $t, others_cores: $o} + $a + .'
}

[[ $only == off ]] || regime on
[[ $only == on ]] || regime off
