#!/usr/bin/env bash
# A one-node SLURM cluster for CI (root, Debian/Ubuntu, no systemd, no cgroups, no slurmdbd).
#
#   tests/hpc/slurm_ci.sh start   install slurmctld/slurmd/munge if missing, write
#                                 /etc/slurm/slurm.conf, start munged, slurmctld, slurmd and wait
#                                 until the node is idle
#   tests/hpc/slurm_ci.sh stop    stop the daemons this script started, by their PID files only
#
# State (PID files, logs, spool) lives in $SLURM_CI_STATE (default ${TMPDIR:-/tmp}/slurm-ci).
# The config must be the default /etc/slurm/slurm.conf: the slurm-jobstep plugin strips SLURM_CONF
# from the environment of its inner srun. MinJobAge=3600 lets the executor plugin poll with
# squeue (there is no accounting database for sacct). See the README, "Running on a cluster".
#
# Exit status of `start`: 0 up; 2 not root; 3 the packages are missing and could not be installed;
# 4 another slurmctld/slurmd/munged is already running; 1 any other failure (logs are printed).
set -euo pipefail

STATE=${SLURM_CI_STATE:-${TMPDIR:-/tmp}/slurm-ci}
CONF=/etc/slurm/slurm.conf
DAEMONS=(slurmd slurmctld munged)

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
    [ "$(id -u)" = 0 ] || { log "must run as root (installs packages, writes $CONF)"; exit 2; }
    mkdir -p "$STATE"/{log,spool,ctld}
    install_packages || exit $?
    for d in "${DAEMONS[@]}"; do
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

    # munge: a key (the package's postinst usually made one), its run folder, the daemon
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --force 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    wait_for_file /run/munge/munged.pid 5 || { log "munged did not start"; exit 1; }
    cp /run/munge/munged.pid "$STATE/munged.pid"
    munge -n | unmunge >/dev/null

    mkdir -p /etc/slurm
    cat >"$CONF" <<CONF
# written by tests/hpc/slurm_ci.sh (one-node CI cluster; state in ${STATE})
ClusterName=ci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
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
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/spool
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    /usr/sbin/slurmctld -c -f "$CONF"
    wait_for_file "$STATE/slurmctld.pid" 10 || { log "slurmctld did not start"; tail -n 20 "$STATE/log/slurmctld.log" >&2; exit 1; }
    /usr/sbin/slurmd -f "$CONF"
    wait_for_file "$STATE/slurmd.pid" 10 || { log "slurmd did not start"; tail -n 20 "$STATE/log/slurmd.log" >&2; exit 1; }
    local i
    for ((i = 0; i < 60; i++)); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; then
            log "node ${node} up (CPUs=${cpus} RealMemory=${mem}); state in ${STATE}"
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
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 64
    ;;
esac
