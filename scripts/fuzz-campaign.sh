#!/usr/bin/env bash
# A fuzz campaign: runs every cargo-fuzz target (or the targets named after MINUTES) for MINUTES
# minutes each, one after the other, from its committed seeds (fuzz/corpus/<target>, only read)
# and a kept working corpus (fuzz/work/<target>, which grows from one campaign to the next), then
# prints a table of executions and crashes. Reproducers land in fuzz/artifacts/<target>/. Exits
# non-zero if any target crashed.
#   scripts/fuzz-campaign.sh MINUTES [TARGET...]
# With CONTAINIX_FUZZ_RUNS=N, each target stops after N executions (libFuzzer's -runs=N) and
# MINUTES is only its cap; a target the cap stopped short of N is listed under the table. The
# recorded campaign (docs/fuzzing.md) is
#   CONTAINIX_FUZZ_RUNS=10000000 nice -n 10 scripts/fuzz-campaign.sh 30
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
minutes="${1:?usage: scripts/fuzz-campaign.sh MINUTES [TARGET...]}"
shift
# cargo-fuzz needs unstable compiler flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# Without AddressSanitizer: the parsers are safe Rust (no `unsafe`), so ASan finds nothing a
# panic would not, and costs a 5 to 20 times lower exec rate. The CI smoke keeps ASan.
sanitizer="${CONTAINIX_FUZZ_SANITIZER:-none}"
cargo fuzz build -s "$sanitizer" >&2
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
seconds=$((minutes * 60))
runs="${CONTAINIX_FUZZ_RUNS:-}"
case "$runs" in
    '') limits=() ;;
    *[!0-9]*) echo "CONTAINIX_FUZZ_RUNS: a number of executions, not '$runs'" >&2; exit 2 ;;
    *) limits=(-runs="$runs") ;;
esac
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
rows=()
short=()
failed=0
for target in "${targets[@]}"; do
    mkdir -p "work/$target" "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    printf 'fuzz campaign: %s for %s min%s\n' "$target" "$minutes" \
        "${runs:+ or $runs executions, whichever comes first}" >&2
    status=0
    # -error_exitcode stays libFuzzer's; a crash ends that target's run early.
    cargo fuzz run -s "$sanitizer" "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" "${limits[@]}" -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$target" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target" | tail -n 1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$logs/$target" | tail -n 1)
    after=$(find "artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
    if [ "$crashes" -ne 0 ]; then
        failed=1
        tail -n 30 "$logs/$target" >&2
    fi
    corpus=$(find "work/$target" -type f | wc -l)
    execs="${execs:-0}"
    took="${took:-$seconds}"
    rows+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$target" "$took" "$execs" \
        "$(( execs / (took > 0 ? took : 1) ))" "$corpus" "$crashes")")
    if [ -n "$runs" ] && [ "$crashes" -eq 0 ] && [ "$execs" -lt "$runs" ]; then
        short+=("$target: $execs of $runs executions within the $minutes-minute cap")
    fi
done
printf '\n| target | seconds | execs | execs/s | corpus | crashes |\n|---|---:|---:|---:|---:|---:|\n'
printf '%s\n' "${rows[@]}"
if [ "${#short[@]}" -ne 0 ]; then
    printf '\nstopped by the cap:\n'
    printf '  %s\n' "${short[@]}"
fi
exit "$failed"
