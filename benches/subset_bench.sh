#!/usr/bin/env bash
# Wall time of a refresh that keeps a 5 % subset of customers (and, following foreign keys, their
# addresses, orders and payments) against a full refresh, on the benchmark database (2,250,000 rows
# by default), alternating runs; medians and their ratio, plus the rows each one wrote.
#
#   bash benches/subset_bench.sh [runs=3] [customers=250000] [percent=5] [binary=target/release/anonymize]
#
# A throwaway cluster as refresh_bench.sh (or BENCH_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; customers=${2:-250000}; percent=${3:-5}; bin=${4:-target/release/anonymize}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/anonymize-bench}
mkdir -p "$work"
export ANONYMIZE_KEY=bench-key-not-secret-0123456789
source benches/cluster.sh
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
secs() { /usr/bin/time -f "%e" -o "$work/t" "$@" >/dev/null; cat "$work/t"; }
dump="$work/production-$customers.sql"
[ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
# The shipped rules with a subset on customers.
sed "s/^\[tables.customers.columns\]/[tables.customers]\nsubset = { percent = $percent }\n\n[tables.customers.columns]/" \
    rules/customers.toml > "$work/subset.toml"
grep -q "percent = $percent" "$work/subset.toml"
dropdb --if-exists --force sb_src; createdb sb_src
psql "${pg[@]}" -q -v ON_ERROR_STOP=1 -d sb_src -f "$dump" >/dev/null
psql "${pg[@]}" -q -d sb_src -c "VACUUM ANALYZE" >/dev/null
for db in sb_full sb_sub; do
    dropdb --if-exists --force $db; createdb $db
    pg_dump --schema-only sb_src | psql "${pg[@]}" -q -v ON_ERROR_STOP=1 -d $db >/dev/null
done
rows() { psql "${pg[@]}" -d "$1" -Atc "SELECT (SELECT count(*) FROM customers) + (SELECT count(*) FROM addresses) + (SELECT count(*) FROM orders) + (SELECT count(*) FROM payments) + (SELECT count(*) FROM audit_log)"; }
tf=(); ts=()
for _ in $(seq "$runs"); do
    tf+=("$(secs "$bin" --rules rules/customers.toml -q --source "$(bench_url sb_src)" --target "$(bench_url sb_full)")")
    ts+=("$(secs "$bin" --rules "$work/subset.toml" -q --source "$(bench_url sb_src)" --target "$(bench_url sb_sub)")")
done
rf=$(rows sb_full); rs=$(rows sb_sub)
kept=$(psql "${pg[@]}" -d sb_sub -Atc "SELECT count(*) FROM customers")
dropdb --if-exists --force sb_full; dropdb --if-exists --force sb_sub; dropdb --if-exists --force sb_src
mf=$(printf '%s\n' "${tf[@]}" | median); ms=$(printf '%s\n' "${ts[@]}" | median)
echo "full refresh:          median ${mf} s (runs: ${tf[*]}), $rf rows"
echo "$percent % subset refresh: median ${ms} s (runs: ${ts[*]}), $rs rows ($kept of $customers customers)"
awk -v f="$mf" -v s="$ms" 'BEGIN{printf "subset / full wall time: %.3f\n", s/f}'
