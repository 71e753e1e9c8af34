#!/usr/bin/env bash
# SLA admission end to end (issue 5): a local tiny cluster (router + one attnd of role both +
# two ffnd shards) under open-loop Poisson load well above its capacity, measured by
# afd-bench serve. With admission (the router's default) the admitted requests keep the p99
# TPOT under the target T while the excess gets 429s; without it (--sla-enable=false) the same
# load, same seed, breaks T and nothing is refused.
#
# T is chosen from this machine, now: closed bursts of 8 and of 256 sequences (admission off)
# give the median inter-token latency of a moderate and of a large batch, and T is their
# geometric mean (at least 60 ms, at most 400): a moderate batch meets it, a large one breaks
# it. The arrival rate is 1.5 x the most the cluster served in the large burst (tokens/s).
#
# Margin: the run with admission sets sla_margin = 0.4 (admit while the predicted step is
# <= 0.6 T; default 0.1). On this 2-core machine a step's p99 is about twice its median at a
# fixed batch (scheduling of five processes of this test: three daemons, the router, the
# client), and the router's default headroom (10% plus its recent p90 error) covers the median
# and the p90, not that tail: with the default the p99 lands at ~1.2-1.9 T (docs/sla.md,
# Measured). Slack: p99 <= 1.2 T passes; a stall delays one step of every admitted sequence,
# so a few stalls move the p99. Up to three attempts (fresh cluster each): one within 1.2 T
# shows that admission holds the target; a broken admission (e.g. admitting everything)
# fails all three by a wide margin. CPU used by other processes during an attempt is measured
# (/proc/stat minus this test's processes); if every failing attempt ran with more than 0.3
# of a core taken by others, the machine was too busy to judge a latency target and the test
# skips (77) saying so. AFD_SLA_TEST_MARGIN overrides the margin.
# $1: the absolute build directory. ~1-1.5 minutes (2.5 at most).
set -uo pipefail
build=${1:?usage: test_sla_admission.sh BUILD_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
bench=$build/bin/afd-bench
cluster=$src/deploy/local-cluster.sh
for b in afd-bench afd-router attnd ffnd afd-mkmodel; do
    [[ -x $build/bin/$b ]] || { echo "FAIL: $build/bin/$b is not built"; exit 1; }
done
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 77; }
model=$build/models/tiny
[[ -f $model/config.json ]] || "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null

tmp=$(mktemp -d /tmp/afd-sla-XXXXXX)
state=$tmp/cluster
cleanup() {
    "$cluster" --stop --state "$state" >/dev/null 2>&1
    [[ -n ${KEEP:-} ]] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n

out_len=32   # tokens per request (ignore_eos): short lives keep the run quick
prompt_len=8 # small prompts: the prefill steps stay small next to the decode steps
seed=5
qwait=2s     # longest queue wait (router default 5 s): the excess is refused sooner
margin=${AFD_SLA_TEST_MARGIN:-0.4}

# up NAME ARGS...: starts the cluster with extra router arguments; sets $url.
up() {
    local name=$1 a args=()
    shift
    for a in "$@"; do args+=(--router-arg "$a"); done
    url=$(timeout -k 2 60 "$cluster" --background --port 0 --state "$state" --build "$build" \
        --layout both --attnd-arg --max-seqs=256 "${args[@]}" 2>"$tmp/$name.cluster.err" | tail -n 1)
    [[ $url == http://* ]] || { tail -n 5 "$tmp/$name.cluster.err" "$state"/*.log; fail "$name: cluster did not start"; }
}
down() { "$cluster" --stop --state "$state" >/dev/null 2>&1; }

# serve NAME ARGS...: afd-bench serve against $url (bounded); $j is its JSON line.
serve() {
    local name=$1
    shift
    timeout -k 2 120 "$bench" serve --url "$url" --model tiny --prompt-len "$prompt_len" \
        --output-len "$out_len" --seed "$seed" --timeout 60 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    j=$(tail -n 1 "$tmp/$name.out")
    jq -e .completed >/dev/null 2>&1 <<<"$j" || {
        tail -n 20 "$tmp/$name.out" "$tmp/$name.err"
        fail "$name: afd-bench serve gave no JSON line"
    }
}
get() { jq -r ".$1" <<<"$j"; }
# awk_true EXPR VARS...: exit status of an awk comparison on numbers
awk_true() { awk "BEGIN { exit !($1) }"; }

# CPU accounting: jiffies of the whole machine, and of this test (its shell, the children it
# waited for, the cluster's daemons).
cpu_total() { awk '/^cpu /{ b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }
cpu_ours() {
    local p s=0 v
    v=$(awk '{ print $14 + $15 + $16 + $17 }' /proc/$$/stat)
    s=$((s + v))
    if [[ -f $state/pids ]]; then
        while read -r p; do
            v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) && s=$((s + v))
        done <"$state/pids"
    fi
    echo $s
}
ncpu=$(nproc)
cpu_mark() { read -r m_busy m_all < <(cpu_total); m_ours=$(cpu_ours); }
# others' CPU since cpu_mark, in cores (can be slightly negative: rounding of the ticks)
cpu_others() {
    local busy all ours
    read -r busy all < <(cpu_total)
    ours=$(cpu_ours)
    awk -v b=$((busy - m_busy)) -v a=$((all - m_all)) -v o=$((ours - m_ours)) -v n="$ncpu" \
        'BEGIN { printf "%.2f", (a > 0 ? (b - o) / a * n : 0) }'
}

# ---- 1. calibration (admission off): median TPOT of a moderate and of a large batch ---------
up calib --sla-enable=false
serve warm --rate inf --requests 8 # first steps of a fresh process are slow
serve b8 --rate inf --requests 8 --output-len 48
t8=$(get tpot_p50_ms)
serve b256 --rate inf --requests 256
t256=$(get tpot_p50_ms)
cap=$(get tokens_per_s)
down
T=$(awk -v a="$t8" -v b="$t256" 'BEGIN { t = sqrt(a * b); t = t < 60 ? 60 : t > 400 ? 400 : t; printf "%d", t }')
rate=$(awk -v c="$cap" -v n="$out_len" 'BEGIN { printf "%.1f", 1.5 * c / n }')
echo "calibration: TPOT p50 batch 8 = $t8 ms, batch 256 = $t256 ms ($cap tokens/s); T = $T ms, rate = $rate req/s"
awk_true "$t256 > 1.5 * $T" ||
    fail "a batch of 256 (TPOT p50 $t256 ms) does not break T = $T ms: no overload to show"

load=(--rate "$rate" --duration 6 --warmup 2 --sla-ms "$T")

# ---- 2. without admission: the same load breaks T, nothing refused --------------------------
up off --sla-enable=false --sla-target-ms="$T"
serve off "${load[@]}"
down
off_p99=$(get tpot_p99_ms) off_rej=$(get rejected) off_done=$(get completed)
echo "admission off: $(jq -c '{tpot_p50_ms, tpot_p99_ms, ttft_p99_ms, goodput, completed, rejected, errors}' <<<"$j")"
[[ $off_rej == 0 ]] || fail "admission off: $off_rej requests rejected, want 0"
[[ $(get errors) == 0 ]] || fail "admission off: $(get errors) errors (timeouts $(get timeouts))"
((off_done > 0)) || fail "admission off: nothing completed"
awk_true "$off_p99 > $T" || fail "admission off: TPOT p99 $off_p99 ms does not break T = $T ms"

# ---- 3. with admission (default): p99 within 1.2 T, the excess refused ----------------------
verdict=fail busy_all=true
for attempt in 1 2 3; do
    up "on$attempt" --sla-target-ms="$T" --sla-queue-wait-ms="$qwait" --sla-margin="$margin"
    cpu_mark
    serve "on$attempt" "${load[@]}"
    others=$(cpu_others)
    down
    p99=$(get tpot_p99_ms) rej=$(get rejected) done_=$(get completed)
    echo "admission on (attempt $attempt, others used $others cores): $(jq -c '{tpot_p50_ms, tpot_p99_ms, ttft_p99_ms, goodput, completed, rejected, rejected_429, errors}' <<<"$j")"
    ((done_ > 0)) || fail "admission on: nothing completed"
    ((rej > 0)) || fail "admission on: nothing rejected at $rate req/s (1.5 x the capacity)"
    [[ $(get rejected_429) == "$rej" ]] || fail "admission on: rejections other than 429: $(get rejected_503) x 503"
    [[ $(get errors) == 0 ]] || fail "admission on: $(get errors) errors (timeouts $(get timeouts))"
    if awk_true "$p99 <= 1.2 * $T && $p99 < $off_p99"; then
        verdict=pass
        break
    fi
    awk_true "$others > 0.3" || busy_all=false
done

if [[ $verdict == pass ]]; then
    echo "ok: T = $T ms; admission on: TPOT p99 $p99 ms <= 1.2 T, $rej of $(get sent) refused (429); off: p99 $off_p99 ms, none refused"
    exit 0
fi
if $busy_all; then
    echo "SKIP: TPOT p99 with admission stayed above 1.2 T = $T ms in 3 attempts, each with other processes taking > 0.3 core: too busy to judge a latency target"
    exit 77
fi
fail "admission on: TPOT p99 $p99 ms (off: $off_p99 ms) over 1.2 T = $T ms in 3 attempts, at least one on a quiet machine"
