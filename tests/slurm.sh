#!/usr/bin/env bash
# tests/slurm.sh: delegate-run inside a real Slurm allocation. Brings up
# Debian's slurm-wlm on three hosts made of network namespaces on a bridge
# (tests/netns.sh; DESIGN.md §9): one munged with a private key and socket,
# one slurmctld, one slurmd per host (`slurmd -N nK`), each host entered
# with nsenter + unshare so that it has its own host name and hosts file
# (ip netns exec would remount /sys and hide the cgroups slurmd wants).
# Then, as a user would:
#   salloc -N 3 delegate-run -- mpiexec -ppn 2 -n 6 iotest delegate:FILE
# delegate-run finds the allocation (SLURM_JOB_NODELIST), starts one server
# per node with srun --overlap, hydra starts the ranks through srun; the
# file must equal the ufs: one and each server must have seen its node's 2
# ranks over shared memory and the 4 others over TCP. The same with ranks
# started by srun --mpi=pmi2, and with delegate-run --tls (a certificate
# naming the nodes by the names Slurm gives, handed through the
# environment).
# Everything it starts is stopped by pid, everything it makes removed.
# Skips (exit 0) if namespaces cannot be made or Slurm cannot be installed.
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/build/env.sh"
. "$top/tests/netns.sh"

if ! netns_possible; then
    echo "slurm: SKIP: cannot create network namespaces here (need root and ip netns)"
    exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
        slurm-wlm munge >/dev/null 2>&1
fi
for c in slurmctld slurmd salloc srun sinfo munged; do
    command -v $c >/dev/null || { echo "slurm: SKIP: $c is not installed and apt-get install slurm-wlm munge failed"; exit 0; }
done

work=$(mktemp -d /tmp/dlg-slurm-XXXXXX)
chmod 711 "$work" # munged wants its socket's directory searchable by all
. "$top/tests/statedirs.sh"
statedirs_mark
failures=0
daemons=()
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
cleanup() {
    local p
    for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${daemons[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    netns_down
    statedirs_sweep
    [ -n "${KEEP:-}" ] && echo "slurm: kept $work" || rm -rf "$work"
}
trap cleanup EXIT
# Temporary files of everything started from here (the servers' Unix
# socket directories too, which a killed server leaves) go with $work.
export TMPDIR=$work
netns_up 3 "$work" || { echo "slurm: cannot make the namespace hosts"; exit 1; }
{
    echo "127.0.0.1 localhost"
    for i in 1 2 3; do echo "10.77.0.$i n$i"; done
} >"$work/hosts"

# One munged for every host (they share the machine), on a private key.
head -c 1024 /dev/urandom >"$work/munge.key"
chmod 600 "$work/munge.key"
munged -F -f --socket="$work/munge.sock" --key-file="$work/munge.key" --pid-file="$work/munged.pid" \
    --log-file="$work/munged.log" --seed-file="$work/munged.seed" >"$work/munged.out" 2>&1 &
daemons+=($!)

ctlport=$((40000 + RANDOM % 5000))
cat >"$work/slurm.conf" <<EOF
ClusterName=dlgtest
SlurmctldHost=n1(10.77.0.1)
SlurmctldPort=$ctlport
SlurmdPort=$((ctlport + 1))
AuthType=auth/munge
AuthInfo=socket=$work/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/ctld
SlurmdSpoolDir=$work/spool-%n
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd-%n.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/linear
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=n1 NodeAddr=10.77.0.1 CPUs=2 State=UNKNOWN
NodeName=n2 NodeAddr=10.77.0.2 CPUs=2 State=UNKNOWN
NodeName=n3 NodeAddr=10.77.0.3 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=n[1-3] Default=YES MaxTime=10 State=UP
EOF
mkdir -p "$work/ctld"
export SLURM_CONF=$work/slurm.conf HYDRA_IFACE=dlg0

# node K CMD...: run CMD on host K, with its own host name and hosts file.
# Every step execs the next, so a daemon started with `node K ... &` has
# the pid $! names.
cat >"$work/node" <<EOS
#!/bin/sh
k=\$1
shift
exec nsenter --net="/run/netns/$tag-\$k" unshare -u -m --propagation private \\
    sh -c 'hostname "n\$0"; mount --bind "$work/hosts" /etc/hosts; exec "\$@"' "\$k" "\$@"
EOS
chmod +x "$work/node"
node() { "$work/node" "$@"; }

for _ in $(seq 50); do [ -S "$work/munge.sock" ] && break; sleep 0.1; done
"$work/node" 1 slurmctld -D -f "$work/slurm.conf" >"$work/slurmctld.out" 2>&1 &
daemons+=($!)
for k in 1 2 3; do
    "$work/node" $k slurmd -D -N "n$k" -f "$work/slurm.conf" >"$work/slurmd-n$k.out" 2>&1 &
    daemons+=($!)
done
up=0
for _ in $(seq 100); do
    if [ "$(node 1 sinfo -h -N -o '%T' 2>/dev/null | grep -c idle)" = 3 ]; then
        up=1
        break
    fi
    sleep 0.2
done
if [ $up = 0 ]; then
    echo "slurm: the cluster did not come up; sinfo says:"
    node 1 sinfo -N 2>&1 | head
    tail -5 "$work"/slurmctld.log "$work"/slurmd-n*.log "$work"/*.out 2>/dev/null
    exit 1
fi
ok "slurmctld and 3 slurmd up: $(node 1 sinfo -h -o '%P %D %T %N')"

# salloc ignores SIGTERM: the timeout goes inside the allocation too.
alloc() { timeout -s KILL 200 "$work/node" 1 salloc -N 3 --time=5 -Q timeout 150 "$@" </dev/null; }

echo "== salloc -N 3 delegate-run -- mpiexec -ppn 2 -n 6 iotest"
alloc mpiexec -ppn 2 -n 6 "$top/build/tests/iotest" "ufs:$work/u" >"$work/u.out" 2>&1 ||
    bad "iotest on ufs: in the allocation: $(tail -3 "$work/u.out")"
t0=$SECONDS
if alloc delegate-run -- mpiexec -ppn 2 -n 6 "$top/build/tests/iotest" "delegate:$work/d" >"$work/d.out" 2>"$work/d.err"; then
    if cmp -s "$work/u" "$work/d" && cmp -s <(sort "$work/u.out") <(sort "$work/d.out"); then
        ok "iotest through Slurm: $(stat -c %s "$work/d") bytes identical to ufs:, read checksums equal ($((SECONDS - t0))s)"
    else
        bad "iotest through Slurm: files or reads differ: $(cmp "$work/u" "$work/d" 2>&1 | head -1)"
    fi
else
    bad "salloc delegate-run: $(tail -8 "$work/d.err")"
fi
mapfile -t lines < <(awk '/^server tcp:/ {name=$2} /^  transports/ && name {print name, $2, $5, $7; name=""}' "$work/d.err")
[ ${#lines[@]} -eq 3 ] || bad "expected 3 servers (one per node) in the summary, got ${#lines[@]}"
for l in "${lines[@]}"; do
    read -r name ring unix tcp <<<"$l"
    if [ "$ring" = 2 ] && [ "$unix" = 0 ] && [ "$tcp" = 4 ]; then
        ok "server $name (started by srun --overlap): 2 sessions over shared memory, 4 over TCP"
    else
        bad "server $name: $ring shared memory, $unix unix, $tcp tcp sessions; want 2, 0, 4"
    fi
done

echo "== salloc -N 3 delegate-run -- srun --mpi=pmi2 (ranks started by Slurm itself)"
if out=$(alloc delegate-run --quiet -- srun --mpi=pmi2 --ntasks-per-node=2 -n 6 \
    "$top/build/examples/delegate_example" "delegate:$work/ex" 2 2>&1) && grep -q "all bytes correct" <<<"$out"; then
    ok "delegate_example, 6 ranks started by srun --mpi=pmi2 beside the servers' srun --overlap step"
else
    bad "srun --mpi=pmi2: $(tail -5 <<<"$out")"
fi

echo "== salloc -N 3 delegate-run --tls -- srun --mpi=pmi2 (a per-job certificate naming n1-n3)"
if out=$(alloc delegate-run --tls -- srun --mpi=pmi2 --ntasks-per-node=2 -n 6 \
    "$top/build/examples/delegate_example" "delegate:$work/extls" 2 2>&1) && grep -q "all bytes correct" <<<"$out" &&
    [ "$(grep -c '^  transports     2 shared memory, 0 unix, 4 tcp' <<<"$out")" = 3 ]; then
    ok "delegate_example over TLS through Slurm: every server 2 shared memory, 4 TLS sessions, servers named by host name"
else
    bad "delegate-run --tls under Slurm: $(tail -5 <<<"$out")"
fi

echo
if [ $failures -gt 0 ]; then
    echo "slurm: $failures FAILED"
    exit 1
fi
echo "slurm: all passed"
