# shellcheck shell=bash disable=SC2034
# net.sh: "hosts" made of Linux network namespaces, for the multi-host test (sourced).
#
#   mh_net_check                     0, or prints why namespaces cannot be made and returns 1
#   mh_net_up PREFIX SUBNET NAME=OCTET ...
#                                    a switch namespace PREFIX-sw with a bridge, and for each NAME
#                                    a namespace PREFIX-NAME with lo up and one veth, $MH_DEV,
#                                    at SUBNET.OCTET/24 plugged into the bridge
#   mh_net_down                      removes every namespace mh_net_up made (idempotent); kills
#                                    by pid whatever still runs in them first
#   mh_net_reap_stale                removes namespaces afd-PID-* left by a run that was killed
#                                    (PID gone, nothing running inside)
#   mh_ns NAME                       the namespace of host NAME
#   mh_addr NAME                     the address of host NAME
#   mh_exec NAME CMD...              runs CMD in host NAME with its UCX environment: TCP only
#                                    (no shared memory between "hosts" of one kernel), the veth
#                                    as the only device
#   mh_spawn NAME LOG CMD...         the same in the background, output to LOG; MH_PID is the
#                                    pid of CMD itself (ip netns exec and env exec, no fork)
#
# Every name is unique per run (PREFIX should hold the caller's pid), so parallel runs never
# meet, and the bridge lives in its own namespace: the root namespace is never touched.
MH_DEV=afd0
MH_ENV=() # more VAR=value for mh_exec and mh_spawn
MH_PREFIX=
MH_SUBNET=
declare -A MH_OCTET=()
MH_MADE=()

mh_net_check() {
    if [[ $(id -u) != 0 ]]; then
        echo "network namespaces need root (uid $(id -u))"
        return 1
    fi
    if ! command -v ip >/dev/null; then
        echo "no ip command (iproute2)"
        return 1
    fi
    local probe=afd-probe-$$
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "ip netns add fails here (no CAP_SYS_ADMIN, or no netns support)"
        return 1
    fi
    local why=""
    if ! ip -n "$probe" link add mhbr type bridge 2>/dev/null ||
        ! ip -n "$probe" link add mhv0 type veth peer name mhv1 2>/dev/null; then
        why="bridge or veth devices cannot be made in a namespace (kernel modules missing?)"
    elif ! ip netns exec "$probe" true 2>/dev/null; then
        why="ip netns exec fails here (cannot remount /sys in a new mount namespace?)"
    fi
    ip netns del "$probe" 2>/dev/null
    [[ -z $why ]] || { echo "$why"; return 1; }
    return 0
}

mh_net_reap_stale() {
    local ns
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
        [[ $ns =~ ^afd-([0-9]+)-[a-z0-9]+$ ]] || continue
        kill -0 "${BASH_REMATCH[1]}" 2>/dev/null && continue
        [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && ip netns del "$ns" 2>/dev/null
    done
    return 0
}

mh_ns() { echo "$MH_PREFIX-$1"; }
mh_addr() { echo "$MH_SUBNET.${MH_OCTET[$1]}"; }

mh_net_up() {
    MH_PREFIX=$1 MH_SUBNET=$2
    shift 2
    local sw=$MH_PREFIX-sw spec name octet ns
    ip netns add "$sw" || return 1
    MH_MADE+=("$sw")
    ip -n "$sw" link add br0 type bridge || return 1
    ip -n "$sw" link set br0 up || return 1
    ip -n "$sw" link set lo up || return 1
    for spec in "$@"; do
        name=${spec%%=*} octet=${spec#*=}
        ns=$MH_PREFIX-$name
        MH_OCTET[$name]=$octet
        ip netns add "$ns" || return 1
        MH_MADE+=("$ns")
        ip -n "$ns" link set lo up || return 1
        # both ends are made in their namespaces directly: no name is ever taken in the root ns
        ip link add "$MH_DEV" netns "$ns" type veth peer name "p-$name" netns "$sw" || return 1
        ip -n "$sw" link set "p-$name" master br0 || return 1
        ip -n "$sw" link set "p-$name" up || return 1
        ip -n "$ns" addr add "$MH_SUBNET.$octet/24" dev "$MH_DEV" || return 1
        ip -n "$ns" link set "$MH_DEV" up || return 1
    done
    # the bridge forwards once its ports leave the listening state (no STP: at once)
    return 0
}

mh_net_down() {
    local ns p
    for ns in "${MH_MADE[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    for ns in "${MH_MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done
    MH_MADE=()
}

mh_exec() {
    local name=$1
    shift
    ip netns exec "$MH_PREFIX-$name" env UCX_TLS=tcp UCX_NET_DEVICES="$MH_DEV" \
        UCX_WARN_UNUSED_ENV_VARS=n "${MH_ENV[@]}" "$@"
}

mh_spawn() {
    local name=$1 log=$2
    shift 2
    ip netns exec "$MH_PREFIX-$name" env UCX_TLS=tcp UCX_NET_DEVICES="$MH_DEV" \
        UCX_WARN_UNUSED_ENV_VARS=n "${MH_ENV[@]}" "$@" > "$log" 2>&1 &
    MH_PID=$!
}
