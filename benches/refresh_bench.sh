#!/usr/bin/env bash
# End-to-end live-refresh benchmark on a throwaway PostgreSQL server (benches/cluster.sh; or the
# server of BENCH_DATABASE_URL): the wall time of
# `anonymize` (database → staging database, rules/customers.toml) against the raw copy pipe
# `psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN"` over the same tables into the same
# staging database, alternating runs, medians and their ratio.
#
#   bash benches/refresh_bench.sh [customers=250000] [runs=3]
#
# 250,000 customers make 2,250,000 rows in five tables, loaded into anon_bench_src (and its schema
# into anon_bench_stg) on the benchmark's server.
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-250000}
runs=${2:-3}
source benches/cluster.sh
src=anon_bench_src
stg=anon_bench_stg
tables=(customers addresses orders payments audit_log)
work=${TMPDIR:-/tmp}/anonymize-bench
mkdir -p "$work"

if ! psql "${pg[@]}" -d "$src" -Atc "SELECT 1" >/dev/null 2>&1; then
    dump="$work/production-$customers.sql"
    [ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
    createdb "$src"
    psql "${pg[@]}" -v ON_ERROR_STOP=1 -d "$src" -f "$dump" >/dev/null
    psql "${pg[@]}" -d "$src" -c "VACUUM ANALYZE" >/dev/null
    dropdb --if-exists "$stg" 2>/dev/null
    createdb "$stg"
    pg_dump --schema-only "$src" | psql "${pg[@]}" -v ON_ERROR_STOP=1 -d "$stg" >/dev/null
fi
cargo build --release --quiet
rows=$(psql "${pg[@]}" -d "$src" -Atc "SELECT sum(n_live_tup) FROM pg_stat_user_tables")

raw() {
    psql "${pg[@]}" -d "$stg" -c "TRUNCATE $(IFS=,; echo "${tables[*]}")"
    for t in "${tables[@]}"; do
        psql "${pg[@]}" -d "$src" -c "COPY public.$t TO STDOUT" | psql "${pg[@]}" -d "$stg" -c "COPY public.$t FROM STDIN"
    done
}
anon() {
    ANONYMIZE_KEY=bench-key-not-secret-0123456789 target/release/anonymize --rules rules/customers.toml -q \
        --source "$(bench_url "$src")" --target "$(bench_url "$stg")"
}
time_of() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'; }
median() { sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

raw_times=(); anon_times=()
for _ in $(seq "$runs"); do
    raw_times+=("$(time_of raw)")
    anon_times+=("$(time_of anon)")
done
r=$(printf '%s\n' "${raw_times[@]}" | median)
a=$(printf '%s\n' "${anon_times[@]}" | median)
echo "rows: $rows in ${#tables[@]} tables, $(nproc) cores, $runs runs each"
awk -v r="$r" -v a="$a" -v n="$rows" -v rt="${raw_times[*]}" -v at="${anon_times[*]}" 'BEGIN{
    printf "raw psql COPY pipe  median %.2f s  %9.0f rows/s  (runs: %s)\n", r, n/r, rt
    printf "anonymize refresh   median %.2f s  %9.0f rows/s  (runs: %s)\n", a, n/a, at
    printf "anonymize / raw pipe: %.2f\n", a/r }'
