# tests/statedirs.sh: leave /dev/shm as the test found it (sourced, not
# run). Servers keep their buffers in a state directory on /dev/shm by
# default (--state-dir auto), and one that is killed, or cut off before it
# drains, leaves it for a restart with the same command line: right for a
# real job, litter for a test that will not restart it.
#
#   statedirs_mark     remembers the state directories that exist now
#   statedirs_sweep    removes those made since the mark whose lock no
#                      server holds (a running server's stay), and says so

statedirs_before=

statedirs_mark() {
    statedirs_before=$(ls -d /dev/shm/delegate-"$(id -u)"-* 2>/dev/null | sort)
}

statedirs_sweep() {
    local d n=0
    for d in $(ls -d /dev/shm/delegate-"$(id -u)"-* 2>/dev/null | sort | comm -13 <(echo "$statedirs_before") -); do
        [ -f "$d/lock" ] || continue
        # flock -n fails while a live server holds the directory.
        if flock -n "$d/lock" true 2>/dev/null; then
            rm -rf "$d" && n=$((n + 1))
        fi
    done
    [ $n -eq 0 ] || echo "(removed $n state director$([ $n = 1 ] && echo y || echo ies) left by servers this test killed or cut off)"
}

# statedirs_left fails, naming them, if state directories were made since
# the mark and are still there (tests/check.sh's last step).
statedirs_left() {
    local l
    l=$(ls -d /dev/shm/delegate-"$(id -u)"-* 2>/dev/null | sort | comm -13 <(echo "$statedirs_before") -)
    [ -z "$l" ] || { echo "state directories left in /dev/shm by the tests: $l"; return 1; }
}
