# Runs inside the chroot (cwd = this spec dir copy), sourced by base-images.sh.
# Stand-in for prom/prometheus, from Debian's prometheus package.
apt-get install -y -q --no-install-recommends prometheus >/dev/null
install -d -o nobody -g nogroup /prometheus
prometheus --version 2>&1 | head -n 1
