#!/usr/bin/env bash
# examples/demo.sh: the README's main command. Sets everything up (the
# first run builds Debian's MPICH 4.0.2 with the delegate driver into a
# cache, about 5 minutes; later runs take seconds), then starts delegate
# servers beside mpiexec, runs the example on delegate: files from several
# ranks, and prints what each server did.
#
#   examples/demo.sh [RANKS] [SERVERS] [MiB per rank]
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ranks=${1:-4}
servers=${2:-2}
mib=${3:-4}
"$top/tests/setup.sh"
. "$top/build/env.sh"
dir=$(mktemp -d /tmp/delegate-demo-XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "== delegate-run --servers $servers -- mpiexec -n $ranks delegate_example delegate:$dir/demo $mib"
delegate-run --servers "$servers" -- mpiexec -n "$ranks" "$top/build/examples/delegate_example" "delegate:$dir/demo" "$mib"
