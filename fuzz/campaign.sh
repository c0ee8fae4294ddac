#!/bin/sh
# campaign.sh - a long fuzzing run: each libFuzzer target in turn for
# SECONDS seconds (default 1200) on its kept corpus (fuzz/corpus-<target>,
# which grows) and its seeds, and a summary line per target: executions,
# edges covered ("cov"), features ("ft"), corpus size, and whether it
# crashed.  A crash leaves the input in build-fuzz/campaign/ and stops.
#
# Usage: fuzz/campaign.sh [SECONDS] [TARGET...]   (after `make fuzz`, or
# at least its build: make build-fuzz/fuzz_<name>)
# The summary goes to stdout and build-fuzz/campaign/summary.txt.
set -u
secs=${1:-1200}
[ $# -gt 0 ] && shift
targets=${*:-$(cd build-fuzz && ls fuzz_* | grep -v '\.')}
out=build-fuzz/campaign
mkdir -p "$out"
for t in $targets; do
    n=${t#fuzz_}
    mkdir -p "fuzz/corpus-$t"
    start=$(date +%s)
    "./build-fuzz/$t" -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$out/$t-" "fuzz/corpus-$t" "fuzz/seeds/$n" >"$out/$t.log" 2>&1
    rc=$?
    end=$(date +%s)
    last=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
    line="$(date -u +%FT%TZ) $t seconds=$((end - start)) runs=${runs:-?} \
cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p') \
ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p') \
corpus=$(ls "fuzz/corpus-$t" | wc -l) rc=$rc"
    echo "$line" | tee -a "$out/summary.txt"
    if [ $rc -ne 0 ]; then
        echo "$t failed; see $out/$t.log" >&2
        exit 1
    fi
done
