#!/usr/bin/env bash
# A one-node SLURM cluster for CI (root, Debian/Ubuntu, no systemd, no cgroups, no slurmdbd).
#
#   tests/hpc/slurm_ci.sh start   install slurmctld/slurmd/munge if missing (apt-get), write the
#                                 cluster's slurm.conf and munge key into $SLURM_CI_STATE, start
#                                 munged, slurmctld and slurmd from there and wait until the node
#                                 is idle
#   tests/hpc/slurm_ci.sh install only install the packages if missing (what start does first)
#   tests/hpc/slurm_ci.sh stop    stop the daemons this script started, by their PID files only
#
# Everything lives in $SLURM_CI_STATE (default ${TMPDIR:-/tmp}/slurm-ci): slurm.conf, the munge
# key, socket and logs, PID files, spool, and bin/srun. /etc is never written (installing the
# Debian packages is the only change to the machine; munge's post-install script creates
# /etc/munge/munge.key, which this cluster does not use): the daemons get the config with -f, the
# clients through SLURM_CONF, and munge runs on its own key and socket (AuthInfo=socket=...).
# The cluster uses its own ports (SLURM_CI_PORT, default 16817, and the next one), so a client
# that fell back to a system /etc/slurm/slurm.conf would fail instead of passing by chance.
#
# Clients: `source $SLURM_CI_STATE/env` sets SLURM_CONF and puts $SLURM_CI_STATE/bin first on
# PATH. bin/srun is srun with SLURM_CONF set: the slurm-jobstep executor plugin runs each job
# through an inner srun whose environment it strips of every SLURM_* variable, SLURM_CONF too.
# MinJobAge=3600 lets the executor plugin poll with squeue (there is no accounting database for
# sacct). See docs/cluster.md.
#
# Exit status of `start` (and `install`): 0 up (installed); 2 not root; 3 the packages are missing and could not be installed;
# 4 a slurmctld/slurmd is already running; 1 any other failure (logs are printed).
set -euo pipefail

STATE=${SLURM_CI_STATE:-${TMPDIR:-/tmp}/slurm-ci}
CONF=$STATE/slurm.conf
MUNGE=$STATE/munge
PORT=${SLURM_CI_PORT:-16817}
DAEMONS=(slurmd slurmctld munged)
export SLURM_CONF=$CONF

log() { echo "slurm_ci: $*" >&2; }

install_packages() {
    local need=0
    for exe in slurmctld slurmd sinfo squeue sbatch munged mungekey; do
        command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || need=1
    done
    [ "$need" = 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        log "SLURM is not installed and apt-get is not available"
        return 3
    fi
    log "installing slurmctld slurmd slurm-client munge with apt-get"
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge; } >"$STATE/log/apt.log" 2>&1; then
        tail -n 20 "$STATE/log/apt.log" >&2
        log "apt-get could not install slurmctld slurmd slurm-client munge"
        return 3
    fi
}

running() { # running NAME: is a process with exactly this command name alive?
    local pid
    for pid in /proc/[0-9]*; do
        [ "$(cat "$pid/comm" 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}

wait_for_file() { # wait_for_file PATH SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

start() {
    [ "$(id -u)" = 0 ] || { log "must run as root (installs packages, runs the daemons)"; exit 2; }
    mkdir -p "$STATE"/{log,spool,ctld,bin} "$MUNGE"
    install_packages || exit $?
    for d in slurmd slurmctld; do
        if running "$d"; then
            log "$d is already running (not started by this script?); stop it first"
            exit 4
        fi
    done
    PATH=/usr/sbin:/usr/bin:$PATH
    local node cpus mem
    node=$(hostname -s)
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem * 9 / 10))

    # munge: this cluster's own key, socket, PID, log and seed files, all in $MUNGE. munged
    # runs as root here (--force: it would refuse otherwise), which suits a throw-away CI node.
    mungekey --create --force --keyfile="$MUNGE/munge.key" 2>/dev/null ||
        dd if=/dev/urandom of="$MUNGE/munge.key" bs=1024 count=1 status=none
    chmod 700 "$MUNGE"
    chmod 400 "$MUNGE/munge.key"
    rm -f "$MUNGE/munged.pid"
    /usr/sbin/munged --force --key-file="$MUNGE/munge.key" --socket="$MUNGE/munge.socket.2" \
        --pid-file="$MUNGE/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$MUNGE/munged.seed"
    wait_for_file "$MUNGE/munged.pid" 5 || { log "munged did not start"; tail -n 20 "$STATE/log/munged.log" >&2; exit 1; }
    cp "$MUNGE/munged.pid" "$STATE/munged.pid"
    munge --socket="$MUNGE/munge.socket.2" -n | unmunge --socket="$MUNGE/munge.socket.2" >/dev/null

    cat >"$CONF" <<CONF
# written by tests/hpc/slurm_ci.sh (one-node CI cluster; state in ${STATE})
ClusterName=ci
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${PORT}
SlurmdPort=$((PORT + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=${MUNGE}/munge.socket.2
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=3600
PlugStackConfig=${STATE}/plugstack.conf
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/spool
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    : >"$STATE/plugstack.conf"
    # srun for the executor plugin's inner job step, which runs without SLURM_CONF
    printf '#!/bin/sh\nSLURM_CONF=%s exec /usr/bin/srun "$@"\n' "$CONF" >"$STATE/bin/srun"
    chmod 755 "$STATE/bin/srun"
    printf 'export SLURM_CONF=%s\nexport PATH=%s/bin:$PATH\n' "$CONF" "$STATE" >"$STATE/env"

    /usr/sbin/slurmctld -c -f "$CONF"
    wait_for_file "$STATE/slurmctld.pid" 10 || { log "slurmctld did not start"; tail -n 20 "$STATE/log/slurmctld.log" >&2; exit 1; }
    /usr/sbin/slurmd -f "$CONF"
    wait_for_file "$STATE/slurmd.pid" 10 || { log "slurmd did not start"; tail -n 20 "$STATE/log/slurmd.log" >&2; exit 1; }
    local i
    for ((i = 0; i < 60; i++)); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; then
            log "node ${node} up (CPUs=${cpus} RealMemory=${mem}); config ${CONF}"
            return 0
        fi
        sleep 0.5
    done
    log "node ${node} did not become idle within 30 s"
    sinfo >&2 || true
    tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    exit 1
}

stop() {
    local d f pid i
    # cancel whatever is still queued or running (a test that failed or timed out), so that no
    # job step outlives the daemons
    if [ -s "$STATE/slurmctld.pid" ] && command -v scancel >/dev/null 2>&1; then
        timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [ -z "$(timeout 5 squeue -h -t PENDING,RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for d in "${DAEMONS[@]}"; do
        f=$STATE/$d.pid
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        # only a process that still is this daemon (the PID may have been reused)
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$d" ]; then
            kill "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [ -d "/proc/$pid" ] || break
                sleep 0.1
            done
            if [ -d "/proc/$pid" ]; then
                log "$d ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
                kill -9 "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$f"
    done
}

case "${1:-}" in
start) start ;;
install)
    [ "$(id -u)" = 0 ] || { log "must run as root (installs packages)"; exit 2; }
    mkdir -p "$STATE/log"
    install_packages || exit $?
    ;;
stop) stop ;;
*)
    echo "usage: $0 start|install|stop" >&2
    exit 64
    ;;
esac
