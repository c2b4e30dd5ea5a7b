#!/usr/bin/env bash
# Build LOCAL stand-ins for the upstream images postwire uses, from Debian
# packages only (no container registry is reachable from CI machines).
#
# Usage:  sudo bash .ci/base-images.sh [--force] [--refresh-base]
#   --force         rebuild every stand-in even if its tag exists
#   --refresh-base  also re-run debootstrap (implies --force)
# Env:    POSTWIRE_DEBIAN_MIRROR, POSTWIRE_DEBIAN_SECURITY_MIRROR (default: this machine's
#         own apt sources, /etc/apt/sources.list{,.d/*})
#
# Produces (and writes them to /var/cache/postwire/images.env):
#   localhost/postwire-base/debian:bookworm           plain minbase rootfs (docker import)
#   localhost/postwire-base/python:3.11-slim-bookworm  PYTHON_IMAGE
#   localhost/postwire-base/postgres:15-bookworm       POSTGRES_IMAGE
#   localhost/postwire-base/redis:7-bookworm           REDIS_IMAGE
#   localhost/postwire-base/nginx:1-bookworm           NGINX_IMAGE
#   localhost/postwire-base/prometheus:2-bookworm      PROMETHEUS_IMAGE (compose's monitoring profile)
#
# How: debootstrap a slim bookworm minbase once (tarball cached). Each
# stand-in = that rootfs unpacked to a work dir + `apt-get install` inside a
# chroot (host network: nothing goes through container networking or needs
# the TLS proxy's CA) + the files/setup.sh in .ci/base-images/<name>/, then
# `docker build` of .ci/base-images/<name>/Dockerfile (FROM scratch, ADD the
# rootfs tar, then ENV/ENTRYPOINT/CMD metadata). Stand-ins therefore do not
# share a layer with the debian image; each is self-contained.
# Re-runs: a stand-in whose tag exists is skipped (~1 s for the whole script).
# Downloaded .debs are kept in /var/cache/postwire/apt (hard-linked into the
# chroots), so --force rebuilds don't download again.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SPECS=$HERE/base-images
CACHE=/var/cache/postwire
WORK=$CACHE/work
APT_DEBS=$CACHE/apt/archives
BASE_TAR=$CACHE/debian-bookworm-minbase.tar.gz
# The machine's own Debian mirror (its apt sources), so nothing here names a package host.
# $1: "main" (the suite bookworm) or "security" (bookworm-security).
apt_source_uri() {
  local want=$1
  {
    # deb822 (.sources): one stanza per blank-line-separated block
    awk -v want="$want" '
      /^URIs:/ { uri = $2 } /^Suites:/ { suites = $0 }
      /^[[:space:]]*$/ { if (uri != "") emit(); uri = ""; suites = "" }
      END { if (uri != "") emit() }
      function emit() {
        if (want == "security" && suites ~ /-security/) { print uri }
        if (want == "main" && suites ~ /[: ]bookworm( |$)/) { print uri }
      }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    # one-line format (.list)
    awk -v want="$want" '$1 == "deb" {
        for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { uri = $i; suite = $(i + 1); break }
        if ((want == "security") == (suite ~ /-security/)) print uri
      }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  } | head -n 1
}
MIRROR=${POSTWIRE_DEBIAN_MIRROR:-$(apt_source_uri main)}
SECURITY_MIRROR=${POSTWIRE_DEBIAN_SECURITY_MIRROR:-$(apt_source_uri security)}
REPO=localhost/postwire-base
BASE_IMAGE=$REPO/debian:bookworm

# name -> tag of the stand-in (name is also the spec dir under .ci/base-images/)
declare -A TAGS=(
  [python]=$REPO/python:3.11-slim-bookworm
  [postgres]=$REPO/postgres:15-bookworm
  [redis]=$REPO/redis:7-bookworm
  [nginx]=$REPO/nginx:1-bookworm
  [prometheus]=$REPO/prometheus:2-bookworm
)
ORDER=(python postgres redis nginx prometheus)
# Stand-ins that embed the host's CA bundle: rebuilt when it changes (the
# proxy CA may be re-issued when a machine is reused by a later session).
CA_EMBEDDING=" python "
HOST_CA=/etc/ssl/certs/ca-certificates.crt
HOST_CA_SUM=$(sha256sum "$HOST_CA" 2>/dev/null | cut -c1-16 || true)

FORCE=0 REFRESH_BASE=0
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    --refresh-base) FORCE=1 REFRESH_BASE=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

say() { echo "[base-images] $*" >&2; }
die() { echo "[base-images] ERROR: $*" >&2; exit 1; }
[[ -n $MIRROR && -n $SECURITY_MIRROR ]] ||
  die "no Debian mirror found in this machine's apt sources; set POSTWIRE_DEBIAN_MIRROR and POSTWIRE_DEBIAN_SECURITY_MIRROR"
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot)"

T0=$SECONDS
mkdir -p "$CACHE" "$WORK" "$APT_DEBS"
# One build at a time (two CI steps racing would trample the work dirs).
exec 9>"$CACHE/.lock"
flock 9

bash "$HERE/docker-engine.sh"

# --- host packages ---------------------------------------------------------
missing=()
for p in debootstrap debian-archive-keyring ca-certificates; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Run a bash script inside a rootfs. /proc and a minimal /dev are mounted in
# a private mount namespace, so they vanish with the process: nothing can
# stay mounted under the work dir (which we later rm -rf).
in_chroot() { # rootfs script
  unshare --mount --propagation private -- /bin/sh -c '
    set -e
    mount -t proc proc "$1/proc"
    mount -t tmpfs -o mode=755,size=16m dev "$1/dev"
    cd "$1/dev"
    mknod -m 666 null c 1 3; mknod -m 666 zero c 1 5; mknod -m 666 full c 1 7
    mknod -m 666 random c 1 8; mknod -m 666 urandom c 1 9; mknod -m 666 tty c 5 0
    ln -s /proc/self/fd fd; ln -s fd/0 stdin; ln -s fd/1 stdout; ln -s fd/2 stderr
    mkdir pts shm
    mount -t devpts -o newinstance,ptmxmode=0666 devpts pts; ln -s pts/ptmx ptmx
    exec chroot "$1" /usr/bin/env -i \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
      /bin/bash -euo pipefail -c "$2"' _ "$1" "$2"
}

# Make a rootfs "slim" like the official debian:*-slim images: keep no
# docs/manpages/translations now and tell dpkg to skip them in later installs.
slimify() { # rootfs
  local r=$1
  cat >"$r/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
# as in the official debian slim images
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$r/usr/share/doc" ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$r"/usr/share/{groff,info,linda,lintian,locale,man} ! -type d -delete 2>/dev/null || true
  cat >"$r/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
  # Same suites as the official image (point release + updates + security).
  rm -f "$r/etc/apt/sources.list"
  cat >"$r/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Strip build leftovers; add the official images' apt "docker-clean" config
# (it is only added here, at the end, because during our builds the .debs
# must survive to be hard-linked back into the cache).
finalize() { # rootfs
  local r=$1
  rm -f "$r/usr/sbin/policy-rc.d"
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
    "$r"/var/cache/apt/archives/partial/* "$r"/var/log/apt/* "$r"/var/cache/debconf/*-old \
    "$r"/var/lib/dpkg/*-old "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache
  : >"$r/var/log/dpkg.log"
  : >"$r/var/log/alternatives.log"
  : >"$r/etc/resolv.conf" # docker bind-mounts its own
  rm -f "$r/etc/machine-id" "$r/var/lib/dbus/machine-id"
  cat >"$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
}

tar_rootfs() { # rootfs out.tar[.gz]
  local z=()
  [[ $2 == *.gz ]] && z=(--gzip)
  # docker provides /dev, /proc, /sys itself
  tar --numeric-owner -C "$1" "${z[@]}" -cf "$2" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' .
}

# --- 1. debian minbase rootfs tarball (cached) -------------------------------
if [[ $REFRESH_BASE == 1 || ! -s $BASE_TAR ]]; then
  say "debootstrap bookworm minbase from $MIRROR (once; cached in $BASE_TAR)"
  r=$WORK/base-rootfs
  rm -rf "$r"
  mkdir -p "$CACHE/debootstrap-debs"
  debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-debs" \
    bookworm "$r" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  slimify "$r"
  finalize "$r"
  tar_rootfs "$r" "$WORK/base.tar.gz" # then mv: never leave a half-written cache
  mv "$WORK/base.tar.gz" "$BASE_TAR"
  rm -rf "$r"
fi

if [[ $FORCE == 1 ]] || ! image_exists "$BASE_IMAGE"; then
  say "docker import $BASE_IMAGE"
  old=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)
  docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' \
    "$BASE_TAR" "$BASE_IMAGE" >/dev/null
  new=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
  [[ -n $old && $old != "$new" ]] && docker rmi "$old" >/dev/null 2>&1 || true
fi

# --- 2. stand-ins ----------------------------------------------------------
LISTS_FRESH=0 # apt-get update at most once per run; lists are shared by hard links

build_standin() { # name
  local name=$1 tag=${TAGS[$1]} spec=$SPECS/$1
  local w=$WORK/$name r=$WORK/$name/rootfs ctx=$WORK/$name/ctx t=$SECONDS
  [[ -f $spec/setup.sh && -f $spec/Dockerfile ]] || die "missing $spec/{setup.sh,Dockerfile}"
  say "building $tag"
  rm -rf "$w"
  mkdir -p "$r" "$ctx"
  tar -C "$r" -xzf "$BASE_TAR"

  # Build-time only: host DNS, no service starts from maintainer scripts,
  # no docker-clean hook (it would delete the .debs we want to cache).
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  rm -f "$r/etc/apt/apt.conf.d/docker-clean"

  # apt: reuse lists from earlier in this run and every .deb downloaded before
  if [[ $LISTS_FRESH == 1 ]]; then
    cp -al "$WORK/apt-lists/." "$r/var/lib/apt/lists/"
  else
    in_chroot "$r" 'apt-get update -qq'
    rm -rf "$WORK/apt-lists"
    cp -al "$r/var/lib/apt/lists" "$WORK/apt-lists"
    LISTS_FRESH=1
  fi
  find "$APT_DEBS" -maxdepth 1 -name '*.deb' -exec cp -al -t "$r/var/cache/apt/archives/" {} +

  # The spec dir (setup.sh + files it installs) and the host CA bundle
  mkdir -p "$r/tmp/postwire-setup"
  cp -a "$spec/." "$r/tmp/postwire-setup/"
  if [[ -s $HOST_CA ]]; then
    cp "$HOST_CA" "$r/tmp/postwire-setup/host-ca-bundle.crt"
  fi
  in_chroot "$r" 'cd /tmp/postwire-setup && . ./setup.sh' ||
    die "setup of $name failed (rootfs left in $r)"

  # keep new .debs for next time (hard links: free)
  find "$r/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -aln -t "$APT_DEBS/" {} +

  finalize "$r"
  tar_rootfs "$r" "$ctx/rootfs.tar"
  cp "$spec/Dockerfile" "$ctx/Dockerfile"
  local old new
  old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  # classic builder: works with both the 20.10 and the 28.x docker CLI and
  # needs no buildx plugin; output only shown on failure (it's noisy)
  local out
  out=$(DOCKER_BUILDKIT=0 docker build -q -t "$tag" \
    --label "org.postwire.host-ca=$HOST_CA_SUM" "$ctx" 2>&1) ||
    { echo "$out" >&2; die "docker build of $tag failed"; }
  new=$(docker image inspect -f '{{.Id}}' "$tag")
  # drop the image this one replaced (on --force), unless something uses it
  [[ -n $old && $old != "$new" ]] && docker rmi "$old" >/dev/null 2>&1 || true
  rm -rf "$w"
  say "built $tag in $((SECONDS - t))s"
}

ca_changed() { # name -> true if the image embeds an older host CA bundle
  [[ $CA_EMBEDDING == *" $1 "* ]] || return 1
  [[ $(docker image inspect -f '{{index .Config.Labels "org.postwire.host-ca"}}' "${TAGS[$1]}") != "$HOST_CA_SUM" ]]
}

for name in "${ORDER[@]}"; do
  if [[ $FORCE == 0 ]] && image_exists "${TAGS[$name]}"; then
    if ca_changed "$name"; then
      say "host CA bundle changed since ${TAGS[$name]} was built: rebuilding"
      build_standin "$name"
    else
      say "up to date: ${TAGS[$name]} (use --force to rebuild)"
    fi
  else
    build_standin "$name"
  fi
done
rm -rf "$WORK/apt-lists"

# --- 3. env file for CI + summary --------------------------------------------
cat >"$CACHE/images.env.tmp" <<EOF
# written by .ci/base-images.sh: local stand-ins for the upstream images
PYTHON_IMAGE=${TAGS[python]}
POSTGRES_IMAGE=${TAGS[postgres]}
REDIS_IMAGE=${TAGS[redis]}
NGINX_IMAGE=${TAGS[nginx]}
PROMETHEUS_IMAGE=${TAGS[prometheus]}
EOF
mv "$CACHE/images.env.tmp" "$CACHE/images.env"

echo "stand-in images (env file: $CACHE/images.env):"
for tag in "$BASE_IMAGE" "${TAGS[python]}" "${TAGS[postgres]}" "${TAGS[redis]}" "${TAGS[nginx]}"; do
  printf '  %-50s %s\n' "$tag" "$(docker image ls --format '{{.Size}}' "$tag")"
done
say "done in $((SECONDS - T0))s"
