#!/usr/bin/env bash
# Ensure a Docker engine (dockerd 20.10 from Debian's docker.io) is running on
# this machine, plus docker-compose 1.29. Idempotent: if `docker info` already
# answers it only checks packages and returns (~0.2 s).
#
# Usage:  sudo bash .ci/docker-engine.sh
# Env:    POSTWIRE_DOCKER_STORAGE_DRIVER=overlay2|fuse-overlayfs|vfs  force a driver
#         POSTWIRE_DOCKERD_TIMEOUT=60   seconds to wait for the daemon
#
# Findings for this sandbox (Debian 12 VM, root, cgroup v1 hybrid, nf_tables):
#  * The machine has no init system, so dockerd is started by hand in the
#    background (setsid: it must outlive this script and the CI step).
#  * overlay2 works on the ext4 root (probed below on the docker data dir
#    itself; overlay-on-overlay, e.g. when nested in a container, would fail
#    and we fall back to fuse-overlayfs, then vfs).
#  * Bridge networking + iptables NAT work as shipped (iptables 1.8 nft backend,
#    no kernel modules to load; dockerd turns on ip_forward itself). User-defined
#    bridges get the embedded DNS 127.0.0.11 (service-name / replica DNS), and
#    the host resolver (a non-loopback address) is reachable from containers.
#  * The uplink (eth0) has MTU 1400 < docker's default 1500. Downloads worked
#    with 1500 in tests, but we pass --mtu=<uplink mtu> anyway so build
#    containers on the default bridge (classic builder RUN steps -> pip) can
#    never stall on PMTU black holes. (In dockerd 20.10 --mtu only affects the
#    default bridge; compose networks keep 1500, fine for container<->container.)
#  * No registry is reachable: images come from .ci/base-images.sh.
set -euo pipefail

LOG=/var/log/postwire-dockerd.log
DATA_ROOT=/var/lib/docker
TIMEOUT=${POSTWIRE_DOCKERD_TIMEOUT:-60}

say() { echo "[docker-engine] $*" >&2; }
die() {
  echo "" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  echo "[docker-engine] ERROR: $*" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  if [[ -f $LOG ]]; then echo "--- last lines of $LOG ---" >&2; tail -n 40 "$LOG" >&2; fi
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (starts dockerd, installs packages)"

# --- packages (fresh CI machines have none of this) --------------------------
pkg_missing() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  echo "${missing[*]}"
}
ensure_pkgs() {
  local missing
  missing=$(pkg_missing "$@")
  [[ -z $missing ]] && return 0
  say "installing: $missing"
  export DEBIAN_FRONTEND=noninteractive
  # Keep docker.io's maintainer script from starting a daemon via its
  # init script (other flags, other log): we start dockerd ourselves below.
  local guard=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=1
  fi
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    ((guard)) && rm -f /usr/sbin/policy-rc.d
    die "apt-get install $missing failed"
  }
  ((guard)) && rm -f /usr/sbin/policy-rc.d
  return 0
}
# docker.io pulls containerd + runc; iptables is needed for bridge NAT;
# docker-compose is the v1 (1.29) python tool the product's CI uses.
ensure_pkgs docker.io docker-compose iptables ca-certificates

if docker info >/dev/null 2>&1; then
  say "engine already running ($(docker info --format '{{.ServerVersion}} / {{.Driver}}'))"
  exit 0
fi

# If a dockerd is already alive (e.g. still starting up), don't start a second.
dockerd_alive() {
  [[ -f /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null
}

# --- storage driver -----------------------------------------------------------
overlay_works() {
  # Probe a real overlay mount on the same filesystem as the docker data root.
  local t rc=1
  mkdir -p "$DATA_ROOT"
  t=$(mktemp -d "$DATA_ROOT/.overlay-probe.XXXXXX")
  mkdir -p "$t"/{lower,upper,work,merged}
  echo x >"$t/lower/f"
  if mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work" "$t/merged" 2>/dev/null; then
    if echo y >"$t/merged/f" && [[ $(cat "$t/upper/f") == y ]]; then rc=0; fi
    umount "$t/merged" || true
  fi
  rm -rf "$t"
  return $rc
}

pick_driver() {
  if [[ -n ${POSTWIRE_DOCKER_STORAGE_DRIVER:-} ]]; then echo "$POSTWIRE_DOCKER_STORAGE_DRIVER"; return; fi
  # Reuse whatever driver already holds images (switching would hide them).
  local d
  for d in overlay2 fuse-overlayfs vfs; do
    if [[ -d $DATA_ROOT/$d && -n $(ls -A "$DATA_ROOT/$d" 2>/dev/null) ]]; then echo "$d"; return; fi
  done
  if overlay_works; then echo overlay2; return; fi
  if [[ -e /dev/fuse ]]; then
    ensure_pkgs fuse-overlayfs
    echo fuse-overlayfs; return
  fi
  echo vfs # always works, but slow and disk-hungry
}

uplink_mtu() {
  local dev
  dev=$(ip route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="dev"){print $(i+1); exit}}')
  [[ -n $dev && -r /sys/class/net/$dev/mtu ]] && cat "/sys/class/net/$dev/mtu" || echo 1500
}

if dockerd_alive; then
  say "dockerd (pid $(cat /var/run/docker.pid)) is alive but not answering yet; waiting"
else
  driver=$(pick_driver)
  mtu=$(uplink_mtu)
  (( mtu > 1500 )) && mtu=1500
  say "starting dockerd (storage-driver=$driver, mtu=$mtu), log: $LOG"
  echo "==== $(date -u +%FT%TZ) starting dockerd storage-driver=$driver mtu=$mtu" >>"$LOG"
  # setsid+nohup: detach from this shell/CI step so the daemon keeps running.
  setsid nohup /usr/sbin/dockerd \
    --storage-driver="$driver" \
    --mtu="$mtu" \
    --data-root="$DATA_ROOT" \
    >>"$LOG" 2>&1 </dev/null &
  started_pid=$! # setsid/nohup exec in place, so this is dockerd's pid
fi

for ((i = 0; i < TIMEOUT * 2; i++)); do
  if docker info >/dev/null 2>&1; then
    say "engine up after ~$((i / 2))s: $(docker info --format 'server {{.ServerVersion}}, driver {{.Driver}}, cgroup v{{.CgroupVersion}}')"
    exit 0
  fi
  # Fail fast if the daemon died instead of waiting out the whole timeout.
  if [[ -n ${started_pid:-} ]] && ! kill -0 "$started_pid" 2>/dev/null; then
    die "dockerd exited during startup"
  fi
  sleep 0.5
done
die "dockerd did not answer 'docker info' within ${TIMEOUT}s"
