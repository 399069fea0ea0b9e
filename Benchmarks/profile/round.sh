# Sourced by the profiling scripts: starts one e2e round of the release build in the current
# folder and sets NODE to the node's pid once round 1's senders run (the node busy for the
# warm-up, idle during nginx's warm-up, busy again); BENCH is the benchmark's pid. When it
# fails, it stops the benchmark (and its children) before it returns.
start_round() {
    .build/release/waakvlam-bench e2e --runs 1 --backlog 0 --seconds "$1" > "$2" 2>&1 &
    BENCH=$!
    NODE=""
    # The node itself, not the `waakvlamd --config DIR --check` run before it.
    for _ in $(seq 1 300); do
        NODE=$(pgrep -P $BENCH -fx ".*waakvlamd --config [^ ]+" | head -1 || true)
        [ -n "$NODE" ] && break
        sleep 0.2
    done
    [ -n "$NODE" ] || { echo "the benchmark started no node" >&2; stop_round; return 1; }
    local phase=0 previous now
    previous=$(node_ticks)
    for _ in $(seq 1 400); do
        sleep 0.25
        now=$(node_ticks)
        [ -n "$now" ] || { echo "the node stopped before round 1" >&2; stop_round; return 1; }
        local busy=$((now - previous))
        previous=$now
        if [ $phase = 0 ] && [ $busy -ge 10 ]; then phase=1; fi
        if [ $phase = 1 ] && [ $busy -le 2 ]; then phase=2; fi
        if [ $phase = 2 ] && [ $busy -ge 10 ]; then sleep 0.5; return 0; fi
    done
    echo "round 1 did not start" >&2
    stop_round
    return 1
}

# Stops the benchmark and the servers it started.
stop_round() {
    pkill -P $BENCH 2>/dev/null
    kill $BENCH 2>/dev/null
    wait $BENCH 2>/dev/null
}

# User plus system clock ticks the node has used.
node_ticks() { awk '{print $14 + $15}' /proc/$NODE/stat 2>/dev/null; }

# Puts a uprobe on PolicyEngine.decide (one call per accepted submission) in the release build
# in the current folder, named DECIDE (probe_waakvlamd:$DECIDE), and removes it when the script
# exits however it ends.
probe_decide() {
    local binary symbol
    binary=$(pwd)/.build/release/waakvlamd
    DECIDE=decide_$(pwd | md5sum | cut -c1-8)
    symbol=$(nm "$binary" | awk '$2 == "T" && /PolicyEngineO6decide_6sender13configuration2at/ {print $3}')
    perf probe -q -d "probe_waakvlamd:$DECIDE" 2>/dev/null || true
    perf probe -q -x "$binary" -a "$DECIDE=$symbol" || { echo "cannot put a uprobe on $symbol in $binary (perf probe, as root)" >&2; return 1; }
    trap 'perf probe -q -d "probe_waakvlamd:$DECIDE" 2>/dev/null' EXIT
}
