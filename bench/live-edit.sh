#!/usr/bin/env bash
# Standalone benchmark: how long an edit of a manifest file takes to be served by the dataplane
# (controller --dir watching the directory, one dataplane polling it). See
# docs/operator-benchmarks.md, "File edit → served".
#
#   bench/live-edit.sh                  # 30 edits
#   BENCH_EDITS=100 bench/live-edit.sh
#
# Builds the release binaries and the release test binary of e2e/tests/standalone.rs, then runs
# its ignored test `live_edit_latency`, which replaces the file (write + rename, as editors do)
# BENCH_EDITS times, 250 ms apart, and times each edit from just before the rename to the first
# answer with the new body from a client polling back to back. Prints a markdown table headed by
# the commit (+dirty when controller/, dataplane/, snapshot/ or api/ differ from it).
#
# Knobs: BENCH_EDITS (default 30), SKIP_BUILD=1 (use what is built).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/.."
SKIP_BUILD=${SKIP_BUILD:-0}
export BENCH_EDITS=${BENCH_EDITS:-30}
[[ $BENCH_EDITS =~ ^[0-9]+$ && $BENCH_EDITS -gt 0 ]] || { echo "BENCH_EDITS must be a positive integer" >&2; exit 1; }

log() { printf '[live-edit %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- controller dataplane snapshot api || echo '+dirty')"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries"
    cargo build --release -p tollhouse-controller -p tollhouse-dataplane -p tollhouse-e2e --bins
    cargo test --release -p tollhouse-e2e --test standalone --no-run
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "running $BENCH_EDITS edits"
cargo test --release -p tollhouse-e2e --test standalone -- \
    --ignored --nocapture --exact live_edit_latency | tee "$out"

row=$(grep -o 'BENCH live_edit .*' "$out" || true)
[[ -n $row ]] || { log "no BENCH line: did the test run?"; exit 1; }
val() { tr ' ' '\n' <<<"$row" | sed -n "s/^$1=//p"; }

echo
echo "File edit -> served: $started, $(nproc) CPUs, load $load, commit $commit"
echo "ms from just before the file is replaced to the first answer with the new body"
echo
echo "| edits | min | p50 | p90 | p99 | max | requests polled |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
echo "| $(val edits) | $(val min_ms) | $(val p50_ms) | $(val p90_ms) | $(val p99_ms) | $(val max_ms) | $(val requests) |"
