#!/usr/bin/env bash
# What the leak audit costs on the benchmark database (2,250,000 rows by default): wall time of a
# refresh, of `anonymize audit` of the staging it built, and of a refresh with --audit, alternating
# runs; medians and the ratios audit / refresh and (refresh --audit) / refresh.
#
#   bash benches/audit_bench.sh [runs=3] [customers=250000] [binary=target/release/anonymize]
#
# A throwaway cluster as refresh_bench.sh (or BENCH_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; customers=${2:-250000}; bin=${3:-target/release/anonymize}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/anonymize-bench}
mkdir -p "$work"
export ANONYMIZE_KEY=bench-key-not-secret-0123456789
source benches/cluster.sh
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
secs() { /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }; cat "$work/t"; }
dump="$work/production-$customers.sql"
[ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
dropdb --if-exists --force ab_src; createdb ab_src
psql "${pg[@]}" -q -v ON_ERROR_STOP=1 -d ab_src -f "$dump" >/dev/null
psql "${pg[@]}" -q -d ab_src -c "VACUUM ANALYZE" >/dev/null
dropdb --if-exists --force ab_stg; createdb ab_stg
pg_dump --schema-only ab_src | psql "${pg[@]}" -q -v ON_ERROR_STOP=1 -d ab_stg >/dev/null
src=$(bench_url ab_src); stg=$(bench_url ab_stg)
tr=(); ta=(); tb=(); ma=()
for _ in $(seq "$runs"); do
    read -r t _ < <(secs "$bin" --rules rules/customers.toml -q --source "$src" --target "$stg"); tr+=("$t")
    read -r t m < <(secs "$bin" audit --rules rules/customers.toml --source "$src" --target "$stg"); ta+=("$t"); ma+=("$m")
    read -r t _ < <(secs "$bin" --rules rules/customers.toml -q --audit --source "$src" --target "$stg"); tb+=("$t")
done
rows=$(psql "${pg[@]}" -d ab_stg -Atc "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM addresses) + (SELECT count(*) FROM orders) + (SELECT count(*) FROM payments) + (SELECT count(*) FROM audit_log)")
dropdb --if-exists --force ab_stg; dropdb --if-exists --force ab_src
mr=$(printf '%s\n' "${tr[@]}" | median); ma_=$(printf '%s\n' "${ta[@]}" | median); mb=$(printf '%s\n' "${tb[@]}" | median)
mm=$(printf '%s\n' "${ma[@]}" | median)
echo "refresh:            median ${mr} s (runs: ${tr[*]}), $rows rows"
echo "audit:              median ${ma_} s (runs: ${ta[*]}), peak RSS median ${mm} KiB"
echo "refresh --audit:    median ${mb} s (runs: ${tb[*]})"
awk -v r="$mr" -v a="$ma_" -v b="$mb" 'BEGIN{printf "audit / refresh: %.3f; (refresh --audit) / refresh: %.3f\n", a/r, b/r}'
