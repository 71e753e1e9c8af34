#!/usr/bin/env bash
# afd-plan: the JSON contracts of `cost`, `sparsity`, `plan` and `hardware`, the Step-3 paper's
# worked example through the CLI, a planner run whose optimum is known by hand, and clear
# errors with exit status 2 on bad input.  Usage: tests/integ/test_plan.sh BUILD_DIR
set -uo pipefail
build=$1
plan=$build/bin/afd-plan
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
        bad "$what: $filter on $(head -c 300 "$file")"
    fi
}
# fails "what" EXIT NEEDLE command...: exit status and a stderr line mentioning NEEDLE
fails() {
    local what=$1 want=$2 needle=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [[ $rc == "$want" ]] && grep -qF -- "$needle" "$tmp/err"; then ok "$what"; else
        bad "$what: exit $rc (want $want), stderr: $(head -c 300 "$tmp/err")"
    fi
}

[[ -x $plan ]] || { echo "FAIL: $plan not built"; exit 1; }
command -v jq >/dev/null || { echo "jq not installed (deploy/setup-deps.sh installs it)"; exit 77; }
cd "$root"

# ---- help ------------------------------------------------------------------------------------
"$plan" --help >"$tmp/help" 2>&1
check "--help exits 0" test $? -eq 0
check "--help names the commands and units" grep -q "USD per 1M decoded tokens" "$tmp/help"
for c in cost sparsity plan hardware; do
    "$plan" $c --help >"$tmp/h" 2>&1
    check "$c --help exits 0 and documents --json" grep -q -- "--json" "$tmp/h"
done

# ---- cost: the worked example ------------------------------------------------------------------
"$plan" cost --model models/step3 --context 8192 --json >"$tmp/cost.json"
check "cost --json exits 0" test $? -eq 0
jqt "cost: one object with the contract keys" "$tmp/cost.json" \
    '[.kv_bytes, .attn_flops, .linear_flops, .ffn_flops, .attn_intensity] | all(type == "number")'
jqt "Step-3 KV bytes at 8K = 8192 x 61 x 512" "$tmp/cost.json" '.kv_bytes == 255852544'
jqt "Step-3 attention FLOPs = 8192 x 61 x 2 x 64 x 512" "$tmp/cost.json" \
    '.attn_flops == 32749125632'
jqt "Step-3 linear FLOPs round to 2.07e10" "$tmp/cost.json" \
    '(.linear_flops / 1e8 | round) == 207'
jqt "Step-3 FFN FLOPs round to 5.33e10" "$tmp/cost.json" '(.ffn_flops / 1e8 | round) == 533'
jqt "Step-3 attention intensity 128" "$tmp/cost.json" '.attn_intensity == 128'
jqt "cost_usd_per_mtok has attention and ffn for each accelerator" "$tmp/cost.json" \
    '.cost_usd_per_mtok | (keys | sort) == ["910B","A800","H20","H800"] and
     ([.[] | (.attention | type) == "number" and (.ffn | type) == "number"] | all)'
jqt "Step-3 attention on H800 0.048 USD/1M (paper Table 6)" "$tmp/cost.json" \
    '(.cost_usd_per_mtok.H800.attention * 1000 | round) == 48'
jqt "best AFD: attention on H20, FFN on H800, 0.055 USD/1M" "$tmp/cost.json" \
    '.best_afd.attention_hw == "H20" and .best_afd.ffn_hw == "H800" and
     (.best_afd.usd_per_mtok * 1000 | round) == 55'

"$plan" cost --model models/deepseek-v3/config.json --context 8k --json >"$tmp/dsv3.json"
jqt "DSv3 at 8K: KV 2.88e8, attention 1.47e11 (paper Table 2)" "$tmp/dsv3.json" \
    '(.kv_bytes / 1e6 | round) == 288 and (.attn_flops / 1e9 | round) == 147'
jqt "DSv3 MLA intensity 512" "$tmp/dsv3.json" '.attn_intensity == 512'
"$plan" cost --model models/qwen3-235b-a22b --context 32768 --json >"$tmp/qwen.json"
jqt "Qwen3 MoE at 32K: KV 3.15e9, AFD 0.193 (paper Table 3, Obs. 1)" "$tmp/qwen.json" \
    '(.kv_bytes / 1e7 | round) == 315 and (.best_afd.usd_per_mtok * 1000 | round) == 193'
"$plan" cost --model models/kimi-k2 --json >"$tmp/kimi.json"
jqt "Kimi K2 at the default 8K: attention 7.37e10" "$tmp/kimi.json" \
    '.context == 8192 and (.attn_flops / 1e8 | round) == 737'

"$plan" cost --model models/step3 --context 8k >"$tmp/cost.txt"
check "cost text names the best AFD pairing" grep -q "best AFD: attention on H20 + FFN on H800" \
    "$tmp/cost.txt"

# ---- sparsity ----------------------------------------------------------------------------------
"$plan" sparsity --model models/step3 --json >"$tmp/sp.json"
check "sparsity --json exits 0" test $? -eq 0
jqt "sparsity: contract keys" "$tmp/sp.json" \
    '(.model_sparsity | type) == "number" and ([.min_sparsity, .b_dense, .b_moe] |
     all(keys | sort == ["910B","A800","H20","H800"]))'
jqt "Step-3 sparsity (3+1)/(48+1)" "$tmp/sp.json" '(.model_sparsity * 1e4 | round) == 816'
jqt "min sparsity 0.058/0.007/0.031/0.034 (paper Table 7)" "$tmp/sp.json" \
    '[.min_sparsity.H800, .min_sparsity.H20, .min_sparsity.A800, .min_sparsity["910B"]] |
     map(. * 1000 | round) == [58, 7, 31, 34]'
jqt "B_dense = roofline / 2 rounded up; B_MoE = B_dense / S" "$tmp/sp.json" \
    '.b_dense.H800 == 296 and .b_dense.H20 == 37 and .b_moe.H800 == 3621'
jqt "11.1 ms budget" "$tmp/sp.json" '(.net_budget_ms * 100 | round) == 1111'
"$plan" sparsity --model models/deepseek-v3 --json >"$tmp/sp2.json"
jqt "DSv3 is too sparse for H800 and would need 14 experts (paper §5.4)" "$tmp/sp2.json" \
    '.fits.H800 == false and .min_top_k.H800 == 14'
"$plan" sparsity --model models/step3 --tpot-ms 100 --json >"$tmp/sp3.json"
jqt "a 100 ms TPOT halves the minimum sparsity" "$tmp/sp3.json" \
    '(.min_sparsity.H800 * 10000 | round) == 291'

# ---- hardware ----------------------------------------------------------------------------------
cat >"$tmp/hw.json" <<'JSON'
{"accelerators": [{"name": "L20", "usd_per_hour": 0.9, "bf16_flops": 1.19e14,
  "fp8_flops": 2.39e14, "mem_bytes_per_s": 8.64e11, "net_bytes_per_s": 1e11}]}
JSON
"$plan" hardware --hardware "$tmp/hw.json" --json >"$tmp/hw.out"
jqt "hardware file adds a row" "$tmp/hw.out" '(keys | length) == 5 and (.L20.roofline | round) == 277'
"$plan" cost --model models/step3 --hardware "$tmp/hw.json" --json >"$tmp/cost2.json"
jqt "an added accelerator is costed" "$tmp/cost2.json" '.cost_usd_per_mtok.L20.attention > 0'

# ---- plan --------------------------------------------------------------------------------------
"$plan" plan --model models/step3 --profile bench/profiles/example.json --json >"$tmp/plan.json"
check "plan --json on the example profile exits 0" test $? -eq 0
jqt "plan: contract keys" "$tmp/plan.json" \
    '[.plan.attention_instances, .plan.ffn_instances, .plan.micro_batches,
      .plan.batch_per_micro_batch, .predicted.tpot_ms, .predicted.tokens_per_s,
      .predicted.tokens_per_s_per_machine] | all(type == "number" and . > 0)'
jqt "plan meets the 50 ms target" "$tmp/plan.json" '.predicted.tpot_ms <= 50'
jqt "plan: total batch = A x m x b" "$tmp/plan.json" \
    '.plan.total_batch == .plan.attention_instances * .plan.micro_batches *
                          .plan.batch_per_micro_batch'

cat >"$tmp/model.json" <<'JSON'
{"model_type": "llama", "hidden_size": 1024, "num_hidden_layers": 10,
 "num_attention_heads": 8, "intermediate_size": 4096}
JSON
# attention 10 + b us, FFN 20 + 0.5 N us, link 1 + 1e-4 bytes us, 1000 / 2000 bytes per token;
# tests/unit/plan/test_planner.c derives the optimum by hand: 2A1F, m = 3, b = 313, 9.99 ms.
cat >"$tmp/profile.json" <<'JSON'
{"format": "afd-profile", "version": 1,
 "attention": {"samples": [{"batch": 1, "context": 1000, "us": 11},
   {"batch": 100, "context": 1000, "us": 110}, {"batch": 100, "context": 4000, "us": 110},
   {"batch": 400, "context": 2000, "us": 410}, {"batch": 800, "context": 8000, "us": 810}]},
 "ffn": {"samples": [{"tokens": 10, "us": 25}, {"tokens": 100, "us": 70},
   {"tokens": 1000, "us": 520}, {"tokens": 2000, "us": 1020}]},
 "link": {"samples": [{"bytes": 1000, "us": 1.1}, {"bytes": 100000, "us": 11},
   {"bytes": 1000000, "us": 101}, {"bytes": 10000000, "us": 1001}],
   "a2f_bytes_per_token": 1000, "f2a_bytes_per_token": 2000}}
JSON
"$plan" plan --model "$tmp/model.json" --profile "$tmp/profile.json" --tpot-ms 10.001 \
    --max-attn 2 --max-ffn 2 --max-micro 4 --context 4096 --json >"$tmp/toy.json"
jqt "synthetic profile: the hand-derived optimum 2A1F, 3 x 313" "$tmp/toy.json" \
    '.plan.attention_instances == 2 and .plan.ffn_instances == 1 and
     .plan.micro_batches == 3 and .plan.batch_per_micro_batch == 313 and
     (.predicted.tpot_ms * 1000 | round) == 9990 and .predicted.bottleneck == "ffn"'
"$plan" plan --model "$tmp/model.json" --profile "$tmp/profile.json" --tpot-ms 10.001 \
    --max-attn 2 --max-ffn 2 --max-micro 4 >"$tmp/toy.txt"
check "plan text output" grep -q "plan: 2A1F, 3 micro-batches of 313 sequences" "$tmp/toy.txt"
fails "an impossible TPOT exits 1 and explains" 1 "no layout meets TPOT" \
    "$plan" plan --model "$tmp/model.json" --profile "$tmp/profile.json" --tpot-ms 0.1

# ---- bad input ---------------------------------------------------------------------------------
fails "missing --model" 2 "--model" "$plan" cost --context 8192
fails "missing model file named" 2 "$tmp/nope.json" "$plan" cost --model "$tmp/nope.json"
echo '{"hidden_size": 8,' >"$tmp/broken.json"
fails "broken config JSON" 2 "invalid JSON" "$plan" cost --model "$tmp/broken.json"
echo '{"hidden_size": "big", "num_hidden_layers": 2, "num_attention_heads": 2}' >"$tmp/t.json"
fails "wrong key type named" 2 "hidden_size" "$plan" sparsity --model "$tmp/t.json"
fails "bad --context" 2 "--context" "$plan" cost --model models/step3 --context abc
fails "unknown option" 2 "usage" "$plan" cost --model models/step3 --bogus
fails "unknown command" 2 "unknown command" "$plan" frobnicate
fails "plan needs --profile" 2 "--profile" "$plan" plan --model models/step3
echo '{"format": "afd-profile", "version": 1}' >"$tmp/p.json"
fails "profile without sections" 2 "attention" "$plan" plan --model models/step3 --profile \
    "$tmp/p.json"
fails "bad --objective" 2 "--objective" "$plan" plan --model models/step3 --profile \
    bench/profiles/example.json --objective speed
fails "bad hardware file" 2 "accelerators" "$plan" hardware --hardware "$tmp/p.json"

echo "$pass passed, $failed failed"
((failed == 0))
