#!/bin/sh
# Measures what an unclean open's data-directory sync costs (invariant 14,
# Config::recovery_init_sync), with both methods, on a directory of about
# SIZE_MB of relation data spread over RELS relations.
#
#   sh scripts/bench-unclean-sync.sh [DIR] [SIZE_MB] [RELS]
#
# For each method it fills a fresh database through `keel shell` (64 KiB
# values, 64 per transaction), kills the shell with SIGKILL right after its
# last acknowledged commit (what the dead process wrote without syncing is
# still dirty in the page cache), and runs `keel checkpoint
# --recovery-init-sync METHOD` at once: "dirty" below. Then it makes the same
# directory unclean again with one more killed commit, after `sync` has
# written everything back, and opens it again: "clean cache" below, the cost
# of the walk and the fsync calls themselves. The figures are the
# "data directory sync" lines `keel checkpoint` prints. Needs python3 and
# target/release/keel (cargo build --release -p keel-cli).
set -eu

BASE=${1:-/tmp/keel-sync-bench}
SIZE_MB=${2:-2048}
RELS=${3:-64}
KEEL=${KEEL:-target/release/keel}

# Writes the shell script that fills RELS relations with SIZE_MB in total.
fill_script() {
    python3 - "$SIZE_MB" "$RELS" <<'EOF'
import os, sys
size_mb, rels = int(sys.argv[1]), int(sys.argv[2])
value = os.urandom(64 << 10).hex()
values = size_mb * 16  # 64 KiB each
out = sys.stdout
for r in range(rels):
    out.write(f"create r{r}\n")
for txn in range(0, values, 64):
    out.write("begin\n")
    for i in range(txn, min(txn + 64, values)):
        out.write(f"insert r{i % rels} {value}\n")
    out.write("commit\n")
EOF
}

# Runs `keel shell` on $1 with the commands on stdin, and SIGKILLs it once
# it has answered $2 commits.
run_and_kill() {
    dir=$1 commits=$2
    rm -f "$dir.out"
    fifo=$(mktemp -u)
    mkfifo "$fifo"
    "$KEEL" shell --dir "$dir" <"$fifo" >"$dir.out" 2>&1 &
    pid=$!
    # Keep the shell's stdin open after the commands (no `quit`). A
    # background job's stdin is /dev/null: pass ours as fd 3.
    exec 3<&0
    { cat <&3; exec sleep 100000; } >"$fifo" &
    feeder=$!
    while :; do
        n=$(grep -c '^committed' "$dir.out" 2>/dev/null) || true
        [ "${n:-0}" -lt "$commits" ] || break
        sleep 0.2
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    kill "$feeder" 2>/dev/null || true
    rm -f "$fifo"
}

for method in fsync syncfs; do
    dir="$BASE-$method"
    rm -rf "$dir" "$dir.out"
    commits=$(( (SIZE_MB * 16 + 63) / 64 ))
    fill_script | run_and_kill "$dir" "$commits"
    echo "== $method, dirty: $(du -sm "$dir/rel" | cut -f1) MB in rel/, $(ls "$dir/rel" | wc -l) files," \
        "$(grep '^Dirty:' /proc/meminfo | tr -s ' ') in the page cache (all file systems)"
    "$KEEL" checkpoint --dir "$dir" --recovery-init-sync "$method" | { grep 'data directory sync' || echo 'no sync: the open was clean'; }
    printf 'begin\ninsert r0 00\ncommit\n' | run_and_kill "$dir" 1
    sync
    echo "== $method, clean cache"
    "$KEEL" checkpoint --dir "$dir" --recovery-init-sync "$method" | { grep 'data directory sync' || echo 'no sync: the open was clean'; }
done
