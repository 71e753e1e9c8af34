#!/usr/bin/env bash
# checker.sh: greedy answers against a reference, for the multi-host test.
#
#   checker.sh ref  URL MODEL DIR          takes the reference answer of every fixed prompt into
#                                          DIR/ref-K (exits 1 naming the prompt on a failure)
#   checker.sh loop URL MODEL DIR STOP     until the file STOP exists: one request a second,
#                                          the prompts in turn, one line per answer appended
#                                          to DIR/check.log:
#                                          START_MS END_MS K VERDICT HTTP DETAIL (epoch ms)
#
# The prompts are chat and completions requests at temperature 0 with a fixed max_tokens, so
# the answer is a function of the prompt alone: the same text on any decode instance, batched
# or not (batch invariance). An answer is summed up as [text, finish_reason, completion_tokens].
# Verdicts: ok (exactly the reference), clean (HTTP 429/500/503 with an OpenAI error object),
# wrong (a 200 with another answer), bad (any other status or body), hang (no answer within
# the time limit), conn (no connection). Only ok and clean are acceptable.
set -uo pipefail
mode=$1 url=$2 model=$3 dir=$4
limit=${MH_CHECK_TIMEOUT:-15}

prompt() { # K -> "PATH BODY"
    case $1 in
    0) echo "/v1/chat/completions" \
        '{"model":"'"$model"'","messages":[{"role":"user","content":"Hello! Who are you?"}],"max_tokens":12,"temperature":0}' ;;
    1) echo "/v1/completions" \
        '{"model":"'"$model"'","prompt":"The capital of France is","max_tokens":10,"temperature":0}' ;;
    2) echo "/v1/chat/completions" \
        '{"model":"'"$model"'","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Count from one to five."}],"max_tokens":14,"temperature":0}' ;;
    esac
}
n_prompts=3

ask() { # K -> sets code, body, crc (globals)
    local path req
    read -r path req <<<"$(prompt "$1")"
    code=$(curl -sS --max-time "$limit" -o "$dir/body.$1" -w '%{http_code}' "$url$path" \
        -H 'Content-Type: application/json' -d "$req" 2>"$dir/curl.$1")
    crc=$?
    body=$(cat "$dir/body.$1" 2>/dev/null)
}

summary() { # answer JSON on stdin -> one line
    jq -ec '[.choices[0].message.content // .choices[0].text, .choices[0].finish_reason,
             .usage.completion_tokens]' 2>/dev/null
}

case $mode in
ref)
    for ((k = 0; k < n_prompts; k++)); do
        ask $k
        if ((crc != 0)) || [[ $code != 200 ]]; then
            echo "checker: reference of prompt $k: curl $crc, HTTP $code: $body $(cat "$dir/curl.$k")"
            exit 1
        fi
        summary <<<"$body" > "$dir/ref-$k" || { echo "checker: prompt $k: no answer in $body"; exit 1; }
    done
    ;;
loop)
    stop=$5
    k=0
    while [[ ! -e $stop ]]; do
        t0=$(date +%s%3N)
        ask $k
        if ((crc == 28)); then
            verdict=hang detail="no answer within ${limit}s"
        elif ((crc != 0)); then
            verdict=conn detail="curl $crc: $(head -c 200 "$dir/curl.$k")"
        elif [[ $code == 200 ]]; then
            got=$(summary <<<"$body")
            if [[ $got == "$(cat "$dir/ref-$k")" ]]; then
                verdict=ok detail=""
            else
                verdict=wrong detail="got ${got:-$body}, want $(cat "$dir/ref-$k")"
            fi
        elif [[ $code =~ ^(429|500|503)$ ]] && jq -e '.error.message | strings' <<<"$body" >/dev/null 2>&1; then
            verdict=clean detail=$(jq -c '.error.message' <<<"$body")
        else
            verdict=bad detail=$(head -c 300 <<<"$body")
        fi
        echo "$t0 $(date +%s%3N) $k $verdict $code $detail" >> "$dir/check.log"
        k=$(((k + 1) % n_prompts))
        # one request a second, from its start
        left=$((1000 - ($(date +%s%3N) - t0)))
        ((left > 0)) && sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
    done
    ;;
*)
    echo "checker: unknown mode $mode"
    exit 2
    ;;
esac
exit 0
