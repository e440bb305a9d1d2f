#!/usr/bin/env bash
# Operator benchmark: how long an ApiRoute edit takes to become Programmed, how long an
# EndpointSlice change takes to be served, and what the controller and dataplane cost, with
# 0, 1,000 and 10,000 pre-existing ApiRoutes. See docs/operator-benchmarks.md.
#
#   bench/programmed.sh                       # all three sizes, 50 edits and 10 endpoint moves each
#   bench/programmed.sh programmed_01000      # only the tests matching a filter
#   BENCH_CHANGES=100 bench/programmed.sh
#
# Builds the release binaries and the release test binary, then runs the ignored tests of
# e2e/tests/operator_bench.rs one at a time against the private kube-apiserver 1.20 of the e2e
# harness (e2e/kube/setup.sh installs it; see e2e/tests/harness/kube.rs). With `--release` the
# harness starts the binaries of target/release. Prints four markdown tables at the end, headed
# by the commit checked out when the script started (+dirty when controller/, dataplane/,
# snapshot/ or api/ differed from it).
#
# Knobs: BENCH_CHANGES (edits per size, default 50), BENCH_ENDPOINT_CHANGES (default 10),
# BENCH_CREATORS (concurrent creates of the bulk, default 8), SKIP_BUILD=1 (use what is built),
# RESULTS=FILE (also keep the raw `BENCH key=value ...` lines there).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
cd "$REPO"
SKIP_BUILD=${SKIP_BUILD:-0}
RESULTS=${RESULTS:-}

log() { printf '[programmed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# What is measured: the commit, and whether the built crates differ from it, as of the build.
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- controller dataplane snapshot api || echo '+dirty')"

if [[ $SKIP_BUILD != 1 ]]; then
    if [[ -z ${TOLLHOUSE_KUBECONFIG:-} ]]; then
        e2e/kube/setup.sh >/dev/null
    fi
    log "building release binaries"
    cargo build --release -p tollhouse-controller -p tollhouse-dataplane -p tollhouse-e2e --bins
    cargo test --release -p tollhouse-e2e --test operator_bench --no-run
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "running (this takes a while with 10,000 routes)"
cargo test --release -p tollhouse-e2e --test operator_bench -- \
    --ignored --nocapture --test-threads=1 "$@" | tee "$out"

rows=$(grep -o 'BENCH routes=.*' "$out" || true)
[[ -n $rows ]] || { log "no BENCH lines: did the tests run?"; exit 1; }
[[ -z $RESULTS ]] || printf '%s\n' "$rows" >"$RESULTS"

# A markdown table of the BENCH lines, one column per key (`-` when a line lacks it).
table() {
    local header=$1 keys=$2
    printf '%s\n' "$header"
    printf '%s\n' "$header" | sed 's/[^|]/-/g; s/-|/:|/g'
    while read -r line; do
        local row="|"
        for k in $keys; do
            v=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^$k=//p")
            row+=" ${v:--} |"
        done
        printf '%s\n' "$row"
    done <<<"$rows"
}

echo
echo "Operator benchmark: $started, $(nproc) CPUs, load $load, commit $commit"
echo
echo "ApiRoute edit -> Programmed=True with the new observedGeneration, ms from just before kubectl apply starts"
echo "(to the watch event); then the p50 of each step: kubectl apply returns, the watch sees the edit,"
echo "the controller publishes, the dataplane applies (its log), Programmed arrives"
echo
table "| routes | edits | p50 | p90 | p99 | max | kubectl apply | watch sees edit | → published | → dataplane applied | → Programmed | seen → Programmed p50 | seen → Programmed p99 |" \
    "routes changes p50_ms p90_ms p99_ms max_ms apply_p50_ms seen_p50_ms seen_to_published_p50_ms published_to_dp_applied_p50_ms dp_applied_to_programmed_p50_ms seen_to_programmed_p50_ms seen_to_programmed_p99_ms"
echo
echo "Costs during the edits; memory at the end (MiB)"
echo
table "| routes | translate ms (mean) | translates/edit | status patches/edit | route writes before Programmed/edit | controller CPU ms/edit | dataplane CPU ms/edit | snapshot KiB | controller RSS | controller HWM | dataplane RSS | dataplane HWM |" \
    "routes translate_ms translates_per_change patches_per_change early_status_writes_per_change controller_cpu_ms_per_change dataplane_cpu_ms_per_change snapshot_kib controller_rss_mib controller_hwm_mib dataplane_rss_mib dataplane_hwm_mib"
echo
echo "EndpointSlice port moved to the other backend -> first answer from it through the dataplane (ms from before kubectl apply)"
echo
table "| routes | moves | served p50 | served max | kubectl apply p50 | published p50 | published → served p50 | translate ms (mean) | controller CPU ms/move | dataplane CPU ms/move |" \
    "routes endpoint_changes endpoint_p50_ms endpoint_max_ms endpoint_apply_p50_ms endpoint_published_p50_ms endpoint_published_to_served_p50_ms endpoint_translate_ms endpoint_controller_cpu_ms endpoint_dataplane_cpu_ms"
echo
echo "The bulk, created while controller and dataplane run (s from the first create)"
echo
table "| routes | create | creates/s | in snapshot | in dataplane | all Programmed | status patches | translates | translate ms (mean) | controller CPU s | dataplane CPU s |" \
    "routes create_s create_per_s in_snapshot_s in_dataplane_s all_programmed_s bulk_patches bulk_translates bulk_translate_ms bulk_controller_cpu_s bulk_dataplane_cpu_s"
