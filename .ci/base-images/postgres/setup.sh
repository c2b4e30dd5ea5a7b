# Runs inside the chroot (cwd = this spec dir copy), sourced by base-images.sh.
# Stand-in for postgres:15-bookworm, from Debian's postgresql-15.

# Same fixed uid/gid as the official image, so data volumes are interchangeable.
groupadd -r -g 999 postgres
useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/bash postgres
install -d -o postgres -g postgres /var/lib/postgresql

# Debian's packaging would create (and start) a "main" cluster in
# /var/lib/postgresql/15/main; the entrypoint runs initdb itself instead.
mkdir -p /etc/postgresql-common
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf

apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null

# Like the official image: new clusters listen on all interfaces.
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" /usr/share/postgresql/15/postgresql.conf.sample
grep -q "^listen_addresses = '\*'" /usr/share/postgresql/15/postgresql.conf.sample

# Socket dir writable for any uid, PGDATA pre-created (modes as upstream).
install -d -o postgres -g postgres -m 3777 /var/run/postgresql
install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
install -d /docker-entrypoint-initdb.d
install -m 755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

/usr/lib/postgresql/15/bin/postgres --version
