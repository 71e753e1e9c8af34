#!/usr/bin/env bash
# afd-run end to end on a generated tiny model: determinism, batch invariance (a prompt decodes
# to the same tokens alone or beside others; logits are bit-identical whatever the prefill chunk
# size), the logits file contract, --stats sanity, and clean errors on bad input.
set -euo pipefail
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=$build/bin/afd-run
"$build/bin/afd-mkmodel" --preset tiny --out "$tmp/m" --seed 7 >/dev/null 2>&1
m=$tmp/m
fail() { echo "FAIL: $*"; exit 1; }

# 1. greedy generation is deterministic and has the requested length
a=$("$run" --model "$m" --prompt-tokens 0,5,6,7 --max-tokens 12 --ignore-eos 2>/dev/null)
b=$("$run" --model "$m" --prompt-tokens 0,5,6,7 --max-tokens 12 --ignore-eos 2>/dev/null)
[[ $a == "$b" ]] || fail "greedy output differs between runs: $a vs $b"
[[ $(tr ',' '\n' <<<"$a" | wc -l) == 12 ]] || fail "expected 12 tokens, got: $a"

# 2. batch invariance: same prompt alone and among others, bf16 and fp8 KV
for kv in bf16 fp8; do
    alone=$("$run" --model "$m" --kv-dtype $kv --prompt-tokens 0,5,6,7 --max-tokens 10 \
        --ignore-eos 2>/dev/null)
    mixed=$("$run" --model "$m" --kv-dtype $kv --prompt-tokens 0,9,9,9,9,9,9,9,9,9,9 \
        --prompt-tokens 0,5,6,7 --prompt-tokens 0,128000,3 --max-tokens 10 --ignore-eos \
        2>/dev/null | sed -n 2p)
    [[ $alone == "$mixed" ]] || fail "kv $kv: alone '$alone' != in batch '$mixed'"
done

# 3. logits file: size n*vocab*4; chunked prefill is bit-identical to one pass
ids=0,17,4242,99,128000,7,7,7,100000,5
"$run" --model "$m" --tokens $ids --logits "$tmp/l1" 2>/dev/null
"$run" --model "$m" --tokens $ids --logits "$tmp/l3" --chunk 3 2>/dev/null
size=$(stat -c %s "$tmp/l1")
[[ $size == $((10 * 128815 * 4)) ]] || fail "logits file is $size bytes"
cmp -s "$tmp/l1" "$tmp/l3" || fail "logits differ between --chunk 3 and one pass"
"$run" --model "$m" --tokens $ids --logits "$tmp/le" --exact 2>/dev/null
cmp -s "$tmp/l1" "$tmp/le" && fail "--exact gave bit-identical logits to the FP8 path"

# 4. --stats: residual RMS finite and in a sane range at every layer
stats=$("$run" --model "$m" --tokens $ids --logits /dev/null --stats 2>&1 >/dev/null |
    grep layer_rms)
/usr/bin/python3 - "$stats" <<'PY' || fail "layer RMS out of range: $stats"
import json, math, sys
rms = json.loads(sys.argv[1])["layer_rms"]
assert all(math.isfinite(r) and 0.05 < r < 50 for r in rms), rms
PY

# 5. bad input: clear errors, non-zero exit
expect_err() {
    local want=$1; shift
    if out=$("$run" "$@" 2>&1); then fail "accepted: $*"; fi
    grep -q -- "$want" <<<"$out" || fail "'$*' said: $out (wanted '$want')"
}
expect_err "bad token id" --model "$m" --tokens 0,128815 --logits /dev/null
expect_err "bad token id" --model "$m" --tokens 0,x --logits /dev/null
expect_err "need --model" --tokens 1
expect_err "config.json" --model "$tmp/nope" --tokens 1 --logits /dev/null
expect_err "kv-dtype" --model "$m" --kv-dtype int4 --tokens 1
echo "afd-run: all checks passed"
