#!/usr/bin/env bash
# ffnd under valgrind memcheck: the remote tests (answers, a garbage peer, a killed client)
# against daemons wrapped in valgrind, which must exit 0 after SIGTERM: no memory errors, no
# definite leaks. Valgrind has no AVX-512, so both sides use the avx2 kernels (AFD_CPU_ISA).
set -euo pipefail
build=${1:?build dir}
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
ln -s "$build/bin/afd-mkmodel" "$tmp/bin/afd-mkmodel"
cat >"$tmp/bin/ffnd" <<EOS
#!/bin/sh
exec valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    "$build/bin/ffnd" "\$@"
EOS
chmod +x "$tmp/bin/ffnd"
export AFD_BUILD=$tmp AFD_CPU_ISA=avx2 AFD_TEST_PEER_TIMEOUT_MS=15000 UCX_NET_DEVICES=lo
for t in one_shard_bitwise_equals_in_process garbage_peer_dropped_others_unaffected \
    killed_client_is_reaped_and_others_served; do
    out=$("$build/tests/unit/ffnd/test_ffnd_remote" -j1 --filter "ffnd/$t" 2>&1) || {
        grep -av "\"level\"" <<<"$out" | grep -v "UCX  WARN" | tail -40
        echo "FAIL: $t under valgrind"
        exit 1
    }
    grep -aq 'Passing: 1 ' <<<"$out" || { echo "FAIL: $t did not run"; exit 1; }
    echo "ok   $t (ffnd under valgrind: clean exit)"
done
