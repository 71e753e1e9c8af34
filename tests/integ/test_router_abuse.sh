#!/usr/bin/env bash
# Abuse of afd-router on a local cluster (deploy/local-cluster.sh --layout both, model tiny):
# bad JSON, wrong types, huge bodies and headers, invalid UTF-8 in the body and in stop strings,
# lists over the limits (curl), then garbage bytes, malformed heads, pipelining, slow and
# vanishing clients (router_abuse.mjs over raw sockets; the router runs with a 1.5 s read
# timeout). Every answer must be a 4xx (or a correct 200), never a 5xx or a crash; afterwards
# the router process is alive and answers a normal request with the same text as before.
# $1: the build dir. Exit 0 pass, 77 skip (reason last), else fail.
set -uo pipefail
build=$(cd "${1:?usage: test_router_abuse.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
skip() { echo "SKIP: $*"; exit 77; }
for b in ffnd attnd afd-router afd-mkmodel; do
    [[ -x $build/bin/$b ]] || skip "$build/bin/$b is not built"
done
for c in curl jq node; do command -v $c >/dev/null || skip "$c is not installed"; done

tmp=$(mktemp -d /tmp/afd-abusetest-XXXXXX)
S=$tmp/cluster
cleanup() {
    "$src/deploy/local-cluster.sh" --stop --state "$S" >/dev/null 2>&1
    if [[ -n ${KEEP_TMP:-} ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
export UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n

nfail=0
fail() { echo "FAIL: $*"; nfail=$((nfail + 1)); }
ok() { echo "ok: $*"; }
expect() { [[ $2 == "$3" ]] || { fail "$1: got '$2', want '$3'"; return 1; }; }
call() {
    local name=$1
    shift
    curl -sS --max-time 30 -o "$tmp/$name.body" -D "$tmp/$name.hdr" -w '%{http_code}' "$@" 2>"$tmp/$name.err"
}
jb() { jq -r "$2" "$tmp/$1.body" 2>/dev/null; }

rto=1500
out=$(timeout 120 "$src/deploy/local-cluster.sh" --background --port 0 --build "$build" \
    --state "$S" --layout both --ready-timeout 90 --router-arg "--read-timeout-ms=$rto" 2>&1)
U=$(tail -1 <<<"$out")
[[ $U =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || { echo "$out" | tail -20; echo "FAIL: the cluster did not start"; exit 1; }
port=${U##*:}
rpid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$S/router.ports")
[[ -n $rpid ]] && kill -0 "$rpid" || { echo "FAIL: no router pid"; exit 1; }
JSON=(-H 'Content-Type: application/json')
ref='{"model":"tiny","prompt":"The quick brown fox","max_tokens":8,"temperature":0}'
c=$(call ref0 "$U/v1/completions" "${JSON[@]}" -d "$ref")
expect "reference request" "$c" 200 || exit 1
reftext=$(jb ref0 '.choices[0].text')

# bad NAME BODY-FILE|-d STRING...: the answer is a 4xx OpenAI error object (400 unless given)
bad() {
    local name=$1 want=$2
    shift 2
    local c
    c=$(call "$name" "$U/v1/completions" "${JSON[@]}" "$@")
    if [[ $c != "$want" ]]; then
        fail "$name: status $c, want $want: $(head -c 300 "$tmp/$name.body")"
    elif [[ -z $(jb "$name" '.error.message // empty') ]]; then
        fail "$name: no OpenAI error object: $(head -c 300 "$tmp/$name.body")"
    fi
}
# fine NAME ...: 200 with a choice, or a 400 error object (input the router may accept)
fine() {
    local name=$1
    shift
    local c
    c=$(call "$name" "$U/v1/completions" "${JSON[@]}" "$@")
    case $c in
    200) [[ -n $(jb "$name" '.choices[0].finish_reason // empty') ]] || fail "$name: 200 without a choice" ;;
    400) [[ -n $(jb "$name" '.error.message // empty') ]] || fail "$name: 400 without an error object" ;;
    *) fail "$name: status $c: $(head -c 300 "$tmp/$name.body")" ;;
    esac
}

# ---- bad JSON -----------------------------------------------------------------------------------
bad j_trunc 400 -d '{"model":"tiny","prompt":"x"'
bad j_trail 400 -d '{"model":"tiny","prompt":"x"} trailing'
bad j_empty 400 --data-binary ''
bad j_null 400 -d 'null'
bad j_string 400 -d '"just a string"'
bad j_nan 400 -d '{"model":"tiny","prompt":"x","temperature":NaN}'
bad j_big 400 -d '{"model":"tiny","prompt":"x","temperature":1e999}'
bad j_ctrl 400 --data-binary $'{"model":"tiny","prompt":"a\x01b"}'
bad j_single 400 -d "{'model':'tiny','prompt':'x'}"
bad j_comment 400 -d '{"model":"tiny", /* c */ "prompt":"x"}'
printf '%0.s[' $(seq 100000) > "$tmp/deep.json"
bad j_deep 400 --data-binary @"$tmp/deep.json"
{ printf '{"model":"tiny","prompt":"x","meta":'; printf '%0.s{"a":' $(seq 5000); printf '1'; printf '%0.s}' $(seq 5000); printf '}'; } > "$tmp/deepobj.json"
fine j_deepobj --data-binary @"$tmp/deepobj.json"
printf '\xef\xbb\xbf{"model":"tiny","prompt":"x","max_tokens":1}' > "$tmp/bom.json"
fine j_bom --data-binary @"$tmp/bom.json"
expect "invalid JSON message names the position" "$(jb j_trunc '.error.message | test("line 1, column [0-9]+")')" true
ok "bad JSON: 400 with an error object"

# ---- wrong types and values ------------------------------------------------------------------------
bad t_model 400 -d '{"model":5,"prompt":"x"}'
bad t_prompt 400 -d '{"model":"tiny","prompt":{"a":1}}'
bad t_prompt_mix 400 -d '{"model":"tiny","prompt":["a",[1,2]]}'
bad t_ids 400 -d '{"model":"tiny","prompt":[1,-5]}'
bad t_ids_big 400 -d '{"model":"tiny","prompt":[1,99999999]}'
bad t_stream 400 -d '{"model":"tiny","prompt":"x","stream":"yes"}'
bad t_n_frac 400 -d '{"model":"tiny","prompt":"x","n":1.5}'
bad t_maxtok 400 -d '{"model":"tiny","prompt":"x","max_tokens":-1}'
bad t_maxtok_huge 400 -d '{"model":"tiny","prompt":"x","max_tokens":1e30}'
bad t_temp 400 -d '{"model":"tiny","prompt":"x","temperature":"hot"}'
bad t_stop_num 400 -d '{"model":"tiny","prompt":"x","stop":5}'
bad t_stop_elem 400 -d '{"model":"tiny","prompt":"x","stop":["a",7]}'
bad t_stop_empty 400 -d '{"model":"tiny","prompt":"x","stop":[""]}'
bad t_stop_long 400 -d "{\"model\":\"tiny\",\"prompt\":\"x\",\"stop\":[\"$(head -c 300 /dev/zero | tr '\0' s)\"]}"
bad t_so 400 -d '{"model":"tiny","prompt":"x","stream_options":{"include_usage":true}}'
bad t_so_type 400 -d '{"model":"tiny","prompt":"x","stream":true,"stream_options":[1]}'
bad t_seed 400 -d '{"model":"tiny","prompt":"x","seed":"abc"}'
bad t_seed_big 400 -d '{"model":"tiny","prompt":"x","seed":1e40}'
bad t_logprobs 400 -d '{"model":"tiny","prompt":"x","logprobs":9}'
bad t_best_of 400 -d '{"model":"tiny","prompt":"x","best_of":3}'
c=$(call t_chat_role "$U/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"wizard","content":"x"}]}')
expect "chat message of an unknown role" "$c $(jb t_chat_role .error.param)" "400 messages[0].role"
c=$(call t_chat_role2 "$U/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"content":"x"}]}')
expect "chat message without role" "$c $(jb t_chat_role2 .error.param)" "400 messages[0].role"
c=$(call t_chat_img "$U/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}')
expect "chat image part" "$c" 400
c=$(call t_chat_empty "$U/v1/chat/completions" "${JSON[@]}" -d '{"model":"tiny","messages":[]}')
expect "chat without messages" "$c $(jb t_chat_empty .error.code)" "400 empty_array"
ok "wrong types and values: 400 with an error object"

# ---- sizes ---------------------------------------------------------------------------------------
head -c $((9 << 20)) /dev/zero | tr '\0' 'a' > "$tmp/huge.bin"
bad s_huge 413 --data-binary @"$tmp/huge.bin"
bad s_huge_chunked 413 -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/huge.bin"
# a valid JSON body under the body limit whose prompt is over the prompt text limit (4 MiB)
{ printf '{"model":"tiny","max_tokens":1,"prompt":"'; head -c $((5 << 20)) /dev/zero | tr '\0' 'p'; printf '"}'; } > "$tmp/bigprompt.json"
bad s_prompt 400 --data-binary @"$tmp/bigprompt.json"
jq -nc '{model:"tiny",prompt:[range(65) | "p\(.)"],max_tokens:1}' > "$tmp/manyprompts.json"
bad s_prompts 400 --data-binary @"$tmp/manyprompts.json"
jq -nc '{model:"tiny",messages:[range(5000) | {role:"user",content:"m"}],max_tokens:1}' > "$tmp/manymsgs.json"
c=$(call s_msgs "$U/v1/chat/completions" "${JSON[@]}" --data-binary @"$tmp/manymsgs.json")
expect "5000 messages" "$c $(jb s_msgs .error.code)" "400 array_above_max_length"
big=$(head -c 20000 /dev/zero | tr '\0' h)
c=$(call s_hdr "$U/health" -H "X-Big: $big")
expect "a 20 KB header" "$c" 431
args=()
for i in $(seq 150); do args+=(-H "X-H$i: v"); done
c=$(call s_nhdr "$U/health" "${args[@]}")
expect "150 header lines" "$c" 431
c=$(call s_user "$U/v1/completions" "${JSON[@]}" -d "{\"model\":\"tiny\",\"prompt\":\"x\",\"user\":\"$(head -c 300 /dev/zero | tr '\0' u)\"}")
expect "a 300-byte user" "$c $(jb s_user .error.code)" "400 string_above_max_length"
ok "huge bodies (413), a prompt over its limit, too many prompts/messages, huge headers (431)"

# ---- invalid UTF-8 ------------------------------------------------------------------------------
printf '{"model":"tiny","prompt":"ab\xff\xfecd","max_tokens":1}' > "$tmp/u1.json"
bad u_raw 400 --data-binary @"$tmp/u1.json"
printf '{"model":"tiny","prompt":"\xc0\xaf","max_tokens":1}' > "$tmp/u2.json"
bad u_overlong 400 --data-binary @"$tmp/u2.json"
printf '{"model":"tiny","prompt":"\xed\xa0\x80","max_tokens":1}' > "$tmp/u3.json"
bad u_surrogate 400 --data-binary @"$tmp/u3.json"
printf '{"model":"tiny","prompt":"abc\xe4\xb8","max_tokens":1}' > "$tmp/u4.json"
bad u_cut 400 --data-binary @"$tmp/u4.json"
fine u_lone_escape -d '{"model":"tiny","prompt":"a\ud800b","max_tokens":2}'
fine u_nul_escape -d '{"model":"tiny","prompt":"a\u0000b","max_tokens":2}'
fine u_nonchar -d '{"model":"tiny","prompt":"\uffff\ufffe\u0001","max_tokens":2}'
printf '{"model":"tiny","prompt":"x","max_tokens":4,"stop":["\xff"]}' > "$tmp/u5.json"
bad u_stop_raw 400 --data-binary @"$tmp/u5.json"
printf '{"model":"tiny","prompt":"x","max_tokens":4,"stop":["ok","\xe2\x82"]}' > "$tmp/u6.json"
bad u_stop_cut 400 --data-binary @"$tmp/u6.json"
fine u_stop_escape -d '{"model":"tiny","prompt":"x","max_tokens":4,"stop":["\udc80"]}'
fine u_stop_nul -d '{"model":"tiny","prompt":"x","max_tokens":4,"stop":["\u0000"]}'
fine u_stop_stream -d '{"model":"tiny","prompt":"x","max_tokens":4,"stream":true,"stop":["\ud83d"]}'
printf '{"model":"tiny","messages":[{"role":"user","content":"hi \xf0\x9f"}]}' > "$tmp/u7.json"
c=$(call u_chat "$U/v1/chat/completions" "${JSON[@]}" --data-binary @"$tmp/u7.json")
expect "invalid UTF-8 in a chat message" "$c" 400
printf '{"prompt":"\xfe\xfe"}' > "$tmp/u8.json"
c=$(call u_tok "$U/tokenize" "${JSON[@]}" --data-binary @"$tmp/u8.json")
expect "invalid UTF-8 to /tokenize" "$c" 400
ok "invalid UTF-8 in bodies and stop strings: 400 or handled"

# ---- raw sockets -----------------------------------------------------------------------------------
if ! timeout 110 node "$src/tests/integ/router_abuse.mjs" --port "$port" --read-timeout-ms "$rto" > "$tmp/node.out" 2>&1; then
    cat "$tmp/node.out"
    fail "raw-socket abuse (router_abuse.mjs)"
else
    echo "ok: raw sockets: $(grep -c '^ok:' "$tmp/node.out") cases"
fi

# ---- still alive and correct --------------------------------------------------------------------
kill -0 "$rpid" 2>/dev/null || fail "the router process $rpid is gone"
c=$(call ref1 "$U/v1/completions" "${JSON[@]}" -d "$ref")
expect "normal request after the abuse" "$c $(jb ref1 '.choices[0].text')" "200 $reftext"
c=$(call ready "$U/ready")
expect "/ready after the abuse" "$c" 200
curl -s --max-time 5 "$U/metrics" > "$tmp/metrics.txt"
for l in header_bytes body_bytes read_timeout bad_request; do
    v=$(awk -v n="afd_router_http_limit_total{limit=\"$l\"}" '$1 == n { print $2 }' "$tmp/metrics.txt")
    [[ $v =~ ^[0-9]+$ ]] && ((v > 0)) || fail "afd_router_http_limit_total{limit=\"$l\"} is '$v' after the abuse"
done
if grep -h '"level":"error"' "$S"/*.log | grep -v 'ucx:' | head -3 | grep .; then
    fail "error lines in the logs"
fi
# 501 (gzip) and 505 (HTTP/9.9) are answers; anything else of 5xx is the router failing
five=$(jq -Rr 'fromjson? | select(.msg | startswith("http: ")) | .msg' "$S/router.log" |
    grep -v '^http: GET /ready ' | grep -cE ' 50[0234] ')
expect "500/502/503/504 answers in the router's access log" "$five" 0
if ((nfail)); then
    echo "test_router_abuse: $nfail failure(s)"
    exit 1
fi
echo "test_router_abuse: all checks passed"
