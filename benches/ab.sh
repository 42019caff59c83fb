#!/usr/bin/env bash
# Interleaved A/B comparison of two builds of anonymize: the same work, one run of A then one of B,
# `runs` times (the machine's speed drifts, so alternating is the only fair comparison), medians
# and their ratio; outputs compared byte for byte.
#
#   bash benches/ab.sh dump    BIN_A BIN_B DUMP [runs=7]
#   bash benches/ab.sh refresh BIN_A BIN_B [runs=5] [customers=250000]   (a throwaway cluster, as
#   refresh_bench.sh; or BENCH_DATABASE_URL)
#
# Build B with `cargo build --release`; build A from another commit in a worktree, e.g.
#   git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1; a=$2; b=$3; shift 3
work=${BENCH_DIR:-${TMPDIR:-/tmp}/anonymize-bench}
mkdir -p "$work"
export ANONYMIZE_KEY=bench-key-not-secret-0123456789
median() { sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
one() { # bin target... → seconds
    local bin=$1; shift
    /usr/bin/time -f "%e" -o "$work/ab-time" "$bin" --rules rules/customers.toml "$@" -q
    cat "$work/ab-time"
}
case $mode in
dump)
    dump=$1; runs=${2:-7}
    ta=(); tb=()
    for _ in $(seq "$runs"); do
        rm -f "$work/ab-a.sql" "$work/ab-b.sql"
        ta+=("$(one "$a" --source "$dump" --target "$work/ab-a.sql")")
        tb+=("$(one "$b" --source "$dump" --target "$work/ab-b.sql")")
    done
    if cmp -s "$work/ab-a.sql" "$work/ab-b.sql"; then same="identical"; else same="DIFFERENT"; fi
    echo "outputs: $same ($(md5sum < "$work/ab-b.sql" | cut -c1-12))"
    rm -f "$work/ab-a.sql" "$work/ab-b.sql"
    ;;
refresh)
    runs=${1:-5}; customers=${2:-250000}
    source benches/cluster.sh
    url() { bench_url "$1"; }
    if ! psql "${pg[@]}" -d anon_bench_src -Atc "SELECT 1" >/dev/null 2>&1; then
        dump="$work/production-$customers.sql"
        [ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
        createdb anon_bench_src
        psql "${pg[@]}" -v ON_ERROR_STOP=1 -d anon_bench_src -f "$dump" >/dev/null
        psql "${pg[@]}" -d anon_bench_src -c "VACUUM ANALYZE" >/dev/null
        dropdb --if-exists anon_bench_stg 2>/dev/null
        createdb anon_bench_stg
        pg_dump --schema-only anon_bench_src | psql "${pg[@]}" -v ON_ERROR_STOP=1 -d anon_bench_stg >/dev/null
    fi
    ta=(); tb=()
    for _ in $(seq "$runs"); do
        ta+=("$(one "$a" --source "$(url anon_bench_src)" --target "$(url anon_bench_stg)")")
        fa=$(psql "${pg[@]}" -d anon_bench_stg -Atc "SELECT md5(string_agg(email, ',' ORDER BY id)) FROM customers")
        tb+=("$(one "$b" --source "$(url anon_bench_src)" --target "$(url anon_bench_stg)")")
        fb=$(psql "${pg[@]}" -d anon_bench_stg -Atc "SELECT md5(string_agg(email, ',' ORDER BY id)) FROM customers")
    done
    if [ "$fa" = "$fb" ]; then echo "staging: identical customers after A and B"; else echo "staging: DIFFERENT"; fi
    ;;
*) echo "usage: $0 dump|refresh BIN_A BIN_B ..." >&2; exit 2 ;;
esac
ma=$(printf '%s\n' "${ta[@]}" | median); mb=$(printf '%s\n' "${tb[@]}" | median)
echo "A: median ${ma} s (runs: ${ta[*]})"
echo "B: median ${mb} s (runs: ${tb[*]})"
awk -v a="$ma" -v b="$mb" 'BEGIN{printf "B / A wall time: %.3f\n", b/a}'
