# tests/netns.sh: hosts made of network namespaces on a bridge, for
# tests/cluster.sh and tests/slurm.sh (sourced, not run).
#
#   netns_up N WORK    makes N hosts: namespaces $tag-1..N, each with an
#                      interface dlg0 at 10.77.0.K/24 on bridge ${tag}b
#                      (host-side veths ${tag}v1..N), and WORK/hosts.map
#                      ("ADDRESS NAMESPACE" lines) for the rsh-like script
#                      WORK/rsh.sh, which hydra runs as `rsh.sh HOST CMD...`
#   netns_down         kills every process left in those namespaces (all
#                      of them started by the test), removes them
#
# The addresses exist only inside the namespaces; nothing is configured in
# the caller's own namespace except the bridge (which has no address).
# Namespaces share /tmp, Unix sockets and the host name, which resolves to
# 127.0.0.1 in each: hydra must be told the interface (HYDRA_IFACE=dlg0).

tag=dlgc$$
ns_hosts=()
ns_count=0

# netns_possible reports whether namespaces can be made here.
netns_possible() {
    [ "$(id -u)" = 0 ] && ip netns add "${tag}probe" 2>/dev/null && ip netns del "${tag}probe"
}

netns_up() {
    local n=$1 work=$2 i ns
    ns_count=$n
    ip link add "${tag}b" type bridge && ip link set "${tag}b" up || return 1
    : >"$work/hosts.map"
    for i in $(seq "$n"); do
        ns=$tag-$i
        ip netns add "$ns" &&
            ip link add "${tag}v$i" type veth peer name dlg0 netns "$ns" &&
            ip link set "${tag}v$i" master "${tag}b" up &&
            ip -n "$ns" addr add "10.77.0.$i/24" dev dlg0 &&
            ip -n "$ns" link set dlg0 up &&
            ip -n "$ns" link set lo up || return 1
        ns_hosts+=("10.77.0.$i")
        echo "10.77.0.$i $ns" >>"$work/hosts.map"
    done
    cat >"$work/rsh.sh" <<'EOF'
#!/bin/sh
host=$1
shift
ns=$(awk -v h="$host" '$1 == h || $3 == h {print $2}' "$DLG_CLUSTER_MAP")
[ -n "$ns" ] || { echo "rsh.sh: unknown host $host" >&2; exit 255; }
exec ip netns exec "$ns" sh -c "$*"
EOF
    chmod +x "$work/rsh.sh"
}

netns_down() {
    local i p pids
    for i in $(seq $ns_count); do
        pids=$(ip netns pids "$tag-$i" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        # and wait until they are gone (their locks and sockets with them)
        for p in $pids; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null; done
    done
    for i in $(seq $ns_count); do
        ip link del "${tag}v$i" 2>/dev/null
        ip netns del "$tag-$i" 2>/dev/null
    done
    ip link del "${tag}b" 2>/dev/null
    ns_hosts=()
}
