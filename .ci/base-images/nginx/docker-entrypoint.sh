#!/bin/sh
# As the official nginx image's entrypoint: when starting nginx, run the
# executable scripts in /docker-entrypoint.d (*.sh) and source *.envsh.
set -e

entrypoint_log() {
  if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then echo "$@"; fi
}

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
  for f in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
    case "$f" in
      *.envsh)
        if [ -x "$f" ]; then entrypoint_log "$0: Sourcing $f"; . "$f"
        else entrypoint_log "$0: Ignoring $f, not executable"; fi ;;
      *.sh)
        if [ -x "$f" ]; then entrypoint_log "$0: Launching $f"; "$f"
        else entrypoint_log "$0: Ignoring $f, not executable"; fi ;;
      *) entrypoint_log "$0: Ignoring $f" ;;
    esac
  done
  entrypoint_log "$0: Configuration complete; ready for start up"
fi

exec "$@"
