#!/usr/bin/env bash
# Smoke test for .ci/docker-engine.sh + .ci/base-images.sh: runs the stand-in
# images the way postwire's compose stack uses them (docker-compose 1.29),
# then removes everything it created (keeps the stand-in images).
#
# Usage:  sudo bash .ci/base-images-smoke.sh [--pip]
#   --pip  also `docker build` (classic builder) FROM the python stand-in and
#          pip-install django + psycopg[binary] from PyPI (through the proxy)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WITH_PIP=0
[[ ${1:-} == --pip ]] && WITH_PIP=1

bash "$HERE/base-images.sh" >/dev/null
set -a
# shellcheck disable=SC1091
. /var/cache/postwire/images.env
set +a

P=pwsmoke$$
DIR=$(mktemp -d /tmp/pwsmoke.XXXXXX)
FAILS=0 PASSES=0
ok() { echo "PASS: $*"; PASSES=$((PASSES + 1)); }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
dc() { docker-compose -p "$P" -f "$DIR/docker-compose.yml" "$@"; }
cleanup() {
  dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  docker rmi "$P-pip:test" >/dev/null 2>&1 || true
  # the classic builder leaves the untagged `build` stage image behind
  docker image prune -f --filter "label=org.postwire.smoke=$P" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

cat >"$DIR/smoke.conf" <<'EOF'
server {
    listen 8080;
    location = / { return 200 "nginx-ok\n"; }
    # resolves the compose service name through the embedded DNS
    location /ws/ { proxy_pass http://ws:8000/; }
}
EOF
cat >"$DIR/docker-compose.yml" <<'EOF'
version: "3.8"
services:
  db:
    image: ${POSTGRES_IMAGE}
    environment:
      POSTGRES_PASSWORD: x
      POSTGRES_USER: postwire
      POSTGRES_DB: postwire
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $$POSTGRES_USER"]
      interval: 1s
      timeout: 3s
      retries: 60
  redis:
    image: ${REDIS_IMAGE}
    command: redis-server --appendonly no --save ""
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 3s
      retries: 30
  ws: # replicated like the Daphne ws service
    image: ${PYTHON_IMAGE}
    command: python -m http.server 8000
  nginx:
    image: ${NGINX_IMAGE}
    user: "101"
    depends_on: [ws]
    ports: ["127.0.0.1::8080"]
    volumes: ["./smoke.conf:/etc/nginx/conf.d/smoke.conf:ro"]
  pgclient:
    image: ${POSTGRES_IMAGE}
    profiles: [tools]
  tools:
    image: ${REDIS_IMAGE}
    profiles: [tools]
EOF

wait_healthy() { # service
  local id s
  id=$(dc ps -q "$1")
  for _ in $(seq 60); do
    s=$(docker inspect -f '{{.State.Health.Status}}' "$id")
    [[ $s == healthy ]] && return 0
    sleep 1
  done
  docker logs "$id" 2>&1 | tail -20
  return 1
}

t=$SECONDS
dc up -d --scale ws=2 2>&1 | sed 's/^/  compose: /'
wait_healthy db && ok "postgres healthy via pg_isready ($((SECONDS - t))s)" || bad "postgres not healthy"
wait_healthy redis && ok "redis healthy via redis-cli ping" || bad "redis not healthy"

out=$(dc run --rm -T -e PGPASSWORD=x pgclient psql -h db -U postwire -d postwire -tAc \
  "select current_user || ' ' || current_database() || ' ' || current_setting('password_encryption')" 2>"$DIR/err") ||
  cat "$DIR/err"
[[ $out == "postwire postwire scram-sha-256" ]] && ok "psql over the network by service name: $out" || bad "psql: $out"
if dc run --rm -T -e PGPASSWORD=wrong pgclient psql -h db -U postwire -d postwire -c 'select 1' >/dev/null 2>&1; then
  bad "wrong password accepted (host auth not scram?)"
else ok "wrong password rejected"; fi

out=$(dc run --rm -T tools redis-cli -h redis ping 2>"$DIR/err") || cat "$DIR/err"
[[ $out == PONG ]] && ok "redis-cli -h redis ping: $out" || bad "redis-cli: $out"

hosts=$(dc run --rm -T tools getent hosts ws 2>"$DIR/err") || cat "$DIR/err"
n=$(grep -c . <<<"$hosts" || true)
[[ $n == 2 ]] && ok "getent hosts ws -> $n addresses (2 replicas): ${hosts//$'\n'/; }" || bad "getent hosts ws -> $n addresses"

port=$(dc port nginx 8080 | sed 's/.*://')
http_get() { # url
  if command -v curl >/dev/null; then curl -fsS --max-time 5 "$1"
  else python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")' "$1"; fi
}
out=$(http_get "http://127.0.0.1:$port/" 2>&1) || true
[[ $out == nginx-ok ]] && ok "nginx as uid 101 on :8080, published to 127.0.0.1:$port" || bad "nginx: $out"
out=$(http_get "http://127.0.0.1:$port/ws/" 2>&1 | head -c 300) || true
[[ $out == *"Directory listing"* ]] && ok "nginx -> proxy_pass http://ws:8000 (service DNS)" || bad "nginx proxy: $out"
uid=$(docker top "$(dc ps -q nginx)" -o uid,pid | awk 'NR>1 {print $1}' | sort -u | tr '\n' ' ')
[[ $uid == "101 " ]] && ok "nginx processes run as uid 101" || bad "nginx uids: $uid"

# fast shutdown even with a client holding a connection (SIGTERM -> fast)
dc run -d --name "$P-holder" -e PGPASSWORD=x pgclient psql 2>/dev/null -h db -U postwire -c 'select pg_sleep(60)' >/dev/null
sleep 1
t=$SECONDS
docker kill -s TERM "$(dc ps -q db)" >/dev/null
docker wait "$(dc ps -q db)" >/dev/null
d=$((SECONDS - t))
((d <= 3)) && ok "postgres exits ${d}s after SIGTERM with an open session" || bad "postgres SIGTERM took ${d}s"
docker rm -fv "$P-holder" >/dev/null 2>&1 || true

if [[ $WITH_PIP == 1 ]]; then
  mkdir -p "$DIR/pip"
  cat >"$DIR/pip/Dockerfile" <<'EOF'
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE} AS build
ARG SMOKE
LABEL org.postwire.smoke=${SMOKE}
RUN python -m venv /opt/venv && /opt/venv/bin/pip install django==5.2.19 "psycopg[binary]==3.3.9"
FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home app
USER app
RUN /opt/venv/bin/python -c "import django, psycopg; print('django', django.get_version(), 'psycopg', psycopg.__version__)"
EOF
  t=$SECONDS
  if DOCKER_BUILDKIT=0 docker build --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg SMOKE="$P" -t "$P-pip:test" "$DIR/pip" >"$DIR/pip.log" 2>&1; then
    ok "pip install from PyPI inside classic docker build ($((SECONDS - t))s): $(grep -m1 '^django ' "$DIR/pip.log")"
  else
    tail -30 "$DIR/pip.log"; bad "pip inside docker build"
  fi
fi

echo "$PASSES passed, $FAILS failed"
((FAILS == 0))
