#!/usr/bin/env bash
# Sourced by the end-to-end benchmarks: a PostgreSQL server to benchmark against, never the one a
# machine happens to run. With BENCH_DATABASE_URL (a superuser URL such as
# postgres://postgres@127.0.0.1:5433/postgres) that server is used; otherwise a throwaway cluster is
# started in a temporary directory (initdb as the `postgres` account when run as root, trust
# authentication, 127.0.0.1 on a free port plus a Unix socket, durability off as for the tests) and
# stopped and removed when the benchmark exits.
#
# Afterwards: PGHOST, PGPORT and PGUSER are exported for the client programs, `bench_url DB` prints
# a URL for the binary, and `pg=(...)` holds psql's usual arguments.

bench_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null)
        [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return; }
    fi
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
    d=$(dirname "$(command -v initdb 2>/dev/null)" 2>/dev/null)
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
    echo "benchmark: no PostgreSQL server programs (initdb, postgres) found; install them (apt-get install postgresql) or set BENCH_DATABASE_URL" >&2
    return 1
}

for v in $(env | grep -o '^PG[A-Z]*'); do unset "$v"; done
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
    rest=${BENCH_DATABASE_URL#*://}
    auth=${rest%%@*}; hostport=${rest#*@}; hostport=${hostport%%/*}
    export PGUSER=${auth%%:*} PGHOST=${hostport%%:*} PGPORT=${hostport##*:}
    [ "$PGPORT" = "$hostport" ] && PGPORT=5432
    [ "$auth" != "${auth#*:}" ] && export PGPASSWORD=${auth#*:}
    bench_url() { echo "postgres://$auth@$hostport/$1"; }
else
    bindir=$(bench_bindir)
    bench_cluster=$(mktemp -d "${TMPDIR:-/tmp}/anonymize-bench-cluster.XXXXXX")
    chmod 755 "$bench_cluster"
    as_server=()
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$bench_cluster"
        as_server=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as_server[@]}" "$bindir/initdb" -D "$bench_cluster/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
    "${as_server[@]}" "$bindir/pg_ctl" -D "$bench_cluster/data" -l "$bench_cluster/server.log" -w \
        -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$bench_cluster -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_wal_size=4GB -c shared_buffers=512MB -c maintenance_work_mem=256MB" \
        start >/dev/null
    bench_stop() {
        "${as_server[@]}" "$bindir/pg_ctl" -D "$bench_cluster/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$bench_cluster"
    }
    trap bench_stop EXIT
    export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
    export PATH="$bindir:$PATH"
    bench_url() { echo "postgres://postgres@127.0.0.1:$port/$1"; }
fi
pg=(-X -q)
