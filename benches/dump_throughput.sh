#!/usr/bin/env bash
# End-to-end dump-mode benchmark: throughput (rows/s, MB/s) and peak memory of the release binary
# on a generated production-like dump, with the demo's rules (rules/customers.toml) as the rule
# mix, against a pass-through run (every column kept) of the same dump.
#
#   bash benches/dump_throughput.sh [customers=250000] [runs=5]
#
# 250,000 customers make 2,250,000 rows (customers, addresses, orders, payments, audit_log; ~233 MB).
# The same rows as `pg_dump --inserts` writes them (one INSERT per row, ~350 MB) are measured too,
# alternating with the COPY dump, and the ratio of their rows/s printed.
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-250000}
runs=${2:-5}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/anonymize-bench}
mkdir -p "$work"
dump="$work/production-$customers.sql"
[ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
inserts="$work/inserts-$customers.sql"
[ -s "$inserts" ] || python3 examples/gen_production.py --customers "$customers" --inserts -o "$inserts"
cargo build --release --quiet
bin=target/release/anonymize
rows=$(awk '/^COPY /{c=1;next} /^\\\.$/{c=0;next} c{n++} END{print n}' "$dump")
bytes=$(stat -c %s "$dump")
printf '[defaults]\nuncovered = "keep"\n' > "$work/keep.toml"
export ANONYMIZE_KEY=bench-key-not-secret-0123456789

measure() { # name rules [dump]
    local name=$1 rules=$2 source=${3:-$dump} times=() rss=0
    for _ in $(seq "$runs"); do
        # Not timed: the filesystem freeing the previous run's output (0.2 s for 232 MB here, paid
        # inside the final rename) is not the anonymizer's work.
        rm -f "$work/out.sql"
        /usr/bin/time -f "%e %M" -o "$work/time" "$bin" --rules "$rules" --source "$source" --target "$work/out.sql" -q
        read -r t m < "$work/time"
        times+=("$t")
        (( m > rss )) && rss=$m
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    awk -v n="$name" -v t="$median" -v r="$rows" -v b="$bytes" -v m="$rss" -v all="${times[*]}" 'BEGIN{
        printf "%-12s median %.2f s  %9.0f rows/s  %6.1f MB/s  peak RSS %5.1f MB  (runs: %s)\n", n, t, r/t, b/1e6/t, m/1024, all}'
    echo "$median" > "$work/median-$name"
}

echo "dump: $dump ($rows rows, $((bytes / 1000000)) MB), $(nproc) cores, $runs runs each"
measure "rules" rules/customers.toml
measure "passthrough" "$work/keep.toml"
awk -v a="$(cat "$work/median-rules")" -v b="$(cat "$work/median-passthrough")" 'BEGIN{printf "rules / passthrough wall-time ratio: %.2f\n", a/b}'
# COPY and INSERT dumps alternating, one run of each at a time (the machine's speed drifts).
copy_times=(); insert_times=()
all_runs=$runs; runs=1
for _ in $(seq "$all_runs"); do
    measure "rules-copy" rules/customers.toml >/dev/null; copy_times+=("$(cat "$work/median-rules-copy")")
    measure "rules-inserts" rules/customers.toml "$inserts" >/dev/null; insert_times+=("$(cat "$work/median-rules-inserts")")
done
runs=$all_runs
c=$(printf '%s\n' "${copy_times[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
i=$(printf '%s\n' "${insert_times[@]}" | sort -n | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
awk -v c="$c" -v i="$i" -v r="$rows" -v ct="${copy_times[*]}" -v it="${insert_times[*]}" 'BEGIN{
    printf "COPY dump    median %.2f s  %9.0f rows/s  (runs: %s)\n", c, r/c, ct
    printf "INSERT dump  median %.2f s  %9.0f rows/s  (runs: %s)\n", i, r/i, it
    printf "INSERT / COPY rows/s: %.2f\n", c/i }'
rm -f "$work/out.sql"
