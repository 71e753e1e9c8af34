#!/usr/bin/env bash
# afd-bench serve against tests/integ/fake_openai.mjs (a node SSE server with known timing):
# it measures the configured per-token delay (TPOT within 30%), counts the fake's 429s as
# rejected and its streams as completed, handles multi-token chunks cut across reads (chat),
# bad keys, stalls (timeout, on time), mid-stream closes, TLS, nothing listening, bad arguments
# and SIGINT (prints what it has). $1 is the absolute build directory. Runs in ~25 s.
set -uo pipefail
build=${1:?usage: test_bench_serve.sh BUILD_DIR}
bench=$build/bin/afd-bench
here=$(cd "$(dirname "$0")" && pwd)
[[ -x $bench ]] || { echo "FAIL: $bench not built"; exit 1; }
command -v node >/dev/null || { echo "SKIP: node is not installed"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq is not installed"; exit 77; }

tmp=$(mktemp -d)
fake_pid=
cleanup() {
    [[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
    [[ -n ${KEEP:-} ]] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# fake ARGS...: starts the fake server, sets $url.
fake() {
    [[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
    rm -f "$tmp/port"
    node "$here/fake_openai.mjs" --port-file "$tmp/port" --max-seconds 60 "$@" \
        2>"$tmp/fake.err" &
    fake_pid=$!
    for _ in $(seq 100); do
        [[ -s $tmp/port ]] && break
        kill -0 "$fake_pid" 2>/dev/null || fail "fake server died: $(cat "$tmp/fake.err")"
        sleep 0.05
    done
    [[ -s $tmp/port ]] || fail "fake server wrote no port"
    url=http://127.0.0.1:$(cat "$tmp/port")
}
fake_stat() { curl -s --max-time 5 "$url/stats" | jq -r ".$1"; }

# serve NAME ARGS...: runs afd-bench serve (bounded), keeps its output in $tmp/NAME.out and
# its exit code in $rc; $j is the last line.
serve() {
    local name=$1
    shift
    timeout -k 2 40 "$bench" serve --url "$url" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
    j=$(tail -n 1 "$tmp/$name.out")
    jq -e . >/dev/null 2>&1 <<<"$j" || {
        cat "$tmp/$name.out" "$tmp/$name.err"
        fail "$name: last line is not JSON: $j"
    }
}
get() { jq -r ".$1" <<<"$j"; }
# within NAME VALUE LO HI
within() {
    awk -v v="$2" -v lo="$3" -v hi="$4" 'BEGIN { exit !(v != "null" && v >= lo && v <= hi) }' ||
        { cat "$tmp"/*.out | tail -n 30; fail "$1 = $2, want [$3, $4]"; }
}
eq() { [[ $2 == "$3" ]] || { tail -n 25 "$tmp"/"$cur".out; fail "$cur: $1 = $2, want $3"; }; }

# 1. Timing: 20 ms per token, 60 ms to the first; warmup requests are sent but not counted.
cur=timing
fake --delay-ms 20 --ttft-ms 60 --api-key sekret
serve timing --api-key sekret --rate 20 --requests 30 --warmup 0.6 --output-len 20 \
    --prompt-len 8:64 --seed 3 --json-out "$tmp/timing.json"
eq rc $rc 0
eq completed "$(get completed)" 30
eq rejected "$(get rejected)" 0
eq errors "$(get errors)" 0
eq output_tokens "$(get output_tokens)" 600
within tpot_p50_ms "$(get tpot_p50_ms)" 14 26
within req_tpot_p50_ms "$(get req_tpot_p50_ms)" 14 26
within tpot_p99_ms "$(get tpot_p99_ms)" 14 60
within ttft_p50_ms "$(get ttft_p50_ms)" 42 120
eq goodput "$(get goodput)" 1
within tokens_per_s "$(get tokens_per_s)" 100 800
sent_fake=$(fake_stat requests)
(( sent_fake > 30 )) || fail "timing: the fake saw $sent_fake requests, want 30 + warmup"
eq bad_requests "$(fake_stat bad)" 0
eq json_out_requests "$(jq '.requests | length' "$tmp/timing.json")" "$sent_fake"
eq json_out_completed "$(jq '.summary.completed' "$tmp/timing.json")" 30
# the SLA verdict follows --sla-ms: nothing streams faster than 10 ms per token here
serve timing_sla --api-key sekret --rate 20 --requests 10 --output-len 10 --sla-ms 10
eq goodput "$(get goodput)" 0
# a wrong key is an HTTP error, named in the report
serve badkey --api-key wrong --rate inf --requests 3 --output-len 5
eq rc $rc 1
eq http_errors "$(get http_errors)" 3
grep -q "HTTP 401" "$tmp/badkey.out" || fail "badkey: the 401 is not reported"

# 2. Rejections: the fake takes 3 streams; the rest get 429, counted as rejected.
cur=reject
fake --delay-ms 20 --cap 3
serve reject --rate 40 --requests 30 --output-len 25 --prompt-len 16
eq rc $rc 0
eq rejected "$(get rejected)" "$(fake_stat rejected)"
eq completed "$(get completed)" "$(fake_stat completed)"
eq rejected_429 "$(get rejected)" "$(get rejected_429)"
eq total $(( $(get rejected) + $(get completed) )) 30
(( $(get rejected) > 5 )) || fail "reject: only $(get rejected) rejections at 3 slots"
fake --delay-ms 20 --cap 1 --reject-status 503
serve reject503 --rate inf --requests 4 --output-len 10
eq rejected_503 "$(get rejected_503)" 3

# 3. Chat, three tokens per chunk, every event cut in three writes with CRLF line ends.
cur=chat
fake --delay-ms 10 --ttft-ms 30 --tokens-per-chunk 3 --split
serve chat --endpoint chat --rate 20 --requests 10 --output-len 30 --prompt-len 40
eq rc $rc 0
eq completed "$(get completed)" 10
eq output_tokens "$(get output_tokens)" 300
eq bad_requests "$(fake_stat bad)" 0
within req_tpot_p50_ms "$(get req_tpot_p50_ms)" 7 13
within itl_p50_ms "$(get itl_p50_ms)" 21 39      # one gap per chunk: 3 x 10 ms
eq tpot_p50_ms "$(get tpot_p50_ms)" 0            # chunk times are token times: 2 of 3 gaps are 0
# no usage chunk: tokens are counted by content chunks
fake --delay-ms 5 --no-usage
serve nousage --rate inf --requests 3 --output-len 7
eq completed "$(get completed)" 3
eq output_tokens "$(get output_tokens)" 21

# 4. A stalled server: every request times out, and the run ends on time.
cur=stall
fake --delay-ms 10 --stall-after 3
start=$SECONDS
serve stall --rate inf --requests 4 --output-len 50 --timeout 1.5
took=$((SECONDS - start))
eq rc $rc 1
eq timeouts "$(get timeouts)" 4
eq errors "$(get errors)" 4
(( took <= 5 )) || fail "stall: the run took ${took}s with --timeout 1.5"

# 5. A server that closes mid-stream: stream errors, not completions.
cur=close
fake --delay-ms 10 --close-after 3
serve close --rate inf --requests 4 --output-len 50 --timeout 5
eq stream_errors "$(get stream_errors)" 4
eq completed "$(get completed)" 0
grep -q "first stream: request .*closed" "$tmp/close.out" ||
    fail "close: the report does not say the connection closed"

# 6. SIGINT part-way: the report covers what finished, then the JSON line, exit 130.
cur=sigint
fake --delay-ms 20 --ttft-ms 20
timeout -k 2 30 "$bench" serve --url "$url" --rate 20 --duration 20 --output-len 25 \
    >"$tmp/sigint.out" 2>&1 &
bpid=$!
sleep 2
kill -INT "$bpid"
wait "$bpid"
rc=$?
j=$(tail -n 1 "$tmp/sigint.out")
eq rc $rc 130
eq interrupted "$(get interrupted)" true
(( $(get completed) >= 10 )) || fail "sigint: $(get completed) completed in 2 s at 20/s"
(( $(get interrupted_requests) >= 1 )) || fail "sigint: nothing was in flight"
(( $(get not_sent) >= 100 )) || fail "sigint: $(get not_sent) not sent"

# 7. TLS (a self-signed certificate): --insecure streams, the default check refuses it.
cur=tls
if command -v openssl >/dev/null &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
        -days 1 -subj /CN=localhost >/dev/null 2>&1; then
    fake --delay-ms 5 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
    url=${url/http:/https:}
    serve tls --insecure --rate inf --requests 3 --output-len 8
    eq completed "$(get completed)" 3
    serve tls_verify --rate inf --requests 2 --output-len 8
    eq connect_errors "$(get connect_errors)" 2
    grep -q "TLS: certificate verify failed" "$tmp/tls_verify.out" ||
        fail "tls: the certificate failure is not named"
else
    echo "note: no openssl CLI, TLS not tested"
fi

# 8. Nothing listening; bad arguments.
cur=refused
kill "$fake_pid" && wait "$fake_pid" 2>/dev/null
fake_pid=
serve refused --rate inf --requests 3 --timeout 2
eq rc $rc 1
eq connect_errors "$(get connect_errors)" 3
for bad in "--prompt-len lognorm:x:1" "--output-len 0" "--rate -1" "--endpoint x" \
           "--duration 5 --url ftp://x" "--frobnicate 1"; do
    # shellcheck disable=SC2086
    "$bench" serve --url http://127.0.0.1:1 --rate 1 --duration 1 $bad >"$tmp/bad.out" 2>&1
    r=$?
    [[ $r == 2 ]] || fail "'$bad': exit $r, want 2"
    grep -q "afd-bench serve:" "$tmp/bad.out" || fail "'$bad': no message: $(cat "$tmp/bad.out")"
done
"$bench" serve --rate 1 >"$tmp/bad.out" 2>&1
[[ $? == 2 ]] || fail "no --url: want exit 2"

echo "ok: tpot, rejections, chat chunks, stall, close, SIGINT, TLS, refused, bad arguments"
