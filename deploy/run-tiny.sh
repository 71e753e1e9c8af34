#!/usr/bin/env bash
# `make run` until the local cluster exists: generate the tiny Step-3 model (once) and run a
# short greedy generation with the single-process engine.
#   deploy/run-tiny.sh [BUILD_DIR]      (env: MODEL=DIR to use another checkpoint)
set -euo pipefail
build=${1:-build}
model=${MODEL:-$build/models/tiny}
if [[ ! -f $model/config.json ]]; then
    echo "run: generating the tiny model into $model"
    "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force
fi
prompt="0,100,2000,30000,128000"
echo "run: afd-run --model $model --prompt-tokens $prompt --max-tokens 16"
out=$("$build/bin/afd-run" --model "$model" --prompt-tokens "$prompt" --max-tokens 16)
echo "run: generated token ids: $out"
