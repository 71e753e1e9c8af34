#!/usr/bin/env bash
# Runs the script tests: tests/integ/*.sh and tests/oracle/*.sh, each given the build dir and
# a time limit. A script exits 0 (pass), 77 (skip, with its reason printed) or other (fail).
set -uo pipefail
build=$(cd "${1:-build}" && pwd)
limit=${AFD_TEST_TIMEOUT:-600}
cd "$(dirname "$0")/.."
fail=0 n=0
for t in tests/integ/*.sh tests/oracle/*.sh; do
    [[ -f $t ]] || continue
    n=$((n + 1))
    start=$(date +%s)
    out=$(timeout -k 5 "$limit" bash "$t" "$build" 2>&1)
    rc=$?
    dur=$(($(date +%s) - start))
    case $rc in
    0) printf 'PASS %-48s %4ss\n' "$t" "$dur" ;;
    77) printf 'SKIP %-48s %4ss  %s\n' "$t" "$dur" "$(tail -n 1 <<<"$out")" ;;
    *)
        fail=1
        [[ $rc == 124 ]] && echo "    TIMEOUT after ${limit}s"
        printf 'FAIL %-48s %4ss (rc %d)\n' "$t" "$dur" "$rc"
        tail -n 60 <<<"$out" | sed 's/^/    /'
        ;;
    esac
done
if ((fail)); then
    echo "run-integ: FAILED"
    exit 1
fi
echo "run-integ: all $n script tests done"
