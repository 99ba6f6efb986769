#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (or those named as arguments) for FUZZ_SECONDS each (60
# by default) and prints, per target, the inputs run and the crashes found; exits non-zero if
# any target crashed or did not run. Installs cargo-fuzz when it is missing; uses the nightly
# toolchain when there is one, else stable with RUSTC_BOOTSTRAP=1 and no sanitizer.
#
# The fuzz crate builds in its own target dir, fuzz/target. Each target's corpus grows in
# fuzz/corpus/<target> from the seeds in fuzz/seeds/<target>; a crashing input is kept in
# fuzz/artifacts/<target>/ (replay it with `cargo +nightly fuzz run <target> <file>`).
#
# Each new crashing input is also copied into fuzz/regressions/<target>/: commit it with the
# fix, and `cargo test` replays it (with the seeds) through the target's body in its crate.
#
# FUZZ_BUILD=dev builds the targets unoptimised (7 minutes from nothing on 2 cores instead of
# 18, for about a twentieth of the runs a second).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${FUZZ_SECONDS:-60}
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(ws_frame smpp_pdu message_json)
fi
started=$(date +%s)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi
if rustc +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
    options=()
    echo "fuzz: $(rustc +nightly --version), address sanitizer"
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    options=(--sanitizer none)
    echo "fuzz: $(rustc --version) with RUSTC_BOOTSTRAP=1, no sanitizer"
fi
options+=(--fuzz-dir "$root/fuzz" --target-dir "$root/fuzz/target")
case "${FUZZ_BUILD:-release}" in
    release) ;;
    dev) options+=(--dev) ;;
    *) echo "fuzz: FUZZ_BUILD is release or dev, not ${FUZZ_BUILD}"; exit 2 ;;
esac

if ! "${fuzz[@]}" build "${options[@]}"; then
    echo "fuzz: the targets do not build"
    exit 1
fi
built=$(date +%s)
echo "fuzz: built in $((built - started)) s"

logs=$root/fuzz/target/logs
mkdir -p "$logs"
failed=0
total_runs=0
total_crashes=0
for target in "${targets[@]}"; do
    corpus=$root/fuzz/corpus/$target
    artifacts=$root/fuzz/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    corpora=("$corpus")
    if [ -d "$root/fuzz/seeds/$target" ]; then
        corpora+=("$root/fuzz/seeds/$target")
    fi
    known=$(mktemp)
    ls -1 "$artifacts" | sort >"$known"
    log=$logs/$target.log
    target_started=$(date +%s)
    "${fuzz[@]}" run "${options[@]}" "$target" "${corpora[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1
    status=$?
    elapsed=$(($(date +%s) - target_started))
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    fi
    runs=${runs:-0}
    new=$(ls -1 "$artifacts" | sort | comm -13 "$known" -)
    rm -f "$known"
    crashes=$(printf '%s' "$new" | grep -c . || true)
    echo "fuzz $target: $runs runs in $elapsed s, $crashes crashes (log: ${log#"$root"/})"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        tail -n 40 "$log"
        mkdir -p "$root/fuzz/regressions/$target"
        for file in $new; do
            cp "$artifacts/$file" "$root/fuzz/regressions/$target/$file"
            echo "fuzz $target: crashing input kept in fuzz/artifacts/$target/$file and fuzz/regressions/$target/$file"
        done
        if [ "$crashes" -eq 0 ]; then
            echo "fuzz $target: exited with status $status"
        fi
    fi
    total_runs=$((total_runs + runs))
    total_crashes=$((total_crashes + crashes))
done

echo "fuzz: ${#targets[@]} targets, $total_runs runs, $total_crashes crashes, $(($(date +%s) - started)) s in all"
exit "$failed"
