#!/usr/bin/env bash
# attnd and afd-router under valgrind memcheck: real traffic, then SIGTERM; each must exit 0
# with no memory errors and no definite leaks (--error-exitcode). attnd: the daemon test of
# concurrent greedy sequences, cancel, a refusal and SIGTERM, with the attnd wrapped.
# Router: a cluster whose router is wrapped serves chat (JSON and streaming), a bad request and
# a client that disconnects mid-stream. Valgrind has no AVX-512: avx2 kernels (AFD_CPU_ISA).
set -uo pipefail
build=${1:?build dir}
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 77; }
tmp=$(mktemp -d /tmp/afd-vg-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$tmp/bin"
for b in afd-mkmodel ffnd afd-router; do ln -s "$build/bin/$b" "$tmp/bin/$b"; done
cat >"$tmp/bin/attnd" <<EOS
#!/bin/sh
exec valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    "$build/bin/attnd" "\$@" --lease-ms 300000
EOS
chmod +x "$tmp/bin/attnd"
export AFD_BUILD=$tmp AFD_CPU_ISA=avx2 UCX_NET_DEVICES=lo UCX_WARN_UNUSED_ENV_VARS=n \
    AFD_TEST_PEER_TIMEOUT_MS=30000
# (the handoff test is too slow under valgrind for CI: it runs under ASan in `make asan`)
for t in attnd/attnd/concurrent_greedy_sequences_equal_single_process; do
    bin=$build/tests/unit/attnd/test_attnd_remote
    out=$(timeout 600 "$bin" -j1 --filter "${t#attnd/}" 2>&1) || {
        grep -av '"level"' <<<"$out" | grep -v "UCX  WARN\|UCX  ERROR" | tail -30
        fail "${t#attnd/} with attnd under valgrind"
    }
    grep -aq 'Passing: 1 ' <<<"$out" || fail "${t#attnd/} did not run"
    echo "ok   ${t#attnd/} (attnd under valgrind: clean exit)"
done

# the router under valgrind
model=$build/models/tiny
[[ -f $model/config.json ]] || "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null
field() { sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p" "$tmp/$1.ports"; }
wait_file() { for _ in $(seq 600); do [[ -s $tmp/$1 ]] && return 0; sleep 0.1; done; fail "no $1"; }
"$build/bin/ffnd" --model "$model" --listen-port 0 --admin-port 0 --threads 1 \
    --port-file "$tmp/f.ports" --log-level warn > "$tmp/f.log" 2>&1 &
pids+=($!)
wait_file f.ports
"$build/bin/attnd" --model "$model" --ffn "127.0.0.1:$(field f data_port)" --listen-port 0 \
    --admin-port 0 --threads 1 --kv-mem 32mb --port-file "$tmp/a.ports" --log-level warn \
    > "$tmp/a.log" 2>&1 &
pids+=($!)
wait_file a.ports
valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
    "$build/bin/afd-router" --model "$model" --port 0 --attnd "127.0.0.1:$(field a data_port)" \
    --port-file "$tmp/r.ports" --log-level warn > "$tmp/r.log" 2>&1 &
rpid=$!; pids+=($rpid)
wait_file r.ports
url=http://127.0.0.1:$(field r data_port)
for _ in $(seq 300); do [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/ready") == 200 ]] && break; sleep 0.1; done
chat='{"model":"tiny","messages":[{"role":"user","content":"valgrind"}],"max_tokens":6,"temperature":0}'
code=$(curl -s -o "$tmp/out" -w '%{http_code}' --max-time 120 "$url/v1/chat/completions" \
    -H 'Content-Type: application/json' -d "$chat")
[[ $code == 200 ]] || fail "chat under valgrind: $code $(cat "$tmp/out")"
curl -sN --max-time 120 "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "${chat/\"temperature\":0/\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" > "$tmp/sse"
grep -q '\[DONE\]' "$tmp/sse" || fail "stream under valgrind"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 "$url/v1/chat/completions" \
    -H 'Content-Type: application/json' -d '{"model":')
[[ $code == 400 ]] || fail "bad JSON: $code"
timeout 2 curl -sN "$url/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":"x","max_tokens":2000,"stream":true,"ignore_eos":true}' >/dev/null
sleep 1
kill -TERM $rpid
wait $rpid; rc=$?
((rc == 0)) || { tail -30 "$tmp/r.log"; fail "afd-router under valgrind exited $rc"; }
echo "ok   afd-router under valgrind: chat, stream, bad request, disconnect, clean exit"
