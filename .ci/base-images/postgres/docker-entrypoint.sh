#!/usr/bin/env bash
# Small re-implementation of the official postgres image's entrypoint, for the
# interface postwire's compose files use:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256),
#   *_FILE variants (docker secrets), /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz},
#   PGDATA (default /var/lib/postgresql/data).
# Starts as root -> fixes ownership -> re-runs itself as postgres (like upstream).
set -Eeuo pipefail
shopt -s nullglob

# file_env VAR [DEFAULT]: VAR or the contents of the file named by VAR_FILE
file_env() {
  local var=$1 file_var="${1}_FILE" val=${2:-}
  if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
    echo >&2 "error: both $var and $file_var are set (but are exclusive)"; exit 1
  fi
  if [[ -n ${!var:-} ]]; then val=${!var}
  elif [[ -n ${!file_var:-} ]]; then val=$(<"${!file_var}"); fi
  export "$var=$val"
  unset "$file_var"
}

# `docker run IMAGE -c foo=bar` -> postgres -c foo=bar; anything else (psql,
# bash, pg_isready, ...) just runs.
if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi
if [[ ${1:-} != postgres ]]; then exec "$@"; fi

export PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [[ $(id -u) == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 700 "$PGDATA"
  HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups \
    "${BASH_SOURCE[0]}" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
export POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
       (or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password)
MSG
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA" 2>/dev/null || :

  # local (socket/127.0.0.1) connections: trust, as upstream; others: below
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
  if [[ -n $POSTGRES_PASSWORD ]]; then
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  else
    initdb --username="$POSTGRES_USER" $POSTGRES_INITDB_ARGS
  fi
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # Temporary server on the unix socket only: create the DB, run init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ $POSTGRES_DB != postgres ]]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh) echo "running $f"; if [[ -x $f ]]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'PostgreSQL init process complete; ready for start up.'
fi

# Run postgres as a child and turn SIGTERM (and SIGINT) into SIGINT, i.e.
# "fast" shutdown: a bare SIGTERM means "smart" shutdown to postgres, which
# waits for every client (e.g. pooled Django connections) to disconnect.
"$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null || :' TERM INT
set +e
while :; do
  wait "$pid"; rc=$?
  kill -0 "$pid" 2>/dev/null || break # still running: wait was cut short by a trap
done
exit "$rc"
