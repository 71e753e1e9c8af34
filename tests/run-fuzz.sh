#!/usr/bin/env bash
# Runs each libFuzzer target briefly (part of `make test`): tests/run-fuzz.sh SECONDS TARGET...
# Each target starts from its seed corpus tests/fuzz/corpus/NAME (read-only; new inputs go to a
# scratch dir) with its dictionary tests/fuzz/NAME.dict when present. A crash, leak or timeout
# fails the run and leaves the reproducer in build-fuzz/artifacts/.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:?seconds}
shift
mkdir -p build-fuzz/artifacts
fail=0
for t in "$@"; do
    bin=build-fuzz/fuzz_$t
    scratch=$(mktemp -d)
    args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0
          -artifact_prefix=build-fuzz/artifacts/"$t"-)
    [[ -f tests/fuzz/$t.dict ]] && args+=(-dict=tests/fuzz/"$t".dict)
    start=$(date +%s)
    if out=$(timeout -k 5 $((secs + 60)) "$bin" "${args[@]}" "$scratch" tests/fuzz/corpus/"$t" 2>&1); then
        runs=$(grep -oE '#[0-9]+' <<<"$out" | tail -n 1)
        printf 'PASS fuzz/%-44s %4ss  %s runs\n' "$t" "$(($(date +%s) - start))" "${runs#\#}"
    else
        fail=1
        printf 'FAIL fuzz/%s\n' "$t"
        tail -n 40 <<<"$out" | sed 's/^/    /'
    fi
    rm -rf "$scratch"
done
exit $fail
