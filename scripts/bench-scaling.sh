#!/bin/sh
# How Keel's durable commits scale with committers on this machine, beside
# SQLite, the disk's single-committer loops and the ideal group-commit
# reference loop, then the insert suite; with the machine's description.
#
# Usage: scripts/bench-scaling.sh [PATH/TO/keel]     (or KEEL=PATH/TO/keel)
#
# Needs only a built `keel` binary, POSIX sh and the usual base tools
# (coreutils, sed, /proc and /sys): no Rust toolchain, no PostgreSQL (PostgreSQL is left out;
# `keel bench commit` with it is the full comparison). To carry the binary
# to another machine: `cargo build --release -p keel-cli && strip -o keel
# target/release/keel`, copy `keel` and this script, run it there.
#
# The data directories go under DIR (default: the current directory), on its
# file system, and are removed afterwards. Settings, from the environment:
#   COMMITTERS  committer counts        [1,4,16,64,256]
#   SECS        seconds per window      [2]
#   REPEAT      repeats per figure      [3]
#   ROWS        insert suite rows       [1000000]
#   DIR         where the data goes     [.]
#   OUT         JSON files written here [./keel-bench-scaling]
# The defaults take about 5 minutes on a 16-core machine with an NVMe disk
# (29 commit windows x 3 repeats x 2 s, settling between windows, then the
# insert suite).
set -eu

KEEL=${1:-${KEEL:-}}
if [ -z "$KEEL" ]; then
    echo "usage: $0 PATH/TO/keel   (or set KEEL)" >&2
    exit 2
fi
if [ ! -x "$KEEL" ]; then
    echo "$0: $KEEL is not an executable file" >&2
    exit 2
fi
COMMITTERS=${COMMITTERS:-1,4,16,64,256}
SECS=${SECS:-2}
REPEAT=${REPEAT:-3}
ROWS=${ROWS:-1000000}
DIR=${DIR:-.}
OUT=${OUT:-./keel-bench-scaling}
mkdir -p "$DIR" "$OUT"

# One line of /proc/cpuinfo or /proc/meminfo: the value after "KEY:".
field() {
    sed -n "s/^$2[[:space:]]*:[[:space:]]*//p" "$1" | sed -n 1p
}

# The block device under DIR: its name, and the whole disk's model and
# rotational flag (a partition's are its parent's; a device-mapper or md
# device lists the devices under it).
describe_disk() {
    dev=$(stat -c %d "$1")
    major=$(( ((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff) ))
    minor=$(( ((dev >> 12) & 0xffffff00) | (dev & 0xff) ))
    # The file system mounted from that device: in mountinfo, field 3 is
    # MAJ:MIN and the last three are the type, the source and its options
    # (spaces inside fields are escaped as \040).
    fs=$(sed -n "s/^[^ ]* [^ ]* $major:$minor .* - \([^ ]*\) [^ ]* [^ ]*\$/\1/p" \
        /proc/self/mountinfo | sed -n 1p)
    sys=/sys/dev/block/$major:$minor
    if [ ! -e "$sys" ]; then
        echo "  disk        no block device ($fs, device $major:$minor)"
        return
    fi
    real=$(readlink -f "$sys")
    name=${real##*/}
    disk=$real
    if [ -e "$real/partition" ]; then
        disk=${real%/*}
    fi
    model=$(cat "$disk/device/model" 2>/dev/null || echo "?")
    rot=$(cat "$disk/queue/rotational" 2>/dev/null || echo "?")
    under=$(ls "$disk/slaves" 2>/dev/null | tr '\n' ' ' || true)
    echo "  disk        $name on ${disk##*/} ($fs), model: $(echo $model)," \
        "rotational: $rot${under:+, on: $under}"
}

echo "# keel bench scaling"
echo
echo "  date        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "  keel        $KEEL ($("$KEEL" --version))"
echo "  kernel      $(uname -sr)"
echo "  cores       $(nproc) online"
echo "  cpu         $(field /proc/cpuinfo 'model name')"
echo "  memory      $(field /proc/meminfo MemTotal)"
echo "  bench dir   $(cd "$DIR" && pwd)"
describe_disk "$DIR"
echo "  settings    committers $COMMITTERS, $SECS s per window, $REPEAT repeats, $ROWS rows"
echo

start=$(date +%s)
"$KEEL" bench commit --engines disk,keel,sqlite --committers "$COMMITTERS" \
    --secs "$SECS" --repeat "$REPEAT" --dir "$DIR" --json "$OUT/commit.json"
echo
"$KEEL" bench insert --engines disk,keel,sqlite --rows "$ROWS" \
    --repeat "$REPEAT" --dir "$DIR" --json "$OUT/insert.json"
echo
echo "total: $(( $(date +%s) - start )) s; JSON: $OUT/commit.json, $OUT/insert.json"
