#!/usr/bin/env bash
# Conditional rules and external commands, end to end in dump mode on the generated 2.25M-row dump
# (the one dump_throughput.sh uses), alternating runs, medians:
#   - the demo rules ("plain") against the same rules with a 3-branch `when` on customers.email
#     and a 1-branch `when` on customers.first_name ("when"): the conditions' cost;
#   - payments.card_number (625,000 values at 250,000 customers) kept ("keep") against the same
#     column through a trivial command: `cat` (every request line is a valid answer: the value
#     itself, the seed an ignored key) and a Python identity script. values/s = values / (run −
#     the keep run), the command's own cost on top of everything else.
#
#   bash benches/when_bench.sh [customers=250000] [runs=5]
set -euo pipefail
cd "$(dirname "$0")/.."
customers=${1:-250000}
runs=${2:-5}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/anonymize-bench}
mkdir -p "$work"
dump="$work/production-$customers.sql"
[ -s "$dump" ] || python3 examples/gen_production.py --customers "$customers" -o "$dump"
cargo build --release --quiet
bin=target/release/anonymize
export ANONYMIZE_KEY=bench-key-not-secret-0123456789

# The demo rules with some lines replaced: rules NAME 'sed script'.
rules() {
    sed -e "$2" rules/customers.toml > "$work/$1.toml"
}
rules plain ''
rules when '/^\[tables.customers.columns\]/,/^\[/{
s/^email .*/email = { fake = "email", unique = true, when = [{ if = "email LIKE '"'"'%@acme.test'"'"'", then = "keep" }, { if = "country = '"'"'GB'"'"'", then = { fake = "email", locale = "de_DE", unique = true } }, { if = "country IN ('"'"'JP'"'"', '"'"'PT'"'"') AND salary > 150000", then = { fake = "email", locale = "fr_fr", unique = true } }] }/
s/^first_name .*/first_name = { fake = "first_name", when = [{ if = "lower(country) = '"'"'gb'"'"'", then = { fake = "first_name", locale = "de_DE" } }] }/
}'
rules keep '/^\[tables.payments.columns\]/,/^\[/s/^card_number .*/card_number = "keep"/'
rules cat '/^\[tables.payments.columns\]/,/^\[/s/^card_number .*/card_number = { command = ["cat"] }/'
cat > "$work/identity.py" <<'PY'
import sys
for line in sys.stdin:
    sys.stdout.write(line)
    sys.stdout.flush()
PY
rules python "/^\[tables.payments.columns\]/,/^\[/s|^card_number .*|card_number = { command = [\"python3\", \"$work/identity.py\"] }|"
grep -q 'when = \[{ if' "$work/when.toml" && grep -q 'command = \["cat"\]' "$work/cat.toml"

values=$(awk '/^COPY public.payments /{c=1;next} /^\\\.$/{c=0;next} c{n++} END{print n}' "$dump")
declare -A times
one() { # name
    rm -f "$work/out-$1.sql"
    /usr/bin/time -f "%e" -o "$work/time" "$bin" --rules "$work/$1.toml" --source "$dump" --target "$work/out-$1.sql" -q
    times[$1]+="$(cat "$work/time") "
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "dump: $dump, $(nproc) cores, $runs runs each, alternating"
for _ in $(seq "$runs"); do
    for name in plain when keep cat python; do one "$name"; done
done
for name in plain when keep cat python; do
    printf '%-7s median %6.2f s  (runs: %s)\n' "$name" "$(echo "${times[$name]}" | median)" "${times[$name]}"
done
p=$(echo "${times[plain]}" | median); w=$(echo "${times[when]}" | median)
k=$(echo "${times[keep]}" | median); c=$(echo "${times[cat]}" | median); y=$(echo "${times[python]}" | median)
awk -v p="$p" -v w="$w" 'BEGIN{printf "when / plain: %.3f (%+.1f %%)\n", w/p, (w/p-1)*100}'
awk -v k="$k" -v c="$c" -v y="$y" -v n="$values" 'BEGIN{
    printf "cat:    %.0f values/s over the keep run (%d values, +%.2f s)\n", (c>k)? n/(c-k) : 0, n, c-k
    printf "python: %.0f values/s over the keep run (%d values, +%.2f s)\n", (y>k)? n/(y-k) : 0, n, y-k
    printf "whole run with cat: %.0f values/s of the command column (%d values in %.2f s)\n", n/c, n, c}'
# The conditional run agrees with the plain run outside the branches' columns.
if cmp -s <(grep -v '^[0-9]' "$work/out-plain.sql") <(grep -v '^[0-9]' "$work/out-when.sql"); then echo "schema text: identical"; fi
cmp -s "$work/out-keep.sql" "$work/out-cat.sql" && echo "cat run = keep run: identical" || echo "cat run DIFFERS from keep run"
rm -f "$work"/out-*.sql
