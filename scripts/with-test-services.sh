#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL cluster and Redis server on free loopback
# ports (installed from Debian when missing), exported as TEST_DATABASE_URL and
# TEST_REDIS_URL, and stopped afterwards. An existing TEST_DATABASE_URL (and
# TEST_REDIS_URL) is used as it is instead.
set -euo pipefail

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

need_packages=()
[[ -n "${TEST_DATABASE_URL:-}" ]] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_packages+=(postgresql)
[[ -n "${TEST_REDIS_URL:-}" ]] || command -v redis-server >/dev/null || need_packages+=(redis-server)
if ((${#need_packages[@]})); then
    echo "civicgate: installing ${need_packages[*]} from Debian..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

workdir="$(mktemp -d /tmp/civicgate-services.XXXXXX)"
chmod 755 "$workdir"
pg_bin=""
cleanup() {
    if [[ -n "$pg_bin" && -f "$workdir/pg/postmaster.pid" ]]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$workdir/pg" -m immediate stop >/dev/null || true
    fi
    if [[ -f "$workdir/redis.pid" ]]; then kill "$(cat "$workdir/redis.pid")" 2>/dev/null || true; fi
    rm -rf "$workdir"
}
trap cleanup EXIT

if [[ -z "${TEST_DATABASE_URL:-}" ]]; then
    pg_bin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
    port="$(free_port)"
    chown postgres "$workdir"
    runuser -u postgres -- "$pg_bin/initdb" -D "$workdir/pg" -A trust -U postgres >/dev/null
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$workdir/pg" -w -l "$workdir/pg.log" \
        -o "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null
    export TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "civicgate: throwaway PostgreSQL on 127.0.0.1:$port"
fi
if [[ -z "${TEST_REDIS_URL:-}" ]]; then
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize yes --pidfile "$workdir/redis.pid" --logfile "$workdir/redis.log"
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    export TEST_REDIS_URL="redis://127.0.0.1:$port"
    echo "civicgate: throwaway Redis on 127.0.0.1:$port"
fi
"$@"
