#!/usr/bin/env bash
# guildlite's SLURM test fixture: a real SLURM on this machine, as root, without systemd.
#
#   tests/slurm/cluster.sh up [single|multi]   start a cluster (default single), wait until its nodes are idle
#   tests/slurm/cluster.sh down                stop whichever cluster is up (by pid files only), undo namespaces
#   tests/slurm/cluster.sh status              print the kind that is up ("single", "multi") or nothing
#
# single: munged + slurmctld + one slurmd (node "localhost"), partition "debug".
# multi:  munged + slurmctld + two slurmd "hosts" gl-n1, gl-n2, each in its own network namespace (own IP on the
#         bridge glbr0) and UTS namespace (own hostname), so torchrun's c10d rendezvous really crosses hosts.
# Both write /etc/slurm/slurm.conf (the path every client reads): only one kind can be up; `up` of one kind
# takes the other down first.
# Needs: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge iproute2 util-linux
# Pitfalls handled: `ip netns exec` remounts /sys so slurmd finds no cgroup fs -> enter only the net namespace with
# nsenter; torchrun picks the c10d store host by hostname -> each host its own UTS namespace; SlurmctldHost must be
# this machine's hostname; RealMemory must not exceed what slurmd detects (else the node drains).
set -euo pipefail
SB=${GUILDLITE_SLURM_SANDBOX:-/tmp/guildlite-slurm}
KIND_FILE=$SB/kind
BR=glbr0; NET=10.250.0; NHOSTS=2

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

need() {
  [[ $(uname -s) == Linux ]] || die "needs Linux"
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  for b in munged slurmctld slurmd sinfo sbatch; do
    command -v $b >/dev/null || die "$b missing: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
  done
}

start_munge() {
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  fi
  if ! alive /run/munge/munged.pid; then
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

common_conf() {  # clustername
  cat <<EOC
ClusterName=$1
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SB/spool/ctld
SlurmctldPidFile=$SB/run/slurmctld.pid
SlurmctldLogFile=$SB/log/slurmctld.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerParameters=sched_interval=2
MinJobAge=600
KillWait=10
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
EOC
}

wait_idle() {  # count
  for _ in $(seq 240); do
    idle=$(sinfo -h -t idle -o '%D' 2>/dev/null | paste -sd+ | bc 2>/dev/null || true)
    [[ "$idle" == "$1" ]] && return 0
    for n in $(sinfo -h -t drain,down -o '%N' 2>/dev/null); do scontrol update NodeName="$n" State=RESUME 2>/dev/null || true; done
    sleep 0.25
  done
  sinfo >&2 || true; tail -n 20 "$SB"/log/*.log >&2 || true
  die "nodes not idle after 60 s"
}

up_single() {
  local mem=$(( $(free -m | awk '/^Mem:/{print $2}') - 512 ))
  mkdir -p "$SB"/{spool/ctld,spool/d,log,run} /etc/slurm
  start_munge
  { common_conf guildlite-single
    cat <<EOC
SlurmctldHost=localhost
SlurmdSpoolDir=$SB/spool/d
SlurmdPidFile=$SB/run/slurmd.pid
SlurmdLogFile=$SB/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOC
  } > /etc/slurm/slurm.conf
  echo single > "$KIND_FILE"
  alive "$SB/run/slurmctld.pid" || /usr/sbin/slurmctld -c -i
  alive "$SB/run/slurmd.pid" || /usr/sbin/slurmd -N localhost
  wait_idle 1
}

up_multi() {
  local mem=${GUILDLITE_SLURM_NODE_MEM:-4000}
  mkdir -p "$SB"/{spool/ctld,log,run} /etc/slurm
  ip link show $BR >/dev/null 2>&1 || { ip link add $BR type bridge; ip addr add $NET.1/24 dev $BR; ip link set $BR up; }
  for i in $(seq 1 $NHOSTS); do
    h=gl-n$i
    if [[ ! -e /var/run/netns/$h ]]; then
      ip netns add $h
      ip link add veth-$h type veth peer name eth0 netns $h
      ip link set veth-$h master $BR; ip link set veth-$h up
      ip -n $h addr add $NET.$((10 + i))/24 dev eth0; ip -n $h link set eth0 up; ip -n $h link set lo up
      ip -n $h route add default via $NET.1
    fi
    grep -q " $h\$" /etc/hosts || echo "$NET.$((10 + i)) $h" >> /etc/hosts
  done
  start_munge
  { common_conf guildlite-multi
    echo "SlurmctldHost=$(hostname)($NET.1)"
    echo "SlurmdSpoolDir=$SB/spool/%n"
    echo "SlurmdPidFile=$SB/run/slurmd.%n.pid"
    echo "SlurmdLogFile=$SB/log/slurmd.%n.log"
    for i in $(seq 1 $NHOSTS); do echo "NodeName=gl-n$i NodeAddr=$NET.$((10 + i)) CPUs=$(nproc) RealMemory=$mem"; done
    echo "PartitionName=debug Nodes=$(seq -f 'gl-n%g' 1 $NHOSTS | paste -sd,) Default=YES MaxTime=INFINITE State=UP"
  } > /etc/slurm/slurm.conf
  echo multi > "$KIND_FILE"
  alive "$SB/run/slurmctld.pid" || /usr/sbin/slurmctld -c -i
  for i in $(seq 1 $NHOSTS); do
    h=gl-n$i; mkdir -p "$SB/spool/$h"
    alive "$SB/run/slurmd.$h.pid" || nsenter --net=/var/run/netns/$h unshare --uts sh -c "hostname $h; exec /usr/sbin/slurmd -N $h"
  done
  wait_idle $NHOSTS
}

stop_pidfile() {
  local pf=$1 pid
  [[ -s $pf ]] || return 0
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pf"
}

down() {
  if alive "$SB/run/slurmctld.pid"; then
    scancel --full --user=root 2>/dev/null || true
    for _ in $(seq 100); do [[ -z $(squeue -h -t R,CG 2>/dev/null) ]] && break; sleep 0.1; done
  fi
  for pf in "$SB"/run/slurmd*.pid; do stop_pidfile "$pf"; done
  stop_pidfile "$SB/run/slurmctld.pid"
  stop_pidfile /run/munge/munged.pid
  for ns in $(ip netns list 2>/dev/null | awk '/^gl-n[0-9]+/{print $1}'); do ip link del "veth-$ns" 2>/dev/null || true; ip netns del "$ns"; done
  ip link del $BR 2>/dev/null || true
  [[ -f /etc/hosts ]] && sed -i '/ gl-n[0-9]*$/d' /etc/hosts
  rm -rf "$SB/spool" "$KIND_FILE"
}

cmd=${1:-}
case "$cmd" in
  up)
    kind=${2:-single}
    [[ $kind == single || $kind == multi ]] || die "unknown kind '$kind' (single or multi)"
    need
    mkdir -p "$SB"
    cur=$(cat "$KIND_FILE" 2>/dev/null || true)
    if [[ -n $cur && $cur != "$kind" ]]; then down; fi
    if [[ $cur == "$kind" ]] && alive "$SB/run/slurmctld.pid"; then wait_idle $([[ $kind == single ]] && echo 1 || echo $NHOSTS); exit 0; fi
    [[ $kind == single ]] && up_single || up_multi
    echo "slurm: $kind cluster up"
    ;;
  down) down; echo "slurm: down" ;;
  status) cat "$KIND_FILE" 2>/dev/null || true ;;
  *) echo "usage: $0 up [single|multi] | down | status" >&2; exit 2 ;;
esac
