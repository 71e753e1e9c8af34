#!/usr/bin/env bash
# deploy/systemd: `systemd-analyze verify` on the units (ExecStart pointed at the built binaries;
# a warning fails too), the `systemd-analyze security --offline=yes` exposure of every service
# under a threshold, the multi-host example configs against the daemons' settings tables and
# against each other, and `make install DESTDIR=...`.   Usage: tests/integ/test_systemd_units.sh BUILD_DIR
set -uo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
max_exposure=2.0 # measured 1.4 (router) and 1.6 (attnd, ffnd); "OK" ends at 4.9
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 failed=0
ok() { echo "ok   $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

for b in attnd ffnd afd-router; do
    [[ -x $build/bin/$b ]] || { echo "FAIL: $build/bin/$b not built"; exit 1; }
done
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
if ! command -v systemd-analyze >/dev/null; then
    echo "skip: systemd-analyze not installed (apt-get install systemd)"
    exit 77
fi

# ---- units, with ExecStart on the built binaries; templates as instance "t" ----------------
mkdir -p "$tmp/units"
for f in "$src"/deploy/systemd/*.service "$src"/deploy/systemd/*.target; do
    name=$(basename "$f")
    name=${name/@./@t.}
    sed -e "s|/usr/local/bin/|$build/bin/|" "$f" >"$tmp/units/$name"
done
units=("$tmp"/units/*)
((${#units[@]} == 4)) || bad "expected 3 services and afd.target, found ${#units[@]} units"

# verify exits 0 on unknown keys and bad values (it only warns): any output is a failure.
verify() { # verify UNIT... -> prints what systemd-analyze said; 0 when it said nothing
    local out
    out=$(cd "$tmp/units" && systemd-analyze verify --man=no "$@" 2>&1)
    local rc=$?
    [[ -n $out ]] && echo "$out" | sed 's/^/    /'
    [[ $rc == 0 && -z $out ]]
}
if verify "${units[@]}"; then ok "systemd-analyze verify: no errors, no warnings"; else bad "systemd-analyze verify"; fi
for u in "$tmp"/units/*.service; do
    grep -q "^ExecStart=$build/bin/" "$u" || bad "$(basename "$u"): ExecStart not rewritten"
done

# The checker itself must catch a mistake: a misspelt key, a bad value, a missing binary.
r=$tmp/units/afd-router.service
breakers=("s/^NoNewPrivileges=yes/NoNewPrivilege=yes/" "s/^Restart=on-failure/Restart=sometimes/"
    "s|^ExecStart=$build/bin/afd-router|ExecStart=$tmp/nonexistent|")
for i in 0 1 2; do
    d=$tmp/broken$i
    mkdir -p "$d"
    cp "$tmp/units/afd.target" "$d/"
    sed -e "${breakers[$i]}" "$r" >"$d/afd-router.service"
    if cmp -s "$r" "$d/afd-router.service"; then
        bad "breaker $i changed nothing"
    elif verify "$d/afd-router.service" "$d/afd.target" >/dev/null; then
        bad "verify missed: ${breakers[$i]}"
    else
        ok "verify catches: ${breakers[$i]}"
    fi
done

# The contract the daemons rely on (docs/operations.md), per service.
for u in "$tmp"/units/*.service; do
    miss=()
    for want in Type=notify NotifyAccess=main WatchdogSec=30s Restart=on-failure KillSignal=SIGTERM \
        LimitMEMLOCK=infinity User=afd ProtectSystem=strict NoNewPrivileges=yes \
        'After=network-online.target' 'PartOf=afd.target' 'WantedBy=afd.target'; do
        grep -qx "$want" "$u" || miss+=("$want")
    done
    # PCRE2's JIT (router) and UCX's code patching need W+X pages; PrivateUsers breaks CMA.
    for never in MemoryDenyWriteExecute=yes PrivateUsers=yes DynamicUser=yes; do
        grep -qx "$never" "$u" && miss+=("not $never")
    done
    grep -q '^ExecStart=.* --config /etc/afd/' "$u" || miss+=("ExecStart --config /etc/afd/...")
    if ((${#miss[@]} == 0)); then ok "$(basename "$u"): contract settings"; else bad "$(basename "$u"): ${miss[*]}"; fi
done

# ---- hardening score -------------------------------------------------------------------------
no_offline=
systemd-analyze security --help 2>&1 | grep -q -- --offline || no_offline="systemd-analyze security has no --offline (systemd < 250): exposure not measured"
for u in "$tmp"/units/*.service; do
    [[ -n $no_offline ]] && break
    out=$(systemd-analyze security --offline=yes --no-pager "$u" 2>&1)
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
    if [[ -z $score ]]; then
        bad "$(basename "$u"): no exposure score in: $(tail -n 3 <<<"$out")"
    elif python3 -c "import sys; sys.exit(0 if $score <= $max_exposure else 1)"; then
        ok "$(basename "$u"): exposure $score <= $max_exposure"
    else
        bad "$(basename "$u"): exposure $score > $max_exposure"
        grep '✗' <<<"$out" | sed 's/^/    /'
    fi
done

# ---- the example cluster: each file passes its daemon's table --------------------------------
# No check-only mode exists: the file is applied before the flags, so a valid file ends in the
# error about the out-of-range flag that follows it, a bad file in an error about the file.
check_conf() { # check_conf BIN FILE PORT_FLAG -> 0 when FILE is valid
    local out rc
    out=$("$build/bin/$1" --config "$2" "$3" 99999 2>&1)
    rc=$?
    [[ $rc == 2 && $out == *"$3: 99999 is above the maximum"* ]] && return 0
    echo "    $out"
    return 1
}
ex=$src/deploy/examples/cluster
for f in "$ex"/attnd-*.json; do
    check_conf attnd "$f" --listen-port && ok "attnd accepts $(basename "$f")" || bad "attnd $(basename "$f")"
done
for f in "$ex"/ffnd-*.json; do
    check_conf ffnd "$f" --listen-port && ok "ffnd accepts $(basename "$f")" || bad "ffnd $(basename "$f")"
done
check_conf afd-router "$ex/router.json" --port && ok "afd-router accepts router.json" || bad "router.json"
sed 's/"max_seqs"/"max_seq"/' "$ex/attnd-d0.json" >"$tmp/bad.json"
if check_conf attnd "$tmp/bad.json" --listen-port >/dev/null; then
    bad "a misspelt key passed the check"
else
    ok "a misspelt key fails the check"
fi
for want in attnd-p0 attnd-d0 attnd-d1 ffnd-g0-ep0 ffnd-g0-ep1 router; do
    [[ -f $ex/$want.json ]] || bad "missing example $want.json"
done
[[ -f $ex/README.md ]] && ok "cluster README present" || bad "no $ex/README.md"

# ...and the files agree with each other and with the units.
if python3 - "$ex" "$src/deploy/systemd" <<'EOF'; then ok "cluster configs consistent"; else bad "cluster configs inconsistent"; fi
import glob, json, os, re, sys
ex, units = sys.argv[1], sys.argv[2]
load = lambda f: json.load(open(os.path.join(ex, f)))
attnd = {f: load(f) for f in map(os.path.basename, sorted(glob.glob(ex + "/attnd-*.json")))}
ffnd = {f: load(f) for f in map(os.path.basename, sorted(glob.glob(ex + "/ffnd-*.json")))}
router = load("router.json")
errs = []
def ms(v):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m|min)?", str(v))
    return float(m[1]) * {"ms": 1, None: 1, "s": 1e3, "m": 6e4, "min": 6e4}[m[2]]
def stop_timeout(unit):
    t = re.search(r"^TimeoutStopSec=(\d+)s$", open(os.path.join(units, unit)).read(), re.M)
    return int(t[1]) * 1000
shards = sorted(ffnd.values(), key=lambda c: c["ep_rank"] * c["tp_size"] + c["tp_rank"])
group = ["%s:%d" % (c["listen_addr"], c["listen_port"]) for c in shards]
ids = [c["instance_id"] for c in list(attnd.values()) + list(ffnd.values())]
if len(set(ids)) != len(ids): errs.append("instance_id not unique: %s" % ids)
for f, c in ffnd.items():
    if c["ep_size"] != len(shards) // c["tp_size"]: errs.append(f + ": ep_size")
    if ms(c["drain_timeout_ms"]) + 10000 > stop_timeout("afd-ffnd@.service"):
        errs.append(f + ": drain_timeout_ms too close to TimeoutStopSec")
roles = {c["role"] for c in attnd.values()}
if roles != {"prefill", "decode"}: errs.append("roles %s" % roles)
for f, c in attnd.items():
    if c["ffn"] != group: errs.append("%s: ffn %s, the shards say %s" % (f, c["ffn"], group))
    if c["ffn_ep_size"] * c["ffn_tp_size"] != len(shards): errs.append(f + ": group size")
    if c["f2a_dtype"] != shards[0]["f2a_dtype"]: errs.append(f + ": f2a_dtype")
    if c["model"] != shards[0]["model"] or c["model"] != router["model"]: errs.append(f + ": model")
    if ms(c["drain_timeout_ms"]) + 10000 > stop_timeout("afd-attnd@.service"):
        errs.append(f + ": drain_timeout_ms too close to TimeoutStopSec")
ctl = sorted("%s:%d" % (c["listen_addr"], c["listen_port"]) for c in attnd.values())
if sorted(router["attnd"]) != ctl: errs.append("router attnd %s, instances %s" % (router["attnd"], ctl))
if ms(router["drain_timeout_ms"]) + 10000 > stop_timeout("afd-router.service"):
    errs.append("router: drain_timeout_ms too close to TimeoutStopSec")
for e in errs: print("    " + e)
sys.exit(1 if errs else 0)
EOF

# ---- make install DESTDIR=... ----------------------------------------------------------------
inst() { make -C "$src" --no-print-directory install BUILD="$build" "$@" >"$tmp/install.log" 2>&1; }
root=$tmp/root
if inst DESTDIR="$root"; then ok "make install DESTDIR"; else bad "make install"; tail -n 20 "$tmp/install.log"; fi
p=$root/usr/local
for f in bin/attnd bin/ffnd bin/afd-router bin/afd-mkmodel \
    lib/systemd/system/afd-attnd@.service lib/systemd/system/afd-ffnd@.service \
    lib/systemd/system/afd-router.service lib/systemd/system/afd.target lib/sysusers.d/afd.conf \
    share/afd/examples/cluster/router.json share/afd/examples/cluster/attnd-d0.json \
    share/afd/examples/cluster/ffnd-g0-ep1.json share/afd/examples/cluster/README.md \
    share/doc/afd/operations.md; do
    [[ -e $p/$f ]] || bad "not installed: $f"
done
[[ -x $p/bin/attnd ]] || bad "bin/attnd not executable"
cmp -s "$build/bin/ffnd" "$p/bin/ffnd" || bad "bin/ffnd differs from the build"
grep -q '^ExecStart=/usr/local/bin/attnd --config /etc/afd/attnd-%i.json$' \
    "$p/lib/systemd/system/afd-attnd@.service" || bad "installed attnd unit: ExecStart"
stray=$(find "$root" -mindepth 1 -maxdepth 1 ! -name usr)
[[ -z $stray ]] || bad "installed outside PREFIX: $stray"
inst DESTDIR="$tmp/opt" PREFIX=/opt/afd || bad "make install PREFIX=/opt/afd"
u=$tmp/opt/opt/afd/lib/systemd/system/afd-router.service
if grep -q '^ExecStart=/opt/afd/bin/afd-router ' "$u" &&
    grep -q '^Documentation=file:/opt/afd/share/doc/afd/operations.md$' "$u" &&
    [[ -x $tmp/opt/opt/afd/bin/afd-router ]]; then
    ok "make install PREFIX=/opt/afd rewrites the units"
else
    bad "PREFIX=/opt/afd: $(grep -E '^(ExecStart|Documentation)=' "$u" 2>&1)"
fi
mkdir -p "$tmp/empty"
if inst DESTDIR="$tmp/nobin" BUILD="$tmp/empty"; then
    bad "make install succeeded without built binaries"
elif grep -q "is not built: run make first" "$tmp/install.log" && [[ ! -e $tmp/nobin ]]; then
    ok "make install refuses when nothing is built (and writes nothing)"
else
    bad "make install without binaries: $(tail -n 2 "$tmp/install.log")"
fi

echo "systemd units: $pass passed, $failed failed"
((failed == 0)) || exit 1
if [[ -n $no_offline ]]; then
    echo "skip: $no_offline"
    exit 77
fi
