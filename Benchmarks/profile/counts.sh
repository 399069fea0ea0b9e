#!/bin/bash
# usage: Benchmarks/profile/counts.sh — per accepted submission, over 3 s of an e2e round of the
# release build in the current folder: the node's mallocs, Swift object allocations, retains,
# releases (uprobes; one PolicyEngine.decide per submission), system calls and context switches.
# Unlike timings, the first four do not depend on how busy the host is; the last two fall as
# the load rises (more work per wake-up), so compare them at similar rates. Needs perf and root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/round.sh"
probe_decide || exit 1
swiftcore=$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/linux/libswiftCore.so
libc=$(ldd .build/release/waakvlamd | awk '/libc.so.6/ {print $3}')
perf probe -q -x "$libc" malloc 2>/dev/null || true
for f in swift_allocObject swift_retain swift_release; do perf probe -q -x "$swiftcore" $f 2>/dev/null || true; done
log=$(mktemp)
start_round 10 "$log" || exit 1
perf stat -x, -e "probe_waakvlamd:$DECIDE" -e probe_libc:malloc -e probe_libswiftCore:swift_allocObject \
    -e probe_libswiftCore:swift_retain -e probe_libswiftCore:swift_release \
    -e raw_syscalls:sys_enter -e context-switches -p "$NODE" -- sleep 3 2>&1 \
    | awk -F, 'NR == 1 {n = $1} {printf "%-40s %10d  per submission %7.1f\n", $3, $1, $1 / n}'
wait $BENCH
grep "run 1" "$log"
rm -f "$log"
