#!/bin/sh
# Mirrors the official redis image's entrypoint: options-only commands go to
# redis-server, which runs as the redis user (uid 999).
set -e

# `docker run IMAGE --appendonly yes` or `... /path/redis.conf` -> redis-server ...
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

if [ "$1" = redis-server ]; then
  # The official image compiles redis with protected-mode off (it listens on
  # all interfaces without a password); Debian's binary defaults to on and
  # would refuse clients from other containers. Turn it off the same way,
  # unless a config file is given (it decides) or the user set it already.
  case " $* " in
    *" --protected-mode "*) ;;
    *)
      if [ $# -eq 1 ] || [ "${2#-}" != "$2" ]; then
        shift
        set -- redis-server --protected-mode no "$@"
      fi
      ;;
  esac
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
  fi
fi

# set an appropriate umask (if one isn't set already), as upstream
um="$(umask)"
if [ "$um" = '0022' ]; then umask 0077; fi

exec "$@"
