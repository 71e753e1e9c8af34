#!/usr/bin/env bash
# afd-router over HTTPS (tls_cert / tls_key from its config): a self-signed certificate made
# here; /health and /v1/models answer over TLS; a plain-HTTP client on the TLS port gets no
# answer; an unreadable key stops the start with a message naming the file.
set -uo pipefail
build=$1
command -v openssl >/dev/null || { echo "skip: openssl CLI missing"; exit 77; }
model=$build/models/tiny
[[ -f $model/config.json ]] || "$build/bin/afd-mkmodel" --preset tiny --out "$model" --force >/dev/null
dir=$(mktemp -d /tmp/afd-tls-XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && { kill -KILL "$pid" && wait "$pid"; } 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; cat "$dir/r.log" 2>/dev/null | tail -3; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/k.pem" -out "$dir/c.pem" -days 1 \
    -subj /CN=localhost 2>/dev/null || fail "openssl req"
printf '{"model": "%s", "port": 0, "tls_cert": "%s", "tls_key": "%s", "port_file": "%s", "log_level": "warn"}\n' \
    "$model" "$dir/c.pem" "$dir/k.pem" "$dir/r.ports" > "$dir/router.json"
"$build/bin/afd-router" --config "$dir/router.json" > "$dir/r.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [[ -s $dir/r.ports ]] && break; sleep 0.1; done
port=$(sed -n 's/.*"data_port": *\([0-9]*\).*/\1/p' "$dir/r.ports")
[[ -n $port ]] || fail "the router did not start"
[[ $(curl -sk --max-time 5 "https://127.0.0.1:$port/health") == ok ]] || fail "/health over TLS"
curl -sk --max-time 5 "https://127.0.0.1:$port/v1/models" | grep -q '"id":"tiny"' || fail "/v1/models over TLS"
out=$(curl -s --max-time 5 "http://127.0.0.1:$port/health")
[[ $out != ok ]] || fail "plain HTTP answered on the TLS port"
kill -TERM $pid; wait $pid; rc=$?; pid=
((rc == 0)) || fail "exit $rc after SIGTERM"
: > "$dir/k.pem"
"$build/bin/afd-router" --config "$dir/router.json" > "$dir/r2.log" 2>&1
rc=$?
((rc != 0)) || fail "a router with an empty key file started"
grep -q "k.pem" "$dir/r2.log" || fail "the start-up error does not name the key file: $(tail -1 "$dir/r2.log")"
echo "ok: HTTPS from the config file; plain HTTP refused on the TLS port; bad key named"
