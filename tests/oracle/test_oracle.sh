#!/usr/bin/env bash
# The numpy oracle against afd-run: for several generated checkpoints (tiny BF16 and FP8; a
# 6-layer model with MoE and dense layers in BF16, FP8 and mixed FP8, with and without
# norm_expert_weight, sharded and flat; odd sizes with partial FP8 blocks and 2 K/V heads), afd-run --exact's logits of every position must be
# within relative L2 1e-3 of tests/oracle/step3_ref.py's float64 forward pass.
# Usage: tests/oracle/test_oracle.sh BUILD_DIR      (exit 0 pass, 77 skip, else fail)
set -uo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
tol=1e-3

if ! "$py" -c 'import numpy' 2>/dev/null; then
    echo "skip: $py cannot import numpy (apt-get install python3-numpy)"
    exit 77
fi
if [[ ! -x $build/bin/afd-run ]]; then
    echo "afd-run not built"
    exit 77
fi
if [[ ! -x $build/bin/afd-mkmodel ]]; then
    echo "FAIL: $build/bin/afd-mkmodel not built"
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 20 ids: BOS first, repeats, high ids among the added tokens (placeholders, <|EOT|>, last id).
tokens=0,17,4242,99,128000,7,7,7,100000,5,128805,128814,3,1000,20000,64000,90000,128001,128797,12

cat >"$tmp/six.json" <<'EOF'
{"hidden_size": 256, "num_hidden_layers": 6, "moe_layers_enum": "1,2,4",
 "num_attention_heads": 8, "head_dim": 64, "share_q_dim": 256, "intermediate_size": 512,
 "moe_num_experts": 16, "moe_top_k": 3, "moe_intermediate_size": 256, "share_expert_dim": 256}
EOF
sed 's/"moe_top_k": 3/"moe_top_k": 4, "norm_expert_weight": true/' "$tmp/six.json" \
    >"$tmp/six-norm.json"
# dimensions that are not multiples of 128 (partial FP8 blocks at the edges), 2 K/V heads
cat >"$tmp/odd.json" <<'EOF'
{"hidden_size": 320, "num_hidden_layers": 3, "moe_layers_enum": "1", "num_attention_heads": 6,
 "num_attention_groups": 2, "head_dim": 64, "share_q_dim": 192, "intermediate_size": 448,
 "moe_num_experts": 12, "moe_top_k": 2, "moe_intermediate_size": 192, "share_expert_dim": 320}
EOF

# name | afd-mkmodel arguments
cases=(
    "tiny-bf16|--preset tiny --seed 11"
    "tiny-fp8|--preset tiny --dtype fp8 --seed 12"
    "six-bf16|--config $tmp/six.json --seed 13"
    "six-bf16-norm-flat|--config $tmp/six-norm.json --flat --seed 14"
    "six-fp8-norm-sharded|--config $tmp/six-norm.json --dtype fp8 --shard-size 8mb --seed 15"
    "six-mixed|--config $tmp/six.json --mixed --seed 16"
    "odd-fp8|--config $tmp/odd.json --dtype fp8 --seed 17"
)

pass=0 failed=0
for c in "${cases[@]}"; do
    name=${c%%|*}
    read -r -a args <<<"${c#*|}"
    m=$tmp/$name
    echo "== $name: afd-mkmodel ${args[*]}"
    if ! "$build/bin/afd-mkmodel" "${args[@]}" --no-tokenizer --quiet --out "$m"; then
        echo "FAIL $name: afd-mkmodel failed"
        failed=$((failed + 1))
        continue
    fi
    if ! "$build/bin/afd-run" --model "$m" --tokens "$tokens" --logits "$m/afd.f32" --exact \
        2>"$m/run.err"; then
        echo "FAIL $name: afd-run failed:"
        tail -n 5 "$m/run.err"
        failed=$((failed + 1))
        continue
    fi
    if "$py" "$here/step3_ref.py" --model "$m" --tokens "$tokens" --compare "$m/afd.f32" \
        --tol "$tol" >"$m/cmp.txt" 2>&1; then
        echo "ok   $name: $(tail -n 1 "$m/cmp.txt")"
        pass=$((pass + 1))
    else
        echo "FAIL $name:"
        cat "$m/cmp.txt"
        failed=$((failed + 1))
    fi
    rm -f "$m"/*.safetensors # keep the disk footprint small
done
echo "oracle: $pass passed, $failed failed"
((failed == 0))
