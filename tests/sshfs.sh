# tests/sshfs.sh: a network file system for tests/bench.sh --backend sshfs
# (sourced, not run). Debian's sshfs, served by an sshd in a network
# namespace, reached over a veth pair from a second namespace:
#
#   sshfs_up WORK    makes namespaces $sshfs_tag-s (sshd, 10.78.0.2) and
#                    $sshfs_tag-c (the ssh client, 10.78.0.1) joined by a
#                    veth pair, a key pair and an sshd configuration in
#                    WORK/sshfs, exports WORK/sshfs/export and mounts it
#                    at WORK/sshfs/mnt (sshfs_mnt). The sshfs process runs
#                    in this namespace (so the mount is visible here); only
#                    its ssh runs in the client namespace (ssh_command).
#                    Installs sshfs and openssh-server if missing.
#   sshfs_down       unmounts, stops sshd and ssh (by pid), removes the
#                    namespaces and WORK/sshfs; safe to call twice, and
#                    after a partial sshfs_up.
#
# The addresses exist only inside the two namespaces; nothing is configured
# in the caller's namespace. Every step is bounded by a timeout. Needs root.

sshfs_tag=dlgf$$
sshfs_mnt=
sshfs_work=
sshfs_sshd_pid=
sshfs_made_run=

sshfs_up() {
    sshfs_work=$1/sshfs
    local ns_s=$sshfs_tag-s ns_c=$sshfs_tag-c w
    w=$sshfs_work
    [ "$(id -u)" = 0 ] || { echo "sshfs: needs root (network namespaces, FUSE)" >&2; return 1; }
    if ! command -v sshfs >/dev/null || [ ! -x /usr/sbin/sshd ]; then
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
            sshfs openssh-server openssh-client >/dev/null 2>&1
        command -v sshfs >/dev/null && [ -x /usr/sbin/sshd ] ||
            { echo "sshfs: sshfs or openssh-server is not installed and apt-get install failed" >&2; return 1; }
    fi
    mkdir -p "$w/export" "$w/mnt" || return 1
    sshfs_mnt=$w/mnt
    ssh-keygen -q -t ed25519 -N '' -f "$w/host_key" </dev/null >/dev/null &&
        ssh-keygen -q -t ed25519 -N '' -f "$w/user_key" </dev/null >/dev/null &&
        cp "$w/user_key.pub" "$w/authorized_keys" || return 1
    # sshd's privilege separation directory (made by the package's service
    # unit, which does not run here); removed again if this made it
    if [ ! -d /run/sshd ]; then
        mkdir -p /run/sshd && chmod 755 /run/sshd && sshfs_made_run=1
    fi
    cat >"$w/sshd_config" <<EOF
ListenAddress 10.78.0.2
Port 22
HostKey $w/host_key
AuthorizedKeysFile $w/authorized_keys
PidFile $w/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
    ip netns add "$ns_s" && ip netns add "$ns_c" &&
        ip link add "${sshfs_tag}a" type veth peer name "${sshfs_tag}b" &&
        ip link set "${sshfs_tag}a" netns "$ns_c" && ip link set "${sshfs_tag}b" netns "$ns_s" &&
        ip -n "$ns_c" addr add 10.78.0.1/24 dev "${sshfs_tag}a" &&
        ip -n "$ns_s" addr add 10.78.0.2/24 dev "${sshfs_tag}b" &&
        ip -n "$ns_c" link set "${sshfs_tag}a" up && ip -n "$ns_s" link set "${sshfs_tag}b" up &&
        ip -n "$ns_c" link set lo up && ip -n "$ns_s" link set lo up || return 1
    ip netns exec "$ns_s" /usr/sbin/sshd -D -e -f "$w/sshd_config" 2>"$w/sshd.log" &
    sshfs_sshd_pid=$!
    cat >"$w/ssh.sh" <<EOF
#!/bin/sh
exec ip netns exec $ns_c ssh -i $w/user_key -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 "\$@"
EOF
    chmod +x "$w/ssh.sh"
    local ok=
    for _ in $(seq 100); do # sshd is up when it accepts a command
        if timeout 10 "$w/ssh.sh" root@10.78.0.2 true 2>/dev/null; then ok=1; break; fi
        kill -0 "$sshfs_sshd_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$ok" ] || { echo "sshfs: sshd did not come up: $(tail -3 "$w/sshd.log")" >&2; return 1; }
    timeout 30 sshfs -o ssh_command="$w/ssh.sh" "root@10.78.0.2:$w/export" "$w/mnt" || return 1
    mountpoint -q "$w/mnt" || { echo "sshfs: $w/mnt is not mounted" >&2; return 1; }
}

sshfs_down() {
    local pids
    if [ -n "$sshfs_mnt" ] && mountpoint -q "$sshfs_mnt" 2>/dev/null; then
        timeout 30 fusermount -u "$sshfs_mnt" 2>/dev/null || timeout 30 umount -l "$sshfs_mnt" 2>/dev/null
    fi
    if [ -n "$sshfs_sshd_pid" ]; then
        kill "$sshfs_sshd_pid" 2>/dev/null
        timeout 10 tail --pid="$sshfs_sshd_pid" -f /dev/null 2>/dev/null
        sshfs_sshd_pid=
    fi
    for ns in "$sshfs_tag-c" "$sshfs_tag-s"; do # what is left in them (ssh, sshd's children) was started here
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "$sshfs_made_run" ] && rmdir /run/sshd 2>/dev/null
    sshfs_made_run=
    [ -n "$sshfs_work" ] && rm -rf "$sshfs_work"
    sshfs_mnt=
}
