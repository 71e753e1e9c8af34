#!/usr/bin/env bash
# API test of afd-router on a whole local cluster (deploy/local-cluster.sh, model tiny), with curl
# and with the official OpenAI Node client (router_openai.mjs). Three routers:
#   A: prefill + decode attnds (prefill chunk 8, KV lease grace 500 ms), no keys, SLA admission
#      off (least loaded: nothing here depends on the machine's speed);
#   B: one attnd of role both, an API keys file, SLA queue 0 and a 1 ms TPOT target (so a second
#      sequence while one runs is a 429);
#   L: afd-router alone, its attnd on a closed port (503, /ready 503).
# Checks: chat/completions (stream or not, include_usage, usage vs /tokenize, finish length,
# stop strings across tokens, n, prompt lists, logprobs, seeds, greedy equality across layouts),
# every error status with its OpenAI error object, /health /ready /metrics /v1/models /tokenize
# /detokenize, X-Request-Id end to end (router and attnd logs), and client disconnects mid-stream
# and mid-prefill (nothing left running or reserved on the attnds).
# $1: the build dir. Exit 0 pass, 77 skip (reason last), else fail.
set -uo pipefail
build=$(cd "${1:?usage: test_router_api.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
for b in ffnd attnd afd-router afd-mkmodel; do
    [[ -x $build/bin/$b ]] || skip "$build/bin/$b is not built"
done
for c in curl jq node; do command -v $c >/dev/null || skip "$c is not installed"; done
[[ -f $src/deploy/npm/node_modules/openai/index.mjs ]] ||
    skip "the openai Node package is not installed (deploy/npm: npm ci)"

tmp=$(mktemp -d /tmp/afd-apitest-XXXXXX)
A=$tmp/pd B=$tmp/both
cleanup() {
    local p pids
    pids=$(jobs -p) # our own background processes still running (the lone router, curls)
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    "$src/deploy/local-cluster.sh" --stop --state "$A" >/dev/null 2>&1
    "$src/deploy/local-cluster.sh" --stop --state "$B" >/dev/null 2>&1
    if [[ -n ${KEEP_TMP:-} ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n

nfail=0
fail() { echo "FAIL: $*"; nfail=$((nfail + 1)); }
t_start=$(date +%s%N)
ok() { echo "ok: $* [$((($(date +%s%N) - t_start) / 1000000)) ms]"; }
# expect WHAT GOT WANT
expect() { [[ $2 == "$3" ]] || { fail "$1: got '$2', want '$3'"; return 1; }; }
# call NAME curl-args... : status code on stdout; headers in $tmp/NAME.hdr, body in $tmp/NAME.body
call() {
    local name=$1
    shift
    curl -sS --max-time 30 -o "$tmp/$name.body" -D "$tmp/$name.hdr" -w '%{http_code}' "$@" 2>"$tmp/$name.err"
}
body() { cat "$tmp/$1.body"; }
jb() { jq -r "$2" "$tmp/$1.body" 2>/dev/null; }
hdr() { sed -n "s/^$2: *//Ip" "$tmp/$1.hdr" | tr -d '\r' | tail -1; }
# the OpenAI error object of response NAME: expect_err NAME STATUS GOT_STATUS TYPE CODE PARAM
expect_err() {
    local n=$1 want=$2 got=$3 type=$4 code=$5 param=$6
    expect "$n: status" "$got" "$want" || { body "$n" | head -c 300; echo; return 1; }
    expect "$n: error.type" "$(jb "$n" .error.type)" "$type"
    expect "$n: error.code" "$(jb "$n" .error.code)" "$code"
    expect "$n: error.param" "$(jb "$n" .error.param)" "$param"
    [[ -n $(jb "$n" '.error.message // empty') ]] || fail "$n: no error.message"
}
# SSE: the JSON events of a stream body, one per line
events() { sed -n 's/^data: //p' "$tmp/$1.body" | grep -v '^\[DONE\]$'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_for MS CMD...: polls every 50 ms; 0 when CMD succeeded in time
wait_for() {
    local end=$(($(now_ms) + $1))
    shift
    while :; do
        "$@" && return 0
        (($(now_ms) > end)) && return 1
        sleep 0.05
    done
}
admin() { sed -n 's/.*"admin_port": *\([0-9]*\).*/\1/p' "$1/attnd-$2.ports"; }
# metric PORT NAME: the sample's value (NAME with its labels, exactly as rendered)
metric() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
metric_is() { [[ $(metric "$1" "$2") == "$3" ]]; }

# ---- the clusters --------------------------------------------------------------------------
model=$build/models/tiny
if [[ ! -f $model/config.json ]]; then
    "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null ||
        { echo "FAIL: afd-mkmodel"; exit 1; }
fi
key1=sk-apitest-$RANDOM$RANDOM key2=sk-apitest-second
printf '# keys of the API test\n%s\n\n   %s  \n' "$key1" "$key2" > "$tmp/keys"
lc=("$src/deploy/local-cluster.sh" --background --port 0 --build "$build" --ready-timeout 90)
timeout 120 "${lc[@]}" --state "$A" --attnd-arg --prefill-chunk=8 \
    --attnd-arg --lease-grace-ms=500 --router-arg --no-sla-enable > "$tmp/a.out" 2>&1 &
pa=$!
timeout 120 "${lc[@]}" --state "$B" --layout both --attnd-arg --prefill-chunk=8 \
    --router-arg "--api-keys-file=$tmp/keys" --router-arg --sla-queue-max=0 \
    --router-arg --sla-target-ms=1 > "$tmp/b.out" 2>&1 &
pb=$!
wait $pa || { tail -20 "$tmp/a.out"; echo "FAIL: cluster A (pd) did not start"; exit 1; }
wait $pb || { tail -20 "$tmp/b.out"; echo "FAIL: cluster B (both) did not start"; exit 1; }
UA=$(tail -1 "$tmp/a.out") UB=$(tail -1 "$tmp/b.out")
[[ $UA =~ ^http://127\.0\.0\.1:[0-9]+$ && $UB =~ ^http://127\.0\.0\.1:[0-9]+$ ]] ||
    { echo "FAIL: no base URLs: '$UA' '$UB'"; exit 1; }
AUTH=(-H "Authorization: Bearer $key1")
JSON=(-H 'Content-Type: application/json')
echo "cluster A (pd) $UA, cluster B (both, keys, SLA queue 0) $UB"

# L: a router whose only attnd is a closed port
"$build/bin/afd-router" --model "$model" --listen-addr 127.0.0.1 --port 0 --attnd 127.0.0.1:1 \
    --sla-queue-wait-ms 300 --port-file "$tmp/lone.ports" > "$tmp/lone.log" 2>&1 &

# ---- the OpenAI Node client ---------------------------------------------------------------------
if timeout 110 node "$src/tests/integ/router_openai.mjs" --url "$UA" --both-url "$UB" \
    --both-key "$key1" > "$tmp/node.out" 2>&1; then
    grep -c '^ok:' "$tmp/node.out" | xargs -I{} echo "ok: OpenAI Node client: {} sections passed"
else
    cat "$tmp/node.out"
    fail "the OpenAI Node client checks (router_openai.mjs)"
fi

# ---- plain endpoints ------------------------------------------------------------------------
c=$(call health "$UA/health")
expect "/health status" "$c" 200
expect "/health body" "$(body health)" ok
c=$(call ready "$UA/ready")
expect "/ready status" "$c" 200
expect "/ready body" "$(jb ready .ready)" true
c=$(call metrics "$UA/metrics")
expect "/metrics status" "$c" 200
for m in time_to_first_token_seconds inter_token_latency_seconds \
    request_time_per_output_token_seconds e2e_request_latency_seconds num_requests_running \
    num_requests_waiting; do
    grep -q "^# TYPE afd:$m " "$tmp/metrics.body" || fail "/metrics has no afd:$m"
done
grep -q '^afd:e2e_request_latency_seconds_count [1-9]' "$tmp/metrics.body" ||
    fail "afd:e2e_request_latency_seconds_count is 0 after the client's requests"
c=$(call models "$UA/v1/models")
expect "/v1/models status" "$c" 200
expect "/v1/models" "$(jb models '[.object, (.data | length), .data[0].id, .data[0].object] | join(" ")')" "list 1 tiny model"
c=$(call model "$UA/v1/models/tiny")
expect "/v1/models/tiny" "$c $(jb model '.id + " " + .object')" "200 tiny model"
c=$(call nomodel "$UA/v1/models/gpt-4")
expect_err nomodel 404 "$c" invalid_request_error model_not_found model
text='Grüße, 世界! The lighthouse 🙂 stands.'
c=$(call tok "$UA/tokenize" "${JSON[@]}" -d "$(jq -nc --arg p "$text" '{model:"tiny",prompt:$p,add_special_tokens:false}')")
expect "/tokenize status" "$c" 200
expect "/tokenize count == tokens" "$(jb tok '.count == (.tokens | length)')" true
expect "/tokenize max_model_len" "$(jb tok '.max_model_len > 0')" true
c=$(call detok "$UA/detokenize" "${JSON[@]}" -d "$(jq -c '{model:"tiny",tokens:.tokens}' "$tmp/tok.body")")
expect "/detokenize status" "$c" 200
expect "/tokenize -> /detokenize round trip" "$(jb detok .prompt)" "$text"
c=$(call tok2 "$UA/tokenize" "${JSON[@]}" -d "$(jq -nc --arg p "$text" '{prompt:$p}')")
expect "/tokenize adds BOS by default" "$(jb tok2 .count)" "$(($(jb tok .count) + 1))"
c=$(call detokbad "$UA/detokenize" "${JSON[@]}" -d '{"tokens":[99999999]}')
expect "/detokenize of an id out of the vocabulary" "$c" 400
ok "health, ready, metrics, models, tokenize/detokenize"

# ---- chat and completions with curl ------------------------------------------------------------
msgs='[{"role":"user","content":"Write a poem about the sea."}]'
c=$(call chat "$UA/v1/chat/completions" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":10,\"temperature\":0}")
expect "chat status" "$c" 200
expect "chat object/finish" "$(jb chat '.object + " " + .choices[0].finish_reason + " " + .choices[0].message.role')" "chat.completion length assistant"
expect "chat completion_tokens" "$(jb chat .usage.completion_tokens)" 10
call ctok "$UA/tokenize" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs}" >/dev/null
expect "chat prompt_tokens vs /tokenize" "$(jb chat .usage.prompt_tokens)" "$(jb ctok .count)"
expect "chat total_tokens" "$(jb chat '.usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens')" true
expect "Content-Type" "$(hdr chat Content-Type)" application/json
[[ $(jb chat .system_fingerprint) =~ ^fp_[0-9a-f]{10}$ ]] || fail "system_fingerprint: '$(jb chat .system_fingerprint)'"
greedy=$(jb chat '.choices[0].message.content')

c=$(call chats "$UA/v1/chat/completions" -N "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":10,\"temperature\":0,\"stream\":true}")
expect "chat stream status" "$c" 200
[[ $(hdr chats Content-Type) == text/event-stream* ]] || fail "chat stream Content-Type: $(hdr chats Content-Type)"
expect "chat stream ends with [DONE]" "$(grep '^data: ' "$tmp/chats.body" | tail -1)" "data: [DONE]"
expect "chat stream text" "$(events chats | jq -j '.choices[0].delta.content // empty')" "$greedy"
expect "chat stream: chunks with usage (not asked)" "$(events chats | jq -s 'map(select(has("usage"))) | length')" 0
expect "chat stream: finish chunks" "$(events chats | jq -s '[.[].choices[] | select(.finish_reason != null) | .finish_reason] | join(",")')" '"length"'

c=$(call chatu "$UA/v1/chat/completions" -N "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":10,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"logprobs\":true}")
expect "chat stream+usage status" "$c" 200
expect "chat stream+usage: usage null before the last" "$(events chatu | jq -s '.[:-1] | all(.usage == null and has("usage"))')" true
expect "chat stream+usage: last chunk" "$(events chatu | jq -s -c '.[-1] | [(.choices | length), .usage.completion_tokens, .usage.prompt_tokens]')" "[0,10,$(jb ctok .count)]"
expect "chat stream+usage: completion_tokens == tokens streamed" "$(events chatu | jq -s '[.[].choices[].logprobs.content // [] | length] | add')" 10
expect "chat stream+usage text" "$(events chatu | jq -j '.choices[0].delta.content // empty')" "$greedy"

prompt='The old lighthouse keeper said'
creq() { jq -nc --arg p "$prompt" "{model:\"tiny\",prompt:\$p,temperature:0} + $1"; }
c=$(call cmpl "$UA/v1/completions" "${JSON[@]}" -d "$(creq '{max_tokens:24,logprobs:1}')")
expect "completions status" "$c" 200
expect "completions object/finish" "$(jb cmpl '.object + " " + .choices[0].finish_reason')" "text_completion length"
call ptok "$UA/tokenize" "${JSON[@]}" -d "$(jq -nc --arg p "$prompt" '{prompt:$p}')" >/dev/null
expect "completions prompt_tokens vs /tokenize" "$(jb cmpl .usage.prompt_tokens)" "$(jb ptok .count)"
expect "completions completion_tokens" "$(jb cmpl .usage.completion_tokens)" 24
ctext=$(jb cmpl '.choices[0].text')
c=$(call cmpls "$UA/v1/completions" -N "${JSON[@]}" -d "$(creq '{max_tokens:24,stream:true,stream_options:{include_usage:true}}')")
expect "completions stream text" "$(events cmpls | jq -j '.choices[0].text // empty')" "$ctext"
expect "completions stream usage" "$(events cmpls | jq -s -c '[(.[:-1] | all(.usage == null)), .[-1].usage.completion_tokens]')" "[true,24]"
expect "completions stream finish" "$(events cmpls | jq -s -r '[.[].choices[] | .finish_reason // empty] | join(",")')" length
ok "chat and completions with curl (stream or not, include_usage, usage numbers)"

# stop string from inside token i to inside token i+1 (plain tokens of >= 2 characters), at its
# first occurrence; jq slices strings by code points, as text_offset counts
pick=$(jq -c '.choices[0] as $c | $c.logprobs as $l | [range(1; ($l.tokens | length) - 1) as $i
    | select(($l.tokens[$i] | startswith("bytes:") | not) and ($l.tokens[$i + 1] | startswith("bytes:") | not)
             and ($l.tokens[$i] | length) >= 2 and ($l.tokens[$i + 1] | length) >= 2)
    | ($l.text_offset[$i] + 1) as $s | ($l.tokens[$i][1:] + $l.tokens[$i + 1][0:1]) as $stop
    | select($c.text[$s:$s + ($stop | length)] == $stop and ($c.text[0:$s + ($stop | length) - 1] | contains($stop) | not))
    | {stop: $stop, before: $c.text[0:$s], i: $i}] | first // empty' "$tmp/cmpl.body")
if [[ -z $pick ]]; then
    fail "no stop string spanning two tokens in '$ctext'"
else
    stop=$(jq -r .stop <<<"$pick") before=$(jq -r .before <<<"$pick")
    echo "  stop '$stop' spans tokens $(jq .i <<<"$pick")..$(($(jq .i <<<"$pick") + 1)) of '$ctext'"
    c=$(call cstop "$UA/v1/completions" "${JSON[@]}" -d "$(creq "{max_tokens:24,stop:[$(jq .stop <<<"$pick")]}")")
    expect "stop: status" "$c" 200
    expect "stop: text ends right before the stop" "$(jb cstop '.choices[0].text')" "$before"
    expect "stop: finish_reason" "$(jb cstop '.choices[0].finish_reason')" stop
    c=$(call cstops "$UA/v1/completions" -N "${JSON[@]}" -d "$(creq "{max_tokens:24,stream:true,stop:$(jq .stop <<<"$pick")}")")
    expect "stop (streamed): text" "$(events cstops | jq -j '.choices[0].text // empty')" "$before"
    expect "stop (streamed): finish" "$(events cstops | jq -s -r '[.[].choices[] | .finish_reason // empty] | join(",")')" stop
    c=$(call cnostop "$UA/v1/completions" "${JSON[@]}" -d "$(creq '{max_tokens:24,stop:["zz\u0001never"]}')")
    expect "stop that never occurs: text" "$(jb cnostop '.choices[0].text')" "$ctext"
    expect "stop that never occurs: finish" "$(jb cnostop '.choices[0].finish_reason')" length
    ok "stop strings across tokens with curl"
fi

c=$(call plist "$UA/v1/completions" "${JSON[@]}" -d '{"model":"tiny","prompt":["One","Two","Three"],"n":2,"max_tokens":3,"seed":5}')
expect "prompt list x n: status" "$c" 200
expect "prompt list x n: indices" "$(jb plist '[.choices[].index] | map(tostring) | join(",")')" "0,1,2,3,4,5"
expect "prompt list x n: finishes" "$(jb plist '[.choices[].finish_reason] | unique | join(",")')" length
expect "prompt list x n: completion_tokens" "$(jb plist .usage.completion_tokens)" 18
c=$(call clp "$UA/v1/chat/completions" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":5,\"logprobs\":true,\"top_logprobs\":4}")
expect "chat logprobs shape" "$(jq -c '.choices[0].logprobs.content | [length, (map(.top_logprobs | length) | unique), (map(has("token") and has("logprob") and has("bytes")) | all)]' "$tmp/clp.body")" "[5,[4],true]"
for s in 1 1 2; do
    call "seed$s$RANDOM" "$UA/v1/completions" "${JSON[@]}" -d "$(jq -nc --arg p "$prompt" --argjson s $s '{model:"tiny",prompt:$p,max_tokens:12,temperature:1,seed:$s}')" >/dev/null
done
mapfile -t st < <(for f in "$tmp"/seed1*.body "$tmp"/seed2*.body; do jq -r '.choices[0].text' "$f"; done)
expect "seed 1 twice" "${st[1]}" "${st[0]}"
[[ ${st[2]} != "${st[0]}" ]] || fail "seeds 1 and 2 gave the same text '${st[0]}'"
ok "n, prompt lists, logprobs, seeds with curl"

# ---- errors -----------------------------------------------------------------------------------
c=$(call e1 "$UA/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":"x"}')
expect_err e1 400 "$c" invalid_request_error null null
[[ $(jb e1 .error.message) =~ line\ 1,\ column\ [0-9]+ ]] || fail "invalid JSON message has no position: $(jb e1 .error.message)"
c=$(call e2 "$UA/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":"ten"}')
expect_err e2 400 "$c" invalid_request_error invalid_type max_tokens
c=$(call e3 "$UA/v1/completions" "${JSON[@]}" -d '{"model":"tiny","prompt":"x","top_p":0}')
expect_err e3 400 "$c" invalid_request_error decimal_below_min_value top_p
c=$(call e4 "$UA/v1/completions" "${JSON[@]}" -d '{"model":"tiny","prompt":"x","n":0}')
expect_err e4 400 "$c" invalid_request_error integer_below_min_value n
c=$(call e5 "$UA/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}')
expect_err e5 400 "$c" invalid_request_error array_above_max_length stop
c=$(call e6 "$UA/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":5}]}')
expect_err e6 400 "$c" invalid_request_error invalid_type "messages[0].content"
c=$(call e7 "$UA/v1/chat/completions" "${JSON[@]}" -d '[1,2,3]')
expect_err e7 400 "$c" invalid_request_error invalid_type null
c=$(call e8 "$UA/v1/completions" "${JSON[@]}" -d '{"prompt":"x"}')
expect_err e8 400 "$c" invalid_request_error missing_required_parameter model
c=$(call e9 "$UA/v1/chat/completions" "${JSON[@]}" -d '{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}')
expect_err e9 404 "$c" invalid_request_error model_not_found model
c=$(call e10 "$UA/v1/embeddings" "${JSON[@]}" -d '{"model":"tiny","input":"x"}')
expect_err e10 404 "$c" invalid_request_error null null
c=$(call e11 "$UA/v1/chat/completions")
expect_err e11 405 "$c" invalid_request_error method_not_allowed null
[[ $(hdr e11 Allow) == *POST* ]] || fail "405 without Allow: POST ($(hdr e11 Allow))"
head -c $((9 << 20)) /dev/zero | tr '\0' 'a' > "$tmp/huge.txt"
c=$(call e12 "$UA/v1/completions" "${JSON[@]}" --data-binary @"$tmp/huge.txt")
expect_err e12 413 "$c" invalid_request_error request_too_large null
c=$(call e13 "$UA/v1/completions" "${JSON[@]}" -d '{"model":"tiny","prompt":"x","max_tokens":70000}')
expect_err e13 400 "$c" invalid_request_error context_length_exceeded max_tokens
maxlen=$(jb tok .max_model_len)
jq -nc --argjson n "$maxlen" '{model:"tiny",prompt:[range($n) | 5],max_tokens:1}' > "$tmp/longids.json"
c=$(call e14 "$UA/v1/completions" "${JSON[@]}" --data-binary @"$tmp/longids.json")
expect_err e14 400 "$c" invalid_request_error context_length_exceeded prompt
c=$(call e15 "$UA/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"frequency_penalty":1}')
expect_err e15 400 "$c" invalid_request_error unsupported_value frequency_penalty
ok "400 (JSON, types, ranges, context), 404 model and path, 405, 413 with error objects"

# 401 on B
c=$(call k1 "$UB/v1/models")
expect_err k1 401 "$c" invalid_request_error invalid_api_key null
expect "401 WWW-Authenticate" "$(hdr k1 WWW-Authenticate)" Bearer
c=$(call k2 "$UB/v1/chat/completions" "${JSON[@]}" -H "Authorization: Bearer sk-wrong" -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":1}')
expect_err k2 401 "$c" invalid_request_error invalid_api_key null
c=$(call k3 "$UB/v1/models" -H "Authorization: $key1")
expect_err k3 401 "$c" invalid_request_error invalid_api_key null
c=$(call k4 "$UB/v1/models" -H "Authorization: Basic $(printf 'u:%s' "$key1" | base64)")
expect_err k4 401 "$c" invalid_request_error invalid_api_key null
c=$(call k5 "$UB/v1/no-such-path")
expect "unknown path without a key" "$c" 401
c=$(call k6 "$UB/v1/models" "${AUTH[@]}")
expect "the right key" "$c $(jb k6 '.data[0].id')" "200 tiny"
c=$(call k7 "$UB/v1/models" -H "Authorization: Bearer $key2")
expect "the second key (spaces trimmed in the file)" "$c" 200
c=$(call k8 "$UB/health")
expect "/health needs no key" "$c" 200
c=$(call k9 "$UB/v1/chat/completions" "${AUTH[@]}" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":10,\"temperature\":0}")
expect "chat with the key (layout both)" "$c" 200
expect "greedy text: layout both == layout pd" "$(jb k9 '.choices[0].message.content')" "$greedy"
ok "401 (no key, wrong key, no Bearer, Basic), keys file, public routes, layouts agree"

# 429 on B: one long stream holds the only instance; the SLA (queue 0, 1 ms target) refuses more
curl -sN --max-time 60 "$UB/v1/chat/completions" "${AUTH[@]}" "${JSON[@]}" \
    -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":2000,\"ignore_eos\":true,\"stream\":true}" > "$tmp/hold.body" 2>/dev/null &
hold=$!
if wait_for 10000 grep -q '"content":"[^"]' "$tmp/hold.body"; then
    c=$(call r1 "$UB/v1/completions" "${AUTH[@]}" "${JSON[@]}" -d '{"model":"tiny","prompt":"hi","max_tokens":2}')
    expect_err r1 429 "$c" requests rate_limit_exceeded null
    [[ $(hdr r1 Retry-After) =~ ^[0-9]+$ ]] && (($(hdr r1 Retry-After) >= 1 && $(hdr r1 Retry-After) <= 60)) ||
        fail "429 Retry-After: '$(hdr r1 Retry-After)'"
    c=$(call r2 "$UB/v1/chat/completions" "${AUTH[@]}" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":2,\"stream\":true}")
    expect_err r2 429 "$c" requests rate_limit_exceeded null
    kill $hold 2>/dev/null
    wait $hold 2>/dev/null
    admitted() { [[ $(call r3 "$UB/v1/completions" "${AUTH[@]}" "${JSON[@]}" -d '{"model":"tiny","prompt":"hi","max_tokens":1}') == 200 ]]; }
    wait_for 3000 admitted || fail "B: no request admitted within 3 s after the holding stream closed"
    ok "429 with Retry-After and the OpenAI error object; admitted again once the stream closed"
else
    fail "B: the holding stream produced no token within 10 s"
fi

# 503 on L: no attnd reachable
if wait_for 10000 test -s "$tmp/lone.ports"; then
    UL=http://127.0.0.1:$(sed -n 's/.*"data_port": *\([0-9]*\).*/\1/p' "$tmp/lone.ports")
    c=$(call l1 "$UL/ready")
    expect "/ready without instances" "$c $(jb l1 .ready)" "503 false"
    [[ -n $(jb l1 '.reason // empty') ]] || fail "/ready 503 without a reason: $(body l1)"
    c=$(call l2 "$UL/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":2}')
    expect_err l2 503 "$c" server_error null null
    [[ -n $(hdr l2 Retry-After) ]] || fail "503 without Retry-After"
    c=$(call l3 "$UL/health")
    expect "/health of a router without instances" "$c" 200
    ok "503 and /ready 503 with a reason when no attnd is reachable"
else
    fail "the lone router did not start: $(tail -3 "$tmp/lone.log")"
fi

# ---- X-Request-Id ------------------------------------------------------------------------------
rid=apitest-$RANDOM-$RANDOM
c=$(call x1 "$UA/v1/chat/completions" "${JSON[@]}" -H "X-Request-Id: $rid" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":3}")
expect "X-Request-Id echoed" "$c $(hdr x1 X-Request-Id)" "200 $rid"
for f in router attnd-prefill attnd-decode; do
    n=$(jq -c --arg r "$rid" 'select(.req == $r or (.msg | contains($r)))' "$A/$f.log" 2>/dev/null | wc -l)
    ((n > 0)) || fail "request id $rid not in $f.log"
done
c=$(call x2 "$UA/v1/models")
[[ $(hdr x2 X-Request-Id) =~ ^req-[0-9a-f]{32}$ ]] || fail "generated X-Request-Id: '$(hdr x2 X-Request-Id)'"
c=$(call x3 "$UA/v1/nothing" -H "X-Request-Id: $rid-404")
expect "X-Request-Id on an error" "$(hdr x3 X-Request-Id)" "$rid-404"
c=$(call x4 "$UA/v1/models" -H "X-Request-Id: $(printf 'x%.0s' {1..65})")
[[ $(hdr x4 X-Request-Id) =~ ^req-[0-9a-f]{32}$ ]] || fail "a 65-character X-Request-Id is replaced: '$(hdr x4 X-Request-Id)'"
ok "X-Request-Id: echoed, in the router's and both attnds' logs, generated when absent or invalid"

# ---- disconnects --------------------------------------------------------------------------------
DP=$(admin "$A" decode) PP=$(admin "$A" prefill)
RP=${UA##*:}
gone0=$(metric "$RP" 'afd:router_requests_total{outcome="client_gone"}')
curl -sN --max-time 60 "$UA/v1/completions" "${JSON[@]}" \
    -d '{"model":"tiny","prompt":"Count to a thousand:","max_tokens":3000,"n":3,"ignore_eos":true,"stream":true}' > "$tmp/cut.body" 2>/dev/null &
cut=$!
all_three() { [[ $(sed -n 's/^data: //p' "$tmp/cut.body" | jq -r '.choices[0].index' 2>/dev/null | sort -u | tr -d '\n') == 012 ]]; }
if wait_for 10000 all_three; then
    expect "decode attnd running during the stream (n = 3)" "$(metric "$DP" afd_attnd_running)" 3
    t0=$(now_ms)
    kill $cut
    wait $cut 2>/dev/null
    if wait_for 1500 metric_is "$DP" afd_attnd_running 0; then
        echo "  decode attnd running back to 0 $(($(now_ms) - t0)) ms after the disconnect"
    else
        fail "decode attnd still running $(metric "$DP" afd_attnd_running) 1.5 s after the disconnect"
    fi
    g1=$(metric "$DP" afd_attnd_generated_tokens_total)
    sleep 0.3
    expect "no tokens generated after the cancel" "$(metric "$DP" afd_attnd_generated_tokens_total)" "$g1"
    gone_grew() { (($(metric "$RP" 'afd:router_requests_total{outcome="client_gone"}') > gone0)); }
    wait_for 1000 gone_grew ||
        fail "afd:router_requests_total{outcome=client_gone} did not grow"
    c=$(call after1 "$UA/v1/chat/completions" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":10,\"temperature\":0}")
    expect "the router serves after a disconnect" "$c $(jb after1 '.choices[0].message.content')" "200 $greedy"
    ok "disconnect mid-stream (n = 3): every sequence cancelled on the decode attnd, router serving"
else
    fail "the stream to cut did not bring chunks of its 3 choices in 10 s"
    kill $cut
fi

# mid-prefill: a long prompt in chunks of 8 tokens; disconnect before the first token
words=$(for i in $(seq 2500); do printf 'w%d ' "$i"; done)
jq -nc --arg p "$words" '{model:"tiny",prompt:$p,max_tokens:8,stream:true}' > "$tmp/longp.json"
ho0=$(metric "$DP" 'afd_attnd_handoffs_total{side="decode",result="ok"}')
curl -sN --max-time 60 "$UA/v1/completions" "${JSON[@]}" --data-binary @"$tmp/longp.json" > "$tmp/pre.body" 2>/dev/null &
pre=$!
if wait_for 10000 metric_is "$PP" afd_attnd_running 1; then
    resv=$(metric "$DP" afd_attnd_kv_blocks_reserved)
    ((resv > 0)) || fail "no KV reservation on the decode attnd during the prefill ($resv)"
    sleep 0.3
    kill $pre
    wait $pre 2>/dev/null
    [[ ! -s $tmp/pre.body ]] || fail "output before the disconnect: the prefill was over ($(head -c 200 "$tmp/pre.body"))"
    idle() {
        metric_is "$PP" afd_attnd_running 0 && metric_is "$PP" afd_attnd_waiting 0 &&
            metric_is "$DP" afd_attnd_running 0 && metric_is "$DP" afd_attnd_kv_blocks_reserved 0
    }
    # the released blocks stay out of use for the lease grace (500 ms here) before they are free
    if ! wait_for 3000 idle; then
        fail "after a disconnect mid-prefill: prefill running $(metric "$PP" afd_attnd_running), decode running $(metric "$DP" afd_attnd_running), reserved $(metric "$DP" afd_attnd_kv_blocks_reserved)"
    fi
    expect "no handoff completed for the cancelled prefill" "$(metric "$DP" 'afd_attnd_handoffs_total{side="decode",result="ok"}')" "$ho0"
    c=$(call after2 "$UA/v1/chat/completions" "${JSON[@]}" -d "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":10,\"temperature\":0}")
    expect "the router serves after a disconnect mid-prefill" "$c $(jb after2 '.choices[0].message.content')" "200 $greedy"
    ok "disconnect mid-prefill: no sequence or reservation left"
else
    fail "the prefill attnd never ran the long prompt: $(head -c 300 "$tmp/pre.body")"
    kill $pre
fi

if grep -h '"level":"error"' "$A"/router.log "$B"/router.log | grep -v 'ucx:' | head -3 | grep .; then
    fail "error lines in the routers' logs"
fi
if ((nfail)); then
    echo "test_router_api: $nfail failure(s)"
    exit 1
fi
echo "test_router_api: all checks passed"
