#!/usr/bin/env bash
# afd-bench profile: the afd-profile v1 file on the tiny model (format, sample counts, positive
# times that grow with batch, context, tokens and bytes), --shards, --kv-mem/--kv-dtype, the
# link through xport and raw UCP, --link-from, --no-link, afd-plan making a plan from it, and
# clear errors on bad arguments.
# Usage: tests/integ/test_bench_profile.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: test_bench_profile.sh BUILD_DIR}
bench=$build/bin/afd-bench
plan=$build/bin/afd-plan
mk=$build/bin/afd-mkmodel
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export UCX_NET_DEVICES=lo
pass=0 failed=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check "what" command...
    local what=$1; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# jqt "what" FILE FILTER: the jq filter must print true
jqt() {
    local what=$1 file=$2 filter=$3
    if [[ $(jq -e "$filter" "$file" 2>&1) == true ]]; then ok "$what"; else
        bad "$what: $filter gave $(jq -c "$filter" "$file" 2>&1 | head -c 300)"
    fi
}
# fails "what" EXIT NEEDLE command...: exit status and a stderr line mentioning NEEDLE
fails() {
    local what=$1 want=$2 needle=$3; shift 3
    timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [[ $rc == "$want" ]] && grep -qF -- "$needle" "$tmp/err"; then ok "$what"; else
        bad "$what: exit $rc (want $want), stderr: $(head -c 300 "$tmp/err")"
    fi
}

last() { tail -n 2 "$1" | tr '\n' ' ' | head -c 300; } # the end of a log, on one line

for b in "$bench" "$plan" "$mk"; do
    [[ -x $b ]] || { echo "FAIL: $b not built"; exit 1; }
done
command -v jq >/dev/null || { echo "jq not installed (deploy/setup-deps.sh installs it)"; exit 77; }
"$mk" --quiet --no-tokenizer --preset tiny --out "$tmp/tiny" || { echo "FAIL: afd-mkmodel"; exit 1; }

# ---- --quick on the tiny model -----------------------------------------------------------------
p=$tmp/p.json
start=$SECONDS
timeout 120 "$bench" profile --model "$tmp/tiny" --quick --out "$p" >"$tmp/run.out" 2>&1
rc=$?
took=$((SECONDS - start))
check "profile --quick exits 0 (exit $rc; $(last "$tmp/run.out"))" test $rc -eq 0
check "profile --quick took ${took}s (target < 20 s, limit 60 s)" test $took -lt 60
((took < 20)) || echo "note: --quick took ${took}s; the machine may be busy"
tail -n 1 "$tmp/run.out" >"$tmp/summary.json"
jqt "summary line: bench, file, samples" "$tmp/summary.json" \
    ".bench == \"profile\" and .file == \"$p\" and .attention_samples == 6 and .ffn_samples == 3"
jqt "summary line: fitted coefficients" "$tmp/summary.json" \
    '(.attention_fit_us | length) == 3 and (.ffn_fit_us | length) == 2 and .link_gbps >= 0'
jqt "format and version" "$p" '.format == "afd-profile" and .version == 1'
jqt "model and hardware labels" "$p" '.model == "tiny" and (.hardware | length) > 0'
jqt "attention: 3 batches x 2 contexts" "$p" \
    '[.attention.samples[] | [.batch, .context]] | sort == [[1,256],[1,1024],[4,256],[4,1024],[8,256],[8,1024]]'
jqt "ffn: 3 token counts, 1 shard" "$p" '[.ffn.samples[].tokens] == [1,16,256] and .ffn.shards == 1'
jqt "link: 4 sizes, increasing" "$p" \
    '[.link.samples[].bytes] | length == 4 and . == sort and .[0] > 0'
jqt "link measured through afd's transport" "$p" '.link.source | test("proto/xport.h")'
jqt "every time > 0" "$p" \
    '[.attention.samples[].us, .ffn.samples[].us, .link.samples[].us] | all(. > 0)'
# Growth is judged on each point's fastest run (us_min): on a shared 2-core machine a run can
# lose its core for a whole time slice, which can move a median of 7 runs but not the minimum.
jqt "largest attention point slower than the smallest (fastest runs)" "$p" \
    '.attention.samples | (map(select(.batch == 8 and .context == 1024))[0].us_min) > (map(select(.batch == 1 and .context == 256))[0].us_min)'
jqt "ffn: 256 tokens slower than 1 (fastest runs)" "$p" \
    '.ffn.samples | (map(select(.tokens == 256))[0].us_min) > (map(select(.tokens == 1))[0].us_min)'
jqt "medians within each point's fastest and slowest run" "$p" \
    '[.attention.samples[], .ffn.samples[] | .us_min <= .us and .us <= .us_max and .runs >= 7] | all'
jqt "kv capacity: 8 GiB / 1024 B per token (tiny, bf16)" "$p" \
    '.attention.kv_capacity_tokens == 8388608 and .attention.kv_bytes_per_token == 1024'
jqt "step overhead > 0 at the largest batch" "$p" \
    '.attention.step_overhead_us > 0 and .attention.step_overhead_batch == 8'
# tiny: hidden 128, top-3 of 8: A2F = 128 e4m3 + 4 scale + 3 x (4 weight + 2 id) + pad, F2A 256
jqt "wire bytes per token from proto/wire.h" "$p" \
    '.link.a2f_bytes_per_token > 150 and .link.a2f_bytes_per_token < 151 and .link.f2a_bytes_per_token > 256 and .link.f2a_bytes_per_token < 257'

# ---- afd-plan reads it --------------------------------------------------------------------------
"$plan" plan --model "$tmp/tiny" --profile "$p" --tpot-ms 50 --json >"$tmp/plan.json" 2>"$tmp/plan.err"
rc=$?
check "afd-plan plan --tpot-ms 50 on the profile exits 0 (exit $rc: $(head -c 300 "$tmp/plan.err"))" \
    test $rc -eq 0
jqt "plan: instances, micro-batches, batch" "$tmp/plan.json" \
    '.plan.attention_instances >= 1 and .plan.ffn_instances >= 1 and .plan.micro_batches >= 1 and .plan.batch_per_micro_batch >= 1'
jqt "plan: predicted TPOT within 50 ms, throughput > 0" "$tmp/plan.json" \
    '.predicted.tpot_ms <= 50 and .predicted.tokens_per_s > 0 and (.predicted.stage_us | has("attention"))'
jqt "plan: fits from every section" "$tmp/plan.json" \
    '.fits.attention.samples == 6 and .fits.ffn.samples == 3 and .fits.link.samples == 4'

# ---- options: smaller grids, shards, explicit link sizes, --link-from, --no-link ------------------
q=$tmp/q.json
timeout 120 "$bench" profile --model "$tmp/tiny" --quick --batches 1,2 --contexts 8,16 --tokens 1,2 \
    --shards 2 --kv-mem 1mb --kv-dtype fp8 --link-bytes 64,8388608 --link-via raw --out "$q" \
    >"$tmp/q.out" 2>&1
check "profile with explicit lists exits 0 ($(last "$tmp/q.out"))" test $? -eq 0
jqt "explicit lists: 4 attention, 2 ffn, 2 link samples" "$q" \
    '(.attention.samples | length) == 4 and (.ffn.samples | length) == 2 and [.link.samples[].bytes] == [64, 8388608]'
jqt "--shards 2 recorded" "$q" '.ffn.shards == 2'
# fp8 cache: 4 layers x 2 x (64 + 4-byte scale) per position; 1 MiB of 16-position blocks
jqt "--kv-mem 1mb with fp8: capacity from the pool's blocks" "$q" \
    '.attention.kv_bytes_per_token == 544 and .attention.kv_capacity_tokens == 1920'
jqt "--link-via raw: 8 MiB transfer slower than 64 bytes" "$q" \
    '.link.samples[1].us > .link.samples[0].us and (.link.source | test("link_raw"))'
r=$tmp/r.json
timeout 120 "$bench" profile --model "$tmp/tiny" --quick --batches 1,2 --contexts 8,16 --tokens 1,2 \
    --link-from "$q" --out "$r" >"$tmp/r.out" 2>&1
check "--link-from exits 0 ($(last "$tmp/r.out"))" test $? -eq 0
jqt "--link-from copies the link samples" "$r" "[.link.samples[] | [.bytes, .us]] == $(jq -c '[.link.samples[] | [.bytes, .us]]' "$q")"
jqt "--link-from names its source" "$r" ".link.source | startswith(\"from $q\")"
n=$tmp/n.json
timeout 120 "$bench" profile --model "$tmp/tiny" --quick --batches 1,2 --contexts 8,16 --tokens 1,2 \
    --no-link --out "$n" >"$tmp/n.out" 2>&1
check "--no-link exits 0" test $? -eq 0
jqt "--no-link: no link samples, wire bytes kept" "$n" \
    '(.link | has("samples") | not) and .link.a2f_bytes_per_token > 0'

# ---- bad arguments --------------------------------------------------------------------------------
fails "no --model" 2 "--model DIR is required" "$bench" profile --quick
fails "unknown option" 2 "unrecognized option" "$bench" profile --model "$tmp/tiny" --bogus
fails "--batches 0" 2 "--batches '0'" "$bench" profile --model "$tmp/tiny" --batches 0
fails "--batches with junk" 2 "--batches '1,x'" "$bench" profile --model "$tmp/tiny" --batches 1,x
fails "--tokens empty" 2 "--tokens" "$bench" profile --model "$tmp/tiny" --tokens ""
fails "--kv-mem junk" 2 "--kv-mem '8 parsecs'" "$bench" profile --model "$tmp/tiny" --kv-mem "8 parsecs"
fails "--kv-dtype junk" 2 "--kv-dtype 'int4'" "$bench" profile --model "$tmp/tiny" --kv-dtype int4
fails "--shards 0" 2 "--shards '0'" "$bench" profile --model "$tmp/tiny" --shards 0
fails "--link-via junk" 2 "--link-via 'tcp'" "$bench" profile --model "$tmp/tiny" --link-via tcp
fails "--link-from with --no-link" 2 "exclude each other" \
    "$bench" profile --model "$tmp/tiny" --link-from "$q" --no-link
fails "stray argument" 2 "unexpected argument 'extra'" "$bench" profile --model "$tmp/tiny" extra
fails "missing model dir" 1 "--model $tmp/nope" "$bench" profile --model "$tmp/nope" --quick
fails "context beyond max_position_embedding" 1 "max_position_embedding" \
    "$bench" profile --model "$tmp/tiny" --quick --contexts 65536 --no-link
fails "--shards beyond the experts" 1 "--shards 9" \
    "$bench" profile --model "$tmp/tiny" --quick --shards 9 --no-link
echo '{"format": "afd-profile", "link": {"samples": [{"bytes": 10, "us": -1}]}}' >"$tmp/badlink.json"
fails "--link-from with a negative time" 1 "link.samples[0]" \
    "$bench" profile --model "$tmp/tiny" --quick --batches 1,2 --contexts 8,16 --tokens 1,2 \
    --link-from "$tmp/badlink.json" --out "$tmp/x.json"
echo '{"format": "something-else"}' >"$tmp/notprof.json"
fails "--link-from a file of another format" 1 "\"afd-profile\"" \
    "$bench" profile --model "$tmp/tiny" --quick --batches 1,2 --contexts 8,16 --tokens 1,2 \
    --link-from "$tmp/notprof.json" --out "$tmp/x.json"
fails "--out in a missing directory" 1 "cannot write" \
    "$bench" profile --model "$tmp/tiny" --quick --batches 1,2 --contexts 8,16 --tokens 1,2 \
    --no-link --out "$tmp/no/such/dir/p.json"
"$bench" profile --help >"$tmp/help" 2>&1
check "--help exits 0 and documents the lists" grep -q -- "--contexts LIST" "$tmp/help"

echo "$pass passed, $failed failed"
((failed == 0))
