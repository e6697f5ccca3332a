#!/usr/bin/env bash
# A/B of compiled model libraries on one input, interleaved: each round runs `tcc bench` once
# per library (RUNS timed runs after its warm-up), and the report gives each library's median
# over the rounds, and its ratio to the first library's. Interleaving spreads the machine's
# drift over all libraries alike; compare libraries built from the same model only.
#
#     scripts/bench/ab.sh IN.npz LIB.so [LIB.so ...]
#     THREADS=1 ROUNDS=8 RUNS=30 scripts/bench/ab.sh ../shared/models/minilm-l6/ref_b1_s128.npz a.so b.so
#
# TCC is the tcc binary (default target/release/tcc).
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
npz=$1
shift
tcc=${TCC:-target/release/tcc}
threads=${THREADS:-2}
rounds=${ROUNDS:-8}
runs=${RUNS:-30}
for lib in "$@"; do
    [ -f "$lib" ] || { echo "ab.sh: no library $lib" >&2; exit 1; }
done
for _ in $(seq "$rounds"); do
    for lib in "$@"; do
        line=$("$tcc" bench "$lib" --inputs "$npz" --runs "$runs" --threads "$threads" | tail -1)
        median=${line##*median=}
        echo "$lib ${median%% *}"
    done
done | python3 -c '
import collections, statistics, sys
times = collections.defaultdict(list)
for line in sys.stdin:
    lib, ms = line.split()
    times[lib].append(float(ms))
first = None
print("| library | median of round medians, ms | of the first | min | max |")
print("|---|---|---|---|---|")
for lib, v in times.items():
    m = statistics.median(v)
    first = first or m
    print(f"| {lib} | {m:.3f} | {m / first:.3f} | {min(v):.3f} | {max(v):.3f} |")
'
