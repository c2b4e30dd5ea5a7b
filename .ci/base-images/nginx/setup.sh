# Runs inside the chroot (cwd = this spec dir copy), sourced by base-images.sh.
# Stand-in for the official nginx image, from Debian's nginx (1.22).

# The official image's user/group: nginx, uid/gid 101 (compose runs it as
# user "101"). Created before any package can take id 101.
groupadd -r -g 101 nginx
useradd -r -u 101 -g nginx -d /nonexistent -M -s /bin/false -c 'nginx user' nginx

# gettext-base: envsubst, used by the template step of the entrypoint
apt-get install -y -q --no-install-recommends nginx gettext-base >/dev/null

# Official layout: nginx.conf + conf.d/*.conf (no Debian sites-enabled default)
rm -f /etc/nginx/sites-enabled/default
install -m 644 nginx.conf /etc/nginx/nginx.conf
install -d /etc/nginx/conf.d
install -m 644 default.conf /etc/nginx/conf.d/default.conf
test -s /usr/share/nginx/html/index.html

# Logs to the container's stdout/stderr, as upstream
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log

# Debian's compiled-in temp dirs live in /var/lib/nginx; nginx creates them at
# start-up, so they must be writable when it runs unprivileged as uid 101.
install -d -o nginx -g nginx /var/lib/nginx
chown -R nginx:nginx /var/lib/nginx

install -m 755 docker-entrypoint.sh /docker-entrypoint.sh
install -d /docker-entrypoint.d
install -m 755 20-envsubst-on-templates.sh /docker-entrypoint.d/20-envsubst-on-templates.sh

nginx -t
nginx -v
