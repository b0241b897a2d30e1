#!/usr/bin/env bash
# slurm_local.sh COMMAND [ARGS...]
#
# Run COMMAND against a throw-away one-node Slurm cluster on this machine:
# start munged, slurmctld and slurmd with a minimal configuration in a
# temporary folder (own munge socket and key, own ports, so nothing of the
# machine's own Slurm or munge is touched), export SLURM_CONF, run COMMAND,
# then stop the daemons this script started (by their pid files) and remove
# the folder. Installs nothing. Exit status: COMMAND's, or 77 (skip) when
# Slurm or munge is not installed, or 1 when the cluster does not come up.
#
# Needs root (the daemons run as root, munged as the munge user). Choices
# that make it work in sandboxed CI machines: proctrack/linuxproc and
# task/none (the cgroup plugins need a freezer cgroup such machines lack),
# no accounting; jobs use srun --mpi=pmix (Debian's Open MPI does not start
# under pmi2) and --overcommit when there are more tasks than CPUs.
set -euo pipefail

for tool in munged mungekey slurmctld slurmd sbatch sinfo scontrol srun; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "slurm_local: $tool is not installed (Debian: slurm-wlm munge" \
            "libpmix-dev); skipping" >&2
        exit 77
    fi
done
if ! id munge >/dev/null 2>&1; then
    echo "slurm_local: no munge user (package munge not installed); skipping" >&2
    exit 77
fi
if [ "$(id -u)" != 0 ]; then
    echo "slurm_local: needs root to start slurmd; skipping" >&2
    exit 77
fi
[ $# -ge 1 ] || { echo "usage: slurm_local.sh COMMAND [ARGS...]" >&2; exit 2; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/snarm-slurm-XXXXXX")
chmod 755 "$dir" # munged (as munge) must reach its folder inside
conf=$dir/slurm.conf

# Stop only what this script started, by pid file, then remove the folder.
stop_pidfile() { # stop_pidfile FILE NAME
    local pid
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "slurm_local: $2 ($pid) did not stop; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pidfile "$dir/slurmd.pid" slurmd
    stop_pidfile "$dir/slurmctld.pid" slurmctld
    stop_pidfile "$dir/munge/munged.pid" munged
    rm -rf "$dir"
}
trap cleanup EXIT

# A TCP port nobody listens on (bash's /dev/tcp: a refused connection).
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "slurm_local: no free port found" >&2
    return 1
}

# munge: our own key and socket, the daemon as the munge user.
install -d -o munge -g munge -m 0755 "$dir/munge" # clients reach the socket
mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null 2>&1 ||
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$dir/munge/munge.key"
chmod 0400 "$dir/munge/munge.key"
runuser -u munge -- munged --socket="$dir/munge/munge.socket" \
    --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"

# The minimal configuration: one node (this host), one partition.
host=$(hostname -s)
mkdir -p "$dir/state" "$dir/spool"
cat >"$conf" <<EOF
ClusterName=snarmtest
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=snarm Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf

# The daemons detach; the configuration path must be absolute for that.
slurmctld -f "$conf"
slurmd -f "$conf"
up=0
for _ in $(seq 1 300); do
    if [ "$(sinfo -h -N -o %t 2>/dev/null | head -n 1)" = idle ]; then
        up=1
        break
    fi
    sleep 0.1
done
if [ $up != 1 ]; then
    echo "slurm_local: the node did not become idle; logs follow" >&2
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" "$dir/munge/munged.log" >&2 || true
    exit 1
fi
echo "slurm_local: cluster up (SLURM_CONF=$conf)" >&2

# The command, with the cluster; its status is ours.
set +e
"$@"
status=$?
set -e
if [ $status != 0 ]; then
    echo "slurm_local: command failed ($status); daemon logs follow" >&2
    tail -n 15 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
fi
exit $status
