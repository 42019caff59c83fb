#!/usr/bin/env bash
# Wall time of a `--refresh swap` against the DBA's standard way to clone a database
# (`pg_dump -Fd -j N` then `pg_restore -j N` into an empty database, unmasked) and against
# `--refresh in-place`, on the benchmark database (2,250,000 rows by default), N = cores,
# alternating runs; medians and ratios.
#
#   bash benches/swap_bench.sh [runs=3] [customers=250000] [binary=target/release/anonymize]
#
# A throwaway cluster as refresh_bench.sh (or BENCH_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; customers=${2:-250000}; bin=${3:-target/release/anonymize}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/anonymize-bench}
mkdir -p "$work"
export ANONYMIZE_KEY=bench-key-not-secret-0123456789
n=$(nproc)
source benches/cluster.sh
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# Each timed run starts with nothing left over from the one before: no autovacuum work (an
# in-place load and a restored clone leave 2M inserted rows to VACUUM and ANALYZE, which autovacuum
# would do in the background during whichever run came next, mostly the swap after the clone;
# settled here, untimed, so no strategy is charged for another's) and a flushed buffer pool (an
# untimed CHECKPOINT; a swap's DROP DATABASE of the old staging forces a checkpoint, which would
# otherwise flush the previous run's pages too).
settle() {
    local db
    for db in sw_stg sw_clone; do
        if [ "$(psql "${pg[@]}" -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 1 ]; then
            psql "${pg[@]}" -d "$db" -c "VACUUM (ANALYZE)" >/dev/null
        fi
    done
    while [ "$(psql "${pg[@]}" -At -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" != 0 ]; do
        sleep 0.2
    done
    psql "${pg[@]}" -d postgres -c CHECKPOINT >/dev/null
}
secs() {
    settle
    /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null; cat "$work/t"
}
dump="$work/production-$customers.sql"
[ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
dropdb --if-exists --force sw_src; createdb sw_src
psql "${pg[@]}" -q -v ON_ERROR_STOP=1 -d sw_src -f "$dump" >/dev/null
psql "${pg[@]}" -q -d sw_src -c "VACUUM ANALYZE" >/dev/null
dropdb --if-exists --force sw_stg; createdb sw_stg
pg_dump --schema-only sw_src | psql "${pg[@]}" -q -v ON_ERROR_STOP=1 -d sw_stg >/dev/null
"$bin" --rules rules/customers.toml -q --source "$(bench_url sw_src)" --target "$(bench_url sw_stg)"
ts=(); ti=(); tc=()
for _ in $(seq "$runs"); do
    ts+=("$(secs "$bin" --rules rules/customers.toml -q --source "$(bench_url sw_src)" --target "$(bench_url sw_stg)" --refresh swap --drop-prev)")
    ti+=("$(secs "$bin" --rules rules/customers.toml -q --source "$(bench_url sw_src)" --target "$(bench_url sw_stg)" --refresh in-place)")
    rm -rf "$work/clone.dir"; dropdb --if-exists --force sw_clone; createdb sw_clone
    tc+=("$(secs bash -c "pg_dump -Fd -j $n -f '$work/clone.dir' sw_src && pg_restore -j $n -d sw_clone '$work/clone.dir'")")
done
rm -rf "$work/clone.dir"; dropdb --if-exists --force sw_clone; dropdb --if-exists --force sw_stg; dropdb --if-exists --force sw_src
ms=$(printf '%s\n' "${ts[@]}" | median); mi=$(printf '%s\n' "${ti[@]}" | median); mc=$(printf '%s\n' "${tc[@]}" | median)
echo "swap (--load-connections default, $n cores): median ${ms} s (runs: ${ts[*]})"
echo "in-place:                                 median ${mi} s (runs: ${ti[*]})"
echo "pg_dump -Fd -j $n + pg_restore -j $n:       median ${mc} s (runs: ${tc[*]})"
awk -v s="$ms" -v i="$mi" -v c="$mc" 'BEGIN{printf "swap / clone: %.2f   swap / in-place: %.2f\n", s/c, s/i}'
