# tests/statedirs.sh: leave /dev/shm as the test found it (sourced, not
# run). Servers keep their buffers in a state directory on /dev/shm by
# default (--state-dir auto), and one that is killed, or cut off before it
# drains, leaves it for a restart with the same command line: right for a
# real job, litter for a test that will not restart it.
#
#   statedirs_mark     remembers the state directories that exist now
#   statedirs_sweep    removes those made since the mark whose lock no
#                      server holds (a running server's stay), and empty
#                      ones without a lock, and says so

statedirs_before=

statedirs_mark() {
    statedirs_before=$(ls -d /dev/shm/delegate-"$(id -u)"-* 2>/dev/null | sort)
    DLG_CHECK_RUN=${DLG_CHECK_RUN:-$$-$(date +%s%N)}
    export DLG_CHECK_RUN
}

statedirs_sweep() {
    local d n=0
    for d in $(ls -d /dev/shm/delegate-"$(id -u)"-* 2>/dev/null | sort | comm -13 <(echo "$statedirs_before") -); do
        if [ ! -f "$d/lock" ]; then
            # no lock: a server killed while it made or removed the
            # directory; rmdir takes it only if nothing is in it
            rmdir "$d" 2>/dev/null && n=$((n + 1))
            continue
        fi
        # flock -n fails while a live server holds the directory.
        if flock -n "$d/lock" true 2>/dev/null; then
            rm -rf "$d" && n=$((n + 1))
        fi
    done
    [ $n -eq 0 ] || echo "(removed $n state director$([ $n = 1 ] && echo y || echo ies) left by servers this test killed or cut off)"
}

# statedirs_holder DIR prints the pid of the process holding DIR's lock
# (a running server), from /proc/locks; nothing if none does.
statedirs_holder() {
    local dev ino
    dev=$(stat -c '%Hd %Ld' "$1/lock" 2>/dev/null) && ino=$(stat -c %i "$1/lock" 2>/dev/null) || return 0
    dev=$(printf '%02x:%02x' $dev)
    awk -v f="$dev:$ino" '$2 == "FLOCK" && $6 == f { print $5; exit }' /proc/locks
}

# statedirs_left fails, naming them, if state directories were made since
# the mark and are still there (tests/check.sh's last step). A directory
# whose lock a running server holds that this run did not start (its
# environment lacks this run's DLG_CHECK_RUN, which every process the run
# starts inherits: Go tests' servers too, which drop only DELEGATE_*
# variables) is not this run's: on a machine shared with other work,
# another checkout's tests start servers at any time.
statedirs_left() {
    local d pid l=
    for d in $(ls -d /dev/shm/delegate-"$(id -u)"-* 2>/dev/null | sort | comm -13 <(echo "$statedirs_before") -); do
        pid=$(statedirs_holder "$d")
        if [ -n "$pid" ] && [ -n "${DLG_CHECK_RUN:-}" ] && [ -r "/proc/$pid/environ" ] &&
            ! tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "DLG_CHECK_RUN=$DLG_CHECK_RUN"; then
            echo "($d: held by pid $pid, a server this run did not start)"
            continue
        fi
        l="$l $d"
    done
    [ -z "$l" ] || { echo "state directories left in /dev/shm by the tests:$l"; return 1; }
}
