#!/bin/bash
# usage: Benchmarks/profile/profile.sh NAME [malloc|retain] — profiles the node (release build in
# the current folder) during round 1 of an e2e benchmark and writes /tmp/profile-NAME.txt:
#   without a second argument: CPU time, 5 s, frame-pointer call graphs (cheap);
#   malloc or retain: where the node calls malloc or swift_retain, 1 s, DWARF call graphs.
# Then read it with Benchmarks/profile/stacks.py summary|tree|attribute /tmp/profile-NAME.txt.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/round.sh"
name=$1
case "${2:-cpu}" in
    cpu) record=(-e cpu-clock -F 1999 -g); seconds=5 ;;
    malloc) libc=$(ldd .build/release/waakvlamd | awk '/libc.so.6/ {print $3}')
            perf probe -q -x "$libc" malloc 2>/dev/null || true
            record=(-e probe_libc:malloc -c 13 --call-graph dwarf,16384); seconds=1 ;;
    retain) swiftcore=$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/linux/libswiftCore.so
            perf probe -q -x "$swiftcore" swift_retain 2>/dev/null || true
            record=(-e probe_libswiftCore:swift_retain -c 61 --call-graph dwarf,16384); seconds=1 ;;
    *) echo "usage: $0 NAME [malloc|retain]" >&2; exit 2 ;;
esac
log=$(mktemp)
start_round 10 "$log" || exit 1
perf record "${record[@]}" -p "$NODE" -o "/tmp/profile-$name.data" -- sleep $seconds > /dev/null 2>&1
wait $BENCH
grep "run 1" "$log"
rm -f "$log"
perf script -i "/tmp/profile-$name.data" -F comm,tid,ip,sym 2>/dev/null | swift demangle --simplified > "/tmp/profile-$name.txt"
rm -f "/tmp/profile-$name.data"
echo "wrote /tmp/profile-$name.txt"
