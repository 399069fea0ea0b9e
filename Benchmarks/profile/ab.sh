#!/bin/bash
# usage: Benchmarks/profile/ab.sh PAIRS BASELINE [SECONDS] — alternates one-round e2e runs
# (`waakvlam-bench e2e --runs 1 --backlog 0`) between the release build of BASELINE (another
# checkout, e.g. a worktree of the previous commit) and this checkout's, PAIRS times, and
# prints each round's figures and the median change of the node's CPU per signal and of
# delivered signals/s. The host's speed drifts; pairs run back to back compare fairly. The
# order turns round every pair (baseline first in odd pairs, this checkout first in even ones):
# on this host the first round of a back-to-back pair tended to do better (ninth session), so
# a fixed order favours one side. Use an even number of pairs.
set -uo pipefail
pairs=$1
baseline=$(cd "$2" && pwd)
seconds=${3:-6}
this=$(pwd)
results=$(mktemp)
for pair in $(seq 1 "$pairs"); do
    order="baseline this"
    [ $((pair % 2)) = 0 ] && order="this baseline"
    for side in $order; do
        folder=$baseline
        [ $side = this ] && folder=$this
        line=$(cd "$folder" && .build/release/waakvlam-bench e2e --runs 1 --backlog 0 --seconds "$seconds" 2>&1 | grep "run 1  waakvlamd")
        delivered=$(echo "$line" | sed -E 's/.*delivered +([0-9]+)\/s.*/\1/')
        cpu=$(echo "$line" | sed -E 's/.*server ([0-9]+),.*/\1/')
        [ -n "$delivered" ] && [ -n "$cpu" ] || { echo "pair $pair, $side: no figures" >&2; continue; }
        printf "pair %2d  %-8s  delivered %6d/s  server CPU %4d us/signal\n" "$pair" "$side" "$delivered" "$cpu"
        echo "$pair $side $delivered $cpu" >> "$results"
    done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    pair, side, delivered, cpu = line.split()
    rows.setdefault(pair, {})[side] = (int(delivered), int(cpu))
pairs = [r for r in rows.values() if len(r) == 2]
if pairs:
    cpu = statistics.median(100 * (r["this"][1] / r["baseline"][1] - 1) for r in pairs)
    rate = statistics.median(100 * (r["this"][0] / r["baseline"][0] - 1) for r in pairs)
    ahead = sum(r["this"][1] < r["baseline"][1] for r in pairs)
    print(f"median over {len(pairs)} pairs: server CPU per signal {cpu:+.0f}%, delivered signals/s {rate:+.0f}%; "
          f"this checkout used less CPU per signal in {ahead} of {len(pairs)}")
PY
rm -f "$results"
