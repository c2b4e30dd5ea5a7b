# Runs inside the chroot (cwd = this spec dir copy), sourced by base-images.sh.
# Stand-in for python:3.11-slim-bookworm, from Debian's python3 (3.11).

apt-get install -y -q --no-install-recommends \
  ca-certificates python3 python3-venv python3-pip >/dev/null

# The official image has python/pip in /usr/local/bin; downstream Dockerfiles
# and venvs may refer to either name.
ln -sf /usr/bin/python3 /usr/local/bin/python
ln -sf /usr/bin/python3 /usr/local/bin/python3
ln -sf /usr/bin/pip3 /usr/local/bin/pip
ln -sf /usr/bin/pip3 /usr/local/bin/pip3

# The official image lets `pip install` target the system interpreter; Debian
# marks it "externally managed" (PEP 668) which would make that fail.
rm -f /usr/lib/python3*/EXTERNALLY-MANAGED

# Trust the host's extra CAs (CI egress goes through a TLS-inspecting proxy
# whose CA is only in the host bundle): add each host cert that the image's
# own bundle lacks, then regenerate /etc/ssl/certs/ca-certificates.crt.
if [[ -s host-ca-bundle.crt ]]; then
  pem_lines() { # one cert per line, '|' instead of newlines
    tr -d '\r' <"$1" | awk '
      /-----BEGIN CERTIFICATE-----/ { c = $0; next }
      c != "" { c = c "|" $0 }
      /-----END CERTIFICATE-----/ { if (c != "") print c; c = "" }'
  }
  dest=/usr/local/share/ca-certificates/postwire-host
  mkdir -p "$dest"
  pem_lines /etc/ssl/certs/ca-certificates.crt | LC_ALL=C sort -u >image-certs
  pem_lines host-ca-bundle.crt | LC_ALL=C sort -u | LC_ALL=C comm -23 - image-certs |
    awk -v d="$dest" '{ f = sprintf("%s/host-%03d.crt", d, NR); gsub(/\|/, "\n"); print > f; close(f) }'
  echo "python: adding $(ls "$dest" | wc -l) host CA cert(s) to the image trust store"
  update-ca-certificates >/dev/null
fi

python3 -c 'import ssl, venv, ensurepip; print("python", __import__("sys").version.split()[0])'
