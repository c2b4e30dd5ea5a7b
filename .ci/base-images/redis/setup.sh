# Runs inside the chroot (cwd = this spec dir copy), sourced by base-images.sh.
# Stand-in for redis:7-bookworm, from Debian's redis-server (7.0).

# Same fixed uid/gid as the official image.
groupadd -r -g 999 redis
useradd -r -g redis -u 999 -d /var/lib/redis -s /usr/sbin/nologin redis

apt-get install -y -q --no-install-recommends redis-server >/dev/null

install -d -o redis -g redis /data
install -m 755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
redis-server --version
