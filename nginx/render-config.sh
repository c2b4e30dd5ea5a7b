#!/bin/sh
# Renders postwire's nginx.conf from the environment, to stdout.
# The nginx image's entrypoint (compose, Kubernetes) and the local stack all call this script,
# so every deployment runs the same configuration; only the variables below differ.
#
#   POSTWIRE_LISTEN_PORT   port nginx listens on                           (8080: non-root)
#   POSTWIRE_LISTEN_ADDRESS  one address to listen on (the local stack: 127.0.0.1). Unset:
#                          every IPv4 address, and every IPv6 one where the host has IPv6.
#   POSTWIRE_API_SERVERS   gunicorn upstreams, space separated host:port   (api:8000)
#   POSTWIRE_WS_SERVERS    Daphne upstreams, space separated host:port     (ws:8001)
#   POSTWIRE_RESOLVER      a DNS server (127.0.0.11 in compose). When set, nginx re-resolves
#                          the *first* name of each list every 5 s and spreads connections over
#                          all its addresses, so `--scale` and restarted replicas are followed
#                          without touching nginx. Unset: static upstream blocks (least_conn,
#                          counted across workers), resolved at start; a name with several
#                          addresses (a headless Service) becomes one server per address.
#   POSTWIRE_WS_READ_TIMEOUT  idle limit of a proxied WebSocket             (3600s)
#   POSTWIRE_MAX_BODY      request body limit                              (1m)
#   POSTWIRE_NGINX_WS_CONNS_PER_IP  open WebSockets per client address; 0: no limit     (1000)
#   POSTWIRE_NGINX_GRAPHQL_RATE / _BURST  HTTP requests to /graphql per client address,
#                          as nginx's limit_req rate and burst; 0: no limit        (20r/s, 40)
#   POSTWIRE_NGINX_LOGIN_RATE  POSTs to /admin/login/ per client address; 0: none  (10r/m)
#   POSTWIRE_NGINX_REAL_IP_FROM  proxies in front of nginx (space separated CIDRs) whose
#                          X-Forwarded-For names the client; the limits then key on it, and
#                          their X-Forwarded-Proto (a TLS edge's "https") is passed on  (none)
#   POSTWIRE_NGINX_CLIENT_HEADER_TIMEOUT / _CLIENT_BODY_TIMEOUT  a client slower than this
#                          sending its request is cut (slowloris)                 (10s, 10s)
#   POSTWIRE_NGINX_SEND_TIMEOUT  a client not reading a response (or a WebSocket's frames)
#                          for this long is cut                                   (60s)
#   NGINX_RUN_DIR          pid and temp files, writable by the nginx user  (/tmp/nginx)
#   NGINX_WORKER_PROCESSES / NGINX_WORKER_CONNECTIONS / NGINX_WORKER_RLIMIT_NOFILE
#   NGINX_ACCESS_LOG / NGINX_ERROR_LOG                                     (stdout / stderr)
set -eu
: "${POSTWIRE_LISTEN_PORT:=8080}"
: "${POSTWIRE_LISTEN_ADDRESS:=}"
: "${POSTWIRE_API_SERVERS:=api:8000}"
: "${POSTWIRE_WS_SERVERS:=ws:8001}"
: "${POSTWIRE_RESOLVER:=}"
: "${POSTWIRE_WS_READ_TIMEOUT:=3600s}"
: "${POSTWIRE_MAX_BODY:=1m}"
: "${POSTWIRE_NGINX_WS_CONNS_PER_IP:=1000}"
: "${POSTWIRE_NGINX_GRAPHQL_RATE:=20r/s}"
: "${POSTWIRE_NGINX_GRAPHQL_BURST:=40}"
: "${POSTWIRE_NGINX_LOGIN_RATE:=10r/m}"
: "${POSTWIRE_NGINX_REAL_IP_FROM:=}"
: "${POSTWIRE_NGINX_CLIENT_HEADER_TIMEOUT:=10s}"
: "${POSTWIRE_NGINX_CLIENT_BODY_TIMEOUT:=10s}"
: "${POSTWIRE_NGINX_SEND_TIMEOUT:=60s}"
: "${NGINX_RUN_DIR:=/tmp/nginx}"
: "${NGINX_WORKER_PROCESSES:=auto}"
: "${NGINX_WORKER_CONNECTIONS:=8192}"
: "${NGINX_WORKER_RLIMIT_NOFILE:=20000}"
: "${NGINX_ACCESS_LOG:=/dev/stdout}"
: "${NGINX_ERROR_LOG:=/dev/stderr}"

server_lines() {
  for server in $1; do printf '        server %s max_fails=0;\n' "$server"; done
}

if [ -n "$POSTWIRE_RESOLVER" ]; then
  # Dynamic: a variable proxy_pass target is resolved at request time (cached 5 s); nginx picks
  # a random address of the answer per connection. (Upstream blocks resolve once, at start.)
  api_backend=${POSTWIRE_API_SERVERS%% *}
  ws_backend=${POSTWIRE_WS_SERVERS%% *}
  upstreams="resolver $POSTWIRE_RESOLVER valid=5s ipv6=off;
    resolver_timeout 2s;"
else
  api_backend=postwire_api
  ws_backend=postwire_ws
  # A zone shares the upstreams' state between workers: least_conn counts every worker's
  # connections, not just its own.
  upstreams="upstream postwire_api {
        zone postwire_api 256k;
$(server_lines "$POSTWIRE_API_SERVERS")
        keepalive 32;
    }
    upstream postwire_ws {
        zone postwire_ws 256k;
        least_conn;
$(server_lines "$POSTWIRE_WS_SERVERS")
    }"
fi

if [ -n "$POSTWIRE_LISTEN_ADDRESS" ]; then
  listen="listen $POSTWIRE_LISTEN_ADDRESS:$POSTWIRE_LISTEN_PORT;"
elif [ -s /proc/net/if_inet6 ]; then
  listen="listen $POSTWIRE_LISTEN_PORT;
        listen [::]:$POSTWIRE_LISTEN_PORT;"
else
  # No IPv6 on this host (or it is disabled): "listen [::]" would stop nginx from starting.
  listen="listen $POSTWIRE_LISTEN_PORT;"
fi

off() { [ -z "$1" ] || [ "$1" = 0 ] || [ "$1" = off ]; }

# Per client address limits. A zone's key is empty for requests it must not count (nginx
# skips those), so one map decides what each limit sees.
limit_zones=""
ws_limit=""
graphql_limit=""
login_limit=""
if ! off "$POSTWIRE_NGINX_WS_CONNS_PER_IP"; then
  limit_zones="$limit_zones
    map \$http_upgrade \$ws_client {
        default      '';
        ~*websocket  \$binary_remote_addr;
    }
    limit_conn_zone \$ws_client zone=ws_conns:10m;"
  ws_limit="limit_conn ws_conns $POSTWIRE_NGINX_WS_CONNS_PER_IP;"
fi
if ! off "$POSTWIRE_NGINX_GRAPHQL_RATE"; then
  limit_zones="$limit_zones
    map \$http_upgrade \$graphql_http_client {
        default      \$binary_remote_addr;
        ~*websocket  '';
    }
    limit_req_zone \$graphql_http_client zone=graphql:10m rate=$POSTWIRE_NGINX_GRAPHQL_RATE;"
  graphql_limit="limit_req zone=graphql burst=$POSTWIRE_NGINX_GRAPHQL_BURST nodelay;"
fi
if ! off "$POSTWIRE_NGINX_LOGIN_RATE"; then
  # Only the POSTs are login attempts; the form itself (GET) is not counted.
  limit_zones="$limit_zones
    map \$request_method \$login_client {
        default  '';
        POST     \$binary_remote_addr;
    }
    limit_req_zone \$login_client zone=login:1m rate=$POSTWIRE_NGINX_LOGIN_RATE;"
  login_limit="limit_req zone=login burst=5 nodelay;"
fi

# Behind a load balancer or ingress every client would share its address (and its limits).
# X-Forwarded-Proto: the scheme the client used. Behind a TLS edge that is the edge's header
# (believed only from the trusted proxies above); otherwise nginx's own, whatever a client sends.
forwarded_proto="map \$scheme \$forwarded_proto {
        default \$scheme;
    }"
if [ -n "$POSTWIRE_NGINX_REAL_IP_FROM" ]; then
  trusted=""
  for cidr in $POSTWIRE_NGINX_REAL_IP_FROM; do
    trusted="$trusted
        $cidr 1;"
  done
  forwarded_proto="geo \$realip_remote_addr \$from_trusted_proxy {
        default 0;$trusted
    }
    map \"\$from_trusted_proxy:\$http_x_forwarded_proto\" \$forwarded_proto {
        default                 \$scheme;
        ~^1:(?<proto>https?)\$  \$proto;
    }"
fi

real_ip=""
if [ -n "$POSTWIRE_NGINX_REAL_IP_FROM" ]; then
  for cidr in $POSTWIRE_NGINX_REAL_IP_FROM; do
    real_ip="$real_ip
    set_real_ip_from $cidr;"
  done
  real_ip="$real_ip
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;"
fi

cat <<CONF
# Generated by nginx/render-config.sh; edit that script, not this file.
worker_processes $NGINX_WORKER_PROCESSES;
worker_rlimit_nofile $NGINX_WORKER_RLIMIT_NOFILE;
pid $NGINX_RUN_DIR/nginx.pid;
error_log $NGINX_ERROR_LOG warn;

events {
    worker_connections $NGINX_WORKER_CONNECTIONS;
}

http {
    # One line per request (a WebSocket: one line when it closes), with the id the services log.
    log_format postwire '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                        '\$request_time \$upstream_addr rid=\$request_id "\$http_user_agent"';
    access_log $NGINX_ACCESS_LOG postwire;
    client_body_temp_path $NGINX_RUN_DIR/client_body;
    proxy_temp_path $NGINX_RUN_DIR/proxy;
    fastcgi_temp_path $NGINX_RUN_DIR/fastcgi;
    uwsgi_temp_path $NGINX_RUN_DIR/uwsgi;
    scgi_temp_path $NGINX_RUN_DIR/scgi;
    default_type application/octet-stream;
    types {
        text/html html;
        text/css css;
        application/javascript js;
        application/json json;
        image/svg+xml svg;
    }
    sendfile on;
    server_tokens off;
    keepalive_timeout 65s;
    client_max_body_size $POSTWIRE_MAX_BODY;
    client_body_buffer_size 64k;
    large_client_header_buffers 4 16k;
    client_header_timeout $POSTWIRE_NGINX_CLIENT_HEADER_TIMEOUT;
    client_body_timeout $POSTWIRE_NGINX_CLIENT_BODY_TIMEOUT;
    send_timeout $POSTWIRE_NGINX_SEND_TIMEOUT;$real_ip

    $upstreams

    $forwarded_proto

    # Limits per client address (none when all are off). Refusals are 429s with a reason.$limit_zones
    limit_req_status 429;
    limit_conn_status 429;
    map \$limit_conn_status \$limit_reason {
        REJECTED  "too many open WebSockets from your address; close some and retry";
        default   "too many requests from your address; slow down and retry";
    }

    # WebSocket upgrade: "upgrade" for a handshake, empty otherwise so HTTP keepalive works.
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      '';
    }
    # /graphql serves GraphiQL and HTTP GraphQL from gunicorn, and GraphiQL's subscription
    # WebSocket (same URL) from Daphne.
    map \$http_upgrade \$graphql_backend {
        default      $api_backend;
        ~*websocket  $ws_backend;
    }

    server {
        $listen

        # Targets are variables so that, with a resolver, names are looked up per request.
        set \$api_backend $api_backend;
        set \$ws_backend $ws_backend;

        proxy_http_version 1.1;
        proxy_set_header Host \$http_host;
        proxy_set_header X-Real-IP \$remote_addr;
        # A fresh id per request, logged by nginx and the services alike, and told the client.
        proxy_set_header X-Request-ID \$request_id;
        add_header X-Request-ID \$request_id always;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$forwarded_proto;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$connection_upgrade;
        proxy_connect_timeout 5s;
        # A node that fails to connect is skipped, never a request already sent (no replays).
        proxy_next_upstream error timeout;

        error_page 429 @limited;
        location @limited {
            default_type text/plain;
            add_header Retry-After 1 always;
            return 429 "429 Too Many Requests: \$limit_reason\\n";
        }

        # Subscriptions: Daphne pool, unbuffered, idle-tolerant (Daphne pings every 20 s).
        location ~ ^/wsgraphql/?\$ {
            $ws_limit
            proxy_pass http://\$ws_backend;
            proxy_buffering off;
            proxy_read_timeout $POSTWIRE_WS_READ_TIMEOUT;
            proxy_send_timeout $POSTWIRE_WS_READ_TIMEOUT;
        }

        location ~ ^/graphql/?\$ {
            $ws_limit
            $graphql_limit
            proxy_pass http://\$graphql_backend;
            proxy_buffering on;
            proxy_read_timeout $POSTWIRE_WS_READ_TIMEOUT;
        }

        # nginx's own liveness; the services' /healthz and /readyz are probed on each node.
        location = /healthz {
            access_log off;
            default_type text/plain;
            return 200 "ok\n";
        }

        # Metrics are scraped per node, not through the public edge.
        location = /metrics {
            return 404;
        }

        # Django admin's login form: POSTs limited per address (postwire also locks out a
        # username or address after repeated failures, for this form and the GraphQL login).
        location = /admin/login/ {
            $login_limit
            proxy_pass http://\$api_backend;
            proxy_buffering on;
        }

        location / {
            proxy_pass http://\$api_backend;
            proxy_buffering on;
        }
    }
}
CONF
