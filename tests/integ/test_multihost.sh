#!/usr/bin/env bash
# Multi-host (issue #6 item 4): the cluster spread over network namespaces, one per "host",
# joined by veth pairs on a bridge (10.77.0.0/24), UCX over TCP between them (err_mode peer),
# every daemon on its own address. Under open-loop load from afd-bench serve, with a checker
# comparing greedy answers to references taken before any disruption:
#   1 baseline   2 kill -9 d0, start it again (it registers again)
#   3 add d1 live (it registers with the router by itself)
#   4 drain d0 with SIGTERM while d1 serves (exit 0), then start it again
#   5 kill -9 p0, start it again   6 kill -9 the FFN shard f1, start it again (the attnds
#     reconnect to their FFN group by themselves)
# Passes when no answer is wrong and none hangs (every failure is a clean HTTP error),
# afd-bench counts every request (completed + rejected + errors == sent) with errors only of
# the clean kinds, the router still answers right at the end, and every daemon stopped with
# SIGTERM exits 0. Skips (77) where namespaces cannot be made. MH_KEEP=1 keeps the logs;
# MH_RATE=R sets afd-bench's rate (3 requests/s; 1 for sanitizer builds).
set -uo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integ/multihost/net.sh
source "$here/multihost/net.sh"
skip() { echo "multihost: skipped: $*"; exit 77; }
for t in curl jq; do command -v $t >/dev/null || skip "no $t"; done
why=$(mh_net_check) || skip "$why"

model=$build/models/tiny
[[ -f $model/config.json ]] || "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null
dir=$(mktemp -d /tmp/afd-mh-XXXXXX)
url=
declare -A pid=() gen=() ids=([f0]=21 [f1]=22 [p0]=11 [d0]=12 [d1]=13)
bench_pid='' check_pid='' nap_pid=''
drain_pids=()

cleanup() {
    local p
    [[ -n $nap_pid ]] && kill "$nap_pid" 2>/dev/null
    [[ -n $check_pid ]] && kill -KILL "$check_pid" 2>/dev/null
    [[ -n $bench_pid ]] && kill -KILL "$bench_pid" 2>/dev/null
    # only pids still ours: stop_wait forgets a daemon once it is reaped
    for p in "${pid[@]}" "${drain_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${pid[@]}" "${drain_pids[@]}" $check_pid $bench_pid $nap_pid; do wait "$p" 2>/dev/null; done
    mh_net_down
    if [[ ${MH_KEEP:-0} == 1 ]]; then echo "multihost: logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    local f
    echo "FAIL: $*"
    for f in "$dir"/*.log; do
        [[ -f $f ]] || continue
        echo "--- $(basename "$f")"
        grep -v '"level":"info"' "$f" | tail -4 | cut -c1-400
    done
    [[ -f $dir/check.log ]] && { echo "--- checker"; grep -v ' ok ' "$dir/check.log" | tail -5; }
    exit 1
}

A() { mh_addr "$1"; }
now_ms() { date +%s%3N; }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }

# --- the hosts --------------------------------------------------------------------------------
mh_net_reap_stale
MH_ENV=(UCX_TCP_PORT_RANGE=7610-7629) # UCX's own TCP listeners (one per process) take these
mh_net_up "afd-$$" 10.77.0 c=5 r=10 p0=11 d0=12 d1=13 f0=21 f1=22 || fail "cannot set up the network"

# --- daemons ----------------------------------------------------------------------------------
# host -> a log per start (host-N.log), its pid in pid[host]
spawn() { # host cmd...
    local h=$1
    shift
    gen[$h]=$((${gen[$h]:-0} + 1))
    rm -f "$dir/$h.ports"
    mh_spawn "$h" "$dir/$h-${gen[$h]}.log" "$@" --port-file "$dir/$h.ports" --log-level info
    pid[$h]=$MH_PID
}
# err_mode peer: a killed peer is seen by its TCP connection at once; heartbeats keep their
# defaults (500 ms, 3 s), so a loop slowed by the shared cores is not taken for a dead one
peer_opts=(--err-mode peer)
start_ffnd() { # host rank
    spawn "$1" "$build/bin/ffnd" --model "$model" --listen-addr "$(A "$1")" --listen-port 7600 \
        --admin-addr "$(A "$1")" --admin-port 7700 --ep-rank "$2" --ep-size 2 \
        --instance-id "${ids[$1]}" --threads 1 "${peer_opts[@]}"
}
start_attnd() { # host role
    spawn "$1" "$build/bin/attnd" --model "$model" --role "$2" --listen-addr "$(A "$1")" \
        --listen-port 7800 --advertise-addr "$(A "$1")" --admin-addr "$(A "$1")" \
        --admin-port 7900 --instance-id "${ids[$1]}" --ffn "$(A f0):7600,$(A f1):7600" \
        --ffn-ep-size 2 --routers "$(A r):7400" --kv-mem 32mb --threads 1 \
        --drain-timeout-ms 20000 "${peer_opts[@]}"
}
start_router() {
    # a TPOT target this machine meets under the test's load (a 429 is clean, but the test is
    # about membership, not admission)
    spawn r "$build/bin/afd-router" --model "$model" --listen-addr "$(A r)" --port 8000 \
        --ctrl-addr "$(A r)" --ctrl-port 7400 --sla-target-ms 1000 "${peer_opts[@]}"
    url=http://$(A r):8000
}
wait_ports() { # host
    local i
    for i in $(seq 300); do
        [[ -s $dir/$1.ports ]] && return 0
        kill -0 "${pid[$1]}" 2>/dev/null || fail "$1 exited at start-up"
        sleep 0.1
    done
    fail "$1 did not listen within 30 s"
}
registered() { # host -> times the router logged its registration
    cat "$dir"/r-*.log | grep -c "registered: instance ${ids[$1]},"
}
down_ms() { # host -> epoch ms of the router's last "down" line about it
    local ts
    ts=$(cat "$dir"/r-*.log | grep "(instance ${ids[$1]}) down" | tail -1 | jq -r .ts)
    date -d "$ts" +%s%3N
}
wait_registered() { # host count-before
    local i
    for i in $(seq 200); do
        (($(registered "$1") > $2)) && return 0
        sleep 0.1
    done
    fail "$1 did not register with the router within 20 s"
}
ready_code() { mh_exec c curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$url/ready"; }
wait_ready() { # code seconds
    local i
    for i in $(seq $(($2 * 5))); do
        [[ $(ready_code) == "$1" ]] && return 0
        sleep 0.2
    done
    fail "the router's /ready did not turn $1 within $2 s"
}
stop_wait() { # host signal seconds -> exit status of the daemon (124: still alive, killed)
    local h=$1 p=${pid[$1]} i
    kill "-$2" "$p" 2>/dev/null
    { # (bash's "Killed" notice for a kill -9 comes while polling)
        for i in $(seq $(($3 * 10))); do
            kill -0 "$p" || break
            sleep 0.1
        done
    } 2>/dev/null
    if kill -0 "$p" 2>/dev/null; then
        kill -KILL "$p"
        wait "$p" 2>/dev/null
        unset "pid[$h]"
        return 124
    fi
    wait "$p" 2>/dev/null # no "Killed" notice for the kill -9 phases
    local rc=$?
    unset "pid[$h]"
    return $rc
}

metric() { # host name (with its labels, as /metrics prints them) -> integer value
    mh_exec "$1" curl -s --max-time 5 "http://$(A "$1"):7900/metrics" |
        awk -v n="$2" '$1 == n { print int($2); found = 1; exit } END { if (!found) print -1 }'
}

t_start=$(now_ms)
start_router
start_ffnd f0 0
start_ffnd f1 1
wait_ports r
wait_ports f0
wait_ports f1
start_attnd p0 prefill
start_attnd d0 decode
wait_ports p0
wait_ports d0
wait_registered p0 0
wait_registered d0 0
wait_ready 200 20
echo "multihost: 6 namespaces + switch, cluster ready in $((($(now_ms) - t_start) / 1000)) s" \
    "(router $(A r), p0 $(A p0), d0 $(A d0), ffnd $(A f0) $(A f1); UCX over TCP)"

# every socket is on the host's own address (UCX's TCP listeners too), nothing on 0.0.0.0,
# and on a known port: the daemons' own or UCX's TCP_PORT_RANGE (what a firewall must open)
for h in r p0 d0 f0 f1; do
    command -v ss >/dev/null || break
    other=$(mh_exec $h ss -ltnH | awk -v a="$(A $h)" '{ n = split($4, x, ":"); p = x[n]
        if (x[1] != a || !(p == 7400 || p == 7600 || p == 7700 || p == 7800 || p == 7900 ||
            p == 8000 || (p >= 7610 && p <= 7629))) print }')
    [[ -z $other ]] || fail "$h listens on another address or port than $(A $h) and the known ones: $other"
done
# --- references, before any disruption --------------------------------------------------------
mh_exec c bash "$here/multihost/checker.sh" ref "$url" tiny "$dir" || fail "no reference answers"
cp "$dir"/ref-0 "$dir"/ref0.first
mh_exec c bash "$here/multihost/checker.sh" ref "$url" tiny "$dir" || fail "no reference answers"
cmp -s "$dir/ref-0" "$dir/ref0.first" || fail "greedy answers differ on an idle cluster"

# --- load and checker -------------------------------------------------------------------------
load_s=48
mh_spawn c "$dir/bench.out" "$build/bin/afd-bench" serve --url "$url" --model tiny --rate "${MH_RATE:-3}" \
    --duration $load_s --prompt-len 16:48 --output-len 8:32 --sla-ms 100000 --timeout 15 \
    --seed 7 --json-out "$dir/bench.json"
bench_pid=$MH_PID
# afd-bench's clock (send_s) starts right after it prints its plan: ours starts there too
for _ in $(seq 1000); do grep -q '^open loop' "$dir/bench.out" 2>/dev/null && break; sleep 0.01; done
t0=$(now_ms)
grep -q '^open loop' "$dir/bench.out" || fail "afd-bench serve did not start: $(cat "$dir/bench.out")"
mh_spawn c "$dir/checker.out" bash "$here/multihost/checker.sh" loop "$url" tiny "$dir" "$dir/stop"
check_pid=$MH_PID
phases=()
phase() { # name: starts a phase now
    phases+=("$(($(now_ms) - t0)) $1")
    echo "multihost: $(printf '%5s' "$(secs $(($(now_ms) - t0)))") s  $1"
}
at() { # seconds after the load started; a signal interrupts the wait (then the cleanup runs)
    local left=$((t0 + $1 * 1000 - $(now_ms)))
    ((left > 0)) || return 0
    sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))" &
    nap_pid=$!
    wait $nap_pid
    nap_pid=''
}

phase baseline
at 6
phase "kill-d0"
n=$(registered d0)
killed_ms=$(now_ms)
stop_wait d0 KILL 5
wait_ready 503 5 # the router saw it go: no decode instance left
echo "multihost:          the router saw d0 down $(($(down_ms d0) - killed_ms)) ms after the kill"
sleep 1
start_attnd d0 decode
wait_registered d0 "$n"
wait_ready 200 10
phase "d0-back"

at 14
phase "add-d1"
start_attnd d1 decode
wait_registered d1 0
phase "d1-in"

at 20
# work for d0 to finish: long requests on top of the load, one every 0.2 s until d0 runs two
# sequences (or one after 2 s; the router spreads them by headroom), then SIGTERM
long_req() { # i
    mh_exec c curl -s --max-time 30 -o "$dir/drain-$1.json" -w '%{http_code}' "$url/v1/completions" \
        -H 'Content-Type: application/json' \
        -d '{"model":"tiny","prompt":[1500,2500,3500,4500,'$((5500 + $1))'],"max_tokens":48,"ignore_eos":true,"temperature":0}' \
        > "$dir/drain-$1.code" 2>&1 &
    drain_pids+=($!)
}
n_long=0
for i in $(seq 40); do
    if ((i % 2 == 1 && n_long < 12)); then
        n_long=$((n_long + 1))
        long_req $n_long
    fi
    d0_running=$(metric d0 afd_attnd_running)
    ((d0_running > 1 || (d0_running > 0 && i > 20))) && break
    sleep 0.1
done
((d0_running > 0)) || fail "d0 ran none of $n_long long requests: nothing to drain"
phase "drain-d0"
stop_wait d0 TERM 25
rc=$?
((rc == 0)) || fail "d0 drained with SIGTERM exited $rc, want 0"
grep -q 'attnd drained cleanly' "$dir/d0-${gen[d0]}.log" || fail "d0 did not drain cleanly: $(tail -2 "$dir/d0-${gen[d0]}.log")"
for p in "${drain_pids[@]}"; do wait "$p"; done
drain_pids=()
for ((i = 1; i <= n_long; i++)); do
    if ! [[ $(cat "$dir/drain-$i.code") == 200 ]] ||
        ! jq -e '.usage.completion_tokens == 48 and .choices[0].finish_reason == "length"' "$dir/drain-$i.json" >/dev/null; then
        fail "a long request during d0's drain: HTTP $(cat "$dir/drain-$i.code"): $(head -c 300 "$dir/drain-$i.json")"
    fi
done
echo "multihost:          d0 drained and exited 0 ($d0_running sequences running at SIGTERM); $n_long long requests sent, all complete"
n=$(registered d0)
start_attnd d0 decode
wait_registered d0 "$n"
phase "d0-rejoined"

at 29
phase "kill-p0"
n=$(registered p0)
killed_ms=$(now_ms)
stop_wait p0 KILL 5
wait_ready 503 5 # decode instances but no prefill instance
echo "multihost:          the router saw p0 down $(($(down_ms p0) - killed_ms)) ms after the kill"
sleep 1
start_attnd p0 prefill
wait_registered p0 "$n"
wait_ready 200 10
phase "p0-back"

at 37
phase "kill-f1"
stop_wait f1 KILL 5
sleep 1
start_ffnd f1 1
wait_ports f1
for h in p0 d0 d1; do # each attnd reconnects to its FFN group by itself
    for i in $(seq 100); do
        [[ $(mh_exec $h curl -s -o /dev/null -w '%{http_code}' "http://$(A $h):7900/ready") == 200 ]] && break
        ((i < 100)) || fail "$h's /ready is not 200 10 s after f1 came back"
        sleep 0.1
    done
done
phase "f1-back"
t_end_ms=$(($(now_ms) - t0))
((t_end_ms < (load_s - 3) * 1000)) || fail "the last phase ended at $t_end_ms ms, too late for the load ($load_s s)"

# --- the end of the load ----------------------------------------------------------------------
for _ in $(seq 300); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$bench_pid" 2>/dev/null && fail "afd-bench serve did not end"
wait "$bench_pid"
brc=$?
bench_pid=
touch "$dir/stop"
for _ in $(seq 200); do kill -0 "$check_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$check_pid" 2>/dev/null && fail "the checker did not end"
wait "$check_pid"
check_pid=

# --- verdicts ---------------------------------------------------------------------------------
line=$(tail -1 "$dir/bench.out")
jq -e . >/dev/null 2>&1 <<<"$line" || fail "afd-bench serve (exit $brc) printed no JSON line: $(tail -3 "$dir/bench.out")"
((brc == 0)) || fail "afd-bench serve exited $brc"
get() { jq -r ".$1" <<<"$line"; }
sent=$(get sent) completed=$(get completed) rejected=$(get rejected) errors=$(get errors)
((sent > 0 && completed + rejected + errors == sent)) ||
    fail "afd-bench: completed $completed + rejected $rejected + errors $errors != sent $sent"
(($(get not_sent) == 0)) || fail "afd-bench: $(get not_sent) requests not sent"
(($(get timeouts) == 0)) || fail "afd-bench: $(get timeouts) requests hung (no end within 15 s)"
(($(get connect_errors) == 0)) || fail "afd-bench: $(get connect_errors) connections failed"
((completed * 2 >= sent)) || fail "afd-bench: only $completed of $sent requests completed"
if (($(get stream_errors) > 0)); then
    # a stream cut after it started must end with an error event, not just stop
    grep -q '^first stream: .*error in the stream' "$dir/bench.out" ||
        fail "afd-bench: a stream ended without an error event: $(grep '^first stream' "$dir/bench.out")"
fi
if (($(get http_errors) > 0)); then
    grep '^first http_error: ' "$dir/bench.out" | grep -q 'HTTP 500' ||
        fail "afd-bench: an HTTP error other than 500: $(grep '^first http_error' "$dir/bench.out")"
fi
# every completed request has its whole answer: ignore_eos, so exactly max_tokens, length
short=$(jq '[.requests[] | select(.outcome == "ok" and (.tokens != .max_tokens or .finish != "length"))] | length' "$dir/bench.json")
((short == 0)) || fail "afd-bench: $short completed requests without all their tokens"

bad=$(grep -v -E '^[0-9]+ [0-9]+ [0-9] (ok|clean) ' "$dir/check.log")
[[ -z $bad ]] || fail "checker: $(head -3 <<<"$bad")"
n_ok=$(grep -c ' ok ' "$dir/check.log")
((n_ok >= 10)) || fail "checker: only $n_ok right answers"

# Failures only where something was killed: a request failed or refused with 503 (429 is
# capacity, fine anywhere) must have been in flight during a kill -9 window (the kill until
# the instance is back in the pool; 0.5 s either side for the clocks' offset). Adding d1 and
# draining d0 cost nothing.
phase_ms() { local p; for p in "${phases[@]}"; do [[ ${p#* } == "$1" ]] && echo "${p%% *}"; done; }
windows="[[$(phase_ms kill-d0),$(phase_ms d0-back)],[$(phase_ms kill-p0),$(phase_ms p0-back)],[$(phase_ms kill-f1),$(phase_ms f1-back)]]"
echo "$t0 $windows" > "$dir/windows" # (MH_KEEP=1: what the checks below used)
stray=$(jq -c --argjson w "$windows" '[.requests[] | select(.send_s != null and .outcome != "ok" and .status != 429)
      | {i, outcome, status, a: (.send_s * 1000), b: (.send_s * 1000 + (.e2e_ms // 0))} | . as $r
      | select(any($w[]; $r.b >= .[0] - 500 and $r.a <= .[1] + 500) | not)]' "$dir/bench.json")
if [[ $stray != "[]" ]]; then
    why=$(jq -r '.[].i' <<<"$stray" | while read -r i; do
        cat "$dir"/r-*.log | grep "\"req\":\"bench-7-$i\"" | grep -v '"level":"info"' | jq -r '.ts + " " + .msg'
    done)
    fail "afd-bench requests failed outside the kill windows $windows: $stray; the router says: $why; pool changes: $(cat "$dir"/r-*.log | grep -E 'registered: instance|\) down:' | jq -r '.ts + " " + .msg' | cut -c1-160)"
fi
stray=$(awk -v t0="$t0" -v w="$windows" 'BEGIN { gsub(/[][]/, "", w); n = split(w, x, ",") }
      $4 == "clean" && $5 != 429 { hit = 0
          for (i = 1; i < n; i += 2) if ($2 - t0 >= x[i] - 500 && $1 - t0 <= x[i + 1] + 500) hit = 1
          if (!hit) print }' "$dir/check.log")
[[ -z $stray ]] || fail "checker: errors outside the kill windows $windows: $(head -3 <<<"$stray")"

# per phase: afd-bench requests by send time, checker answers by start time
phases+=("999999999 end")
summary_rows=()
for ((i = 0; i + 1 < ${#phases[@]}; i++)); do
    read -r from name <<<"${phases[i]}"
    read -r to _ <<<"${phases[i + 1]}"
    b=$(jq -r --argjson a "$from" --argjson b "$to" '[.requests[] | select(.send_s != null and
          .send_s * 1000 >= $a and .send_s * 1000 < $b)] |
          "sent \(length), ok \(map(select(.outcome == "ok")) | length), 429 \(map(select(.status == 429)) | length), 503 \(map(select(.status == 503)) | length), errors \(map(select(.outcome != "ok" and .outcome != "rejected")) | length)"' \
        "$dir/bench.json")
    c=$(awk -v a=$((t0 + from)) -v b=$((t0 + to)) '$1 >= a && $1 < b { n[$4]++ }
          END { printf "ok %d, clean %d", n["ok"], n["clean"] }' "$dir/check.log")
    summary_rows+=("$(printf '  %-12s %6s s  bench: %-52s checker: %s' "$name" "$(secs "$from")" "$b" "$c")")
done
printf '%s\n' "${summary_rows[@]}"
echo "  afd-bench: sent $sent, completed $completed, rejected $rejected (429 $(get rejected_429), 503 $(get rejected_503)), errors $errors (stream $(get stream_errors), http $(get http_errors))"

# d1, added live, took a share of the load
d1_tokens=$(metric d1 afd_attnd_generated_tokens_total)
((d1_tokens > 0)) || fail "d1 generated no tokens: it never took work"
# nothing held: once idle, every attnd has all of its KV blocks back (no reservation of a
# killed peer left over, no sequence stuck)
for h in p0 d0 d1; do
    total=$(grep -ho '[0-9]* KV blocks of' "$dir/$h-${gen[$h]}.log" | tail -1 | cut -d' ' -f1)
    for _ in $(seq 50); do
        free=$(metric $h afd_attnd_kv_blocks_free) resv=$(metric $h afd_attnd_kv_blocks_reserved)
        run=$(metric $h afd_attnd_running)
        ((free == total && resv == 0 && run == 0)) && break
        sleep 0.2
    done
    ((free == total && resv == 0 && run == 0)) ||
        fail "$h idle but holds KV: $free of $total blocks free, $resv reserved, $run running"
done
ho=$(metric d1 'afd_attnd_handoffs_total{side="decode",result="ok"}')
echo "  d1 (added live): $ho handoffs in, $d1_tokens tokens generated"
rma=$(metric p0 'afd_attnd_handoff_bytes_total{path="rma"}')
am=$(metric p0 'afd_attnd_handoff_bytes_total{path="am"}')
ho=$(metric p0 'afd_attnd_handoffs_total{side="prefill",result="ok"}')
echo "  p0 (since its restart): $ho handoffs out, K/V bytes by RMA over TCP $rma, by KV_DATA frames $am"
# Known issue, reported, not failed here: while an attnd's FFN group is down it refuses work
# with `peer`, and the router resubmits the sequence at once to the same instance (its LOAD
# does not say the group is down): tens of thousands of RESERVE/RESERVE_FAIL round trips a
# second until the shard is back, each logged on both sides.
spins=$(cat "$dir"/r-*.log | grep -c 'refused (peer')
((spins < 1000)) || echo "  note: the router resubmitted $spins sequences refused with 'peer' during the FFN outage (a resubmit loop, see the test's comment)"

# the router still serves, with the same answers
mkdir -p "$dir/final"
mh_exec c bash "$here/multihost/checker.sh" ref "$url" tiny "$dir/final" ||
    fail "the router does not serve after the scenario"
for k in 0 1 2; do
    cmp -s "$dir/ref-$k" "$dir/final/ref-$k" ||
        fail "prompt $k at the end: $(cat "$dir/final/ref-$k"), want $(cat "$dir/ref-$k")"
done

# --- SIGTERM everything: router first, then the attnds, then the shards; each exits 0 ---------
for h in r p0 d0 d1 f0 f1; do
    stop_wait "$h" TERM 25
    rc=$?
    ((rc == 0)) || fail "$h exited $rc on SIGTERM, want 0"
done
echo "ok: multi-host cluster in network namespaces: kill/restart d0, add d1, drain d0, kill/restart p0, kill/restart f1 under load; no wrong answer, no hang, all SIGTERM exits 0 ($((($(now_ms) - t_start) / 1000)) s)"
