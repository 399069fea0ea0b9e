#!/bin/bash
# usage: Benchmarks/profile/breakdown.sh — over 3 s of round 1 of an e2e benchmark of the release
# build in the current folder, per accepted submission (one PolicyEngine.decide each): the CPU
# time of each of the node's threads, its system calls by kind, and the block requests the
# node issues per fdatasync (two per group commit). Needs perf and root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/round.sh"
probe_decide || exit 1
log=$(mktemp) counts=$(mktemp) threads=$(mktemp)
start_round 8 "$log" || exit 1
calls="read write epoll_wait epoll_ctl futex fdatasync pwrite64 sync_file_range getpid mprotect madvise"
events=(-e "probe_waakvlamd:$DECIDE" -e context-switches -e block:block_rq_issue)
for call in $calls; do events+=(-e "syscalls:sys_enter_$call"); done
# All threads for the counts, and per thread for the CPU time, over the same 3 s.
perf stat -x, "${events[@]}" -p "$NODE" -o "$counts" -- sleep 3 &
perf stat -x, --per-thread -e task-clock -p "$NODE" -o "$threads" -- sleep 3
wait %1
wait $BENCH
grep "run 1  waak" "$log"
python3 - "$counts" "$threads" <<'PY'
import sys
counts = {}
for line in open(sys.argv[1]):
    fields = line.strip().split(',')
    if len(fields) > 2 and fields[0].replace('.', '').isdigit():
        counts[fields[2].split(':')[-1]] = float(fields[0])
submissions = next((v for k, v in counts.items() if k.startswith('decide_')), 0)
if not submissions:
    sys.exit("no submissions counted")
print(f"{submissions / 3:.0f} submissions/s")
print("CPU per submission by thread (us):")
for line in open(sys.argv[2]):
    fields = line.strip().split(',')
    if len(fields) > 1 and fields[1].replace('.', '').isdigit() and float(fields[1]) > 1:
        print(f"  {fields[0].rsplit('-', 1)[0]:<16} {float(fields[1]) * 1000 / submissions:7.1f}")
print("per submission:")
for name, value in counts.items():
    if not name.startswith('decide_'):
        print(f"  {name.replace('sys_enter_', ''):<16} {value / submissions:7.2f}")
syncs = counts.get('sys_enter_fdatasync', 0)
if syncs:
    requests = counts.get('block_rq_issue', 0) / syncs
    print(f"block requests per fdatasync: {requests:.2f} (the node's own; the cache flushes come from kworkers)")
PY
rm -f "$log" "$counts" "$threads"
