#!/usr/bin/env bash
# Runs every unit-test binary under $1/tests (default build), each in its own process with a
# time limit. Criterion forks one process per test inside each binary as well.
# Prints one line per binary and a summary; exits 1 if anything failed or timed out.
set -uo pipefail
build=${1:-build}
export AFD_BUILD=$(cd "$build" && pwd) # tests that start daemons find them in $AFD_BUILD/bin
export AFD_SRC=$(cd "$(dirname "$0")/.." && pwd) # and the source tree (example configs)
limit=${AFD_TEST_TIMEOUT:-300}
export CRITERION_NO_EARLY_EXIT=1 ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mapfile -t bins < <(find "$build/tests" -type f -perm -u+x -name 'test_*' 2>/dev/null | sort)
if ((${#bins[@]} == 0)); then
    echo "run-unit: no test binaries under $build/tests" >&2
    exit 1
fi
fail=0
for b in "${bins[@]}"; do
    start=${EPOCHREALTIME/./}
    out=$(timeout -k 5 "$limit" "$b" -j2 2>&1)
    rc=$?
    us=$((${EPOCHREALTIME/./} - start))
    dur=$((us / 1000000)).$(((us / 100000) % 10))
    synth=$(grep -a 'Synthesis:' <<<"$out" | tail -1 | sed 's/.*Synthesis: //')
    # Criterion ignores what a sanitizer prints in a test's child process at exit (leaks):
    # any sanitizer report fails the binary.
    if ((rc == 0)) && grep -aqE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:' <<<"$out"; then
        rc=99
        synth="$synth; sanitizer report"
    fi
    if ((rc == 0)); then
        printf 'PASS %-48s %6ss  %s\n' "${b#"$build"/tests/}" "$dur" "$synth"
    else
        fail=1
        [[ $rc == 124 ]] && synth="TIMEOUT after ${limit}s"
        printf 'FAIL %-48s %6ss  %s (rc %d)\n' "${b#"$build"/tests/}" "$dur" "$synth" "$rc"
        tail -n 60 <<<"$out" | sed 's/^/    /'
    fi
done
if ((fail)); then
    echo "run-unit: FAILED"
    exit 1
fi
echo "run-unit: all ${#bins[@]} test binaries passed"
