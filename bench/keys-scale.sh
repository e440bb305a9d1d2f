#!/usr/bin/env bash
# Standalone benchmark: 100,000 API keys in one snapshot (issue 11's scale item). A controller
# in directory mode watches 100,000 api-key Secrets in one plan, one dataplane serves them; the
# release build of the ignored test `keys_at_scale` (e2e/tests/keys_scale.rs) measures:
#   - the YAML and the published snapshot's size (tollhouse_controller_snapshot_bytes);
#   - start to the last key served; an unrelated route edited to served (5 edits: every edit
#     resends the whole snapshot, keys included);
#   - a key added in a file of its own to served (200), then disabled to refused (403);
#   - both processes' resident memory at the end.
# The per-request cost of the key lookup with 100,000 keys is bench/run.sh's
# tollhouse-100k-key case (MANY_KEYS=100000), next to tollhouse-10-key and nginx.
#
#   bench/keys-scale.sh                 # 100,000 keys
#   BENCH_KEYS=10000 bench/keys-scale.sh
#
# Knobs: BENCH_KEYS (default 100000), SKIP_BUILD=1 (use what is built).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/.."
SKIP_BUILD=${SKIP_BUILD:-0}
export BENCH_KEYS=${BENCH_KEYS:-100000}
[[ $BENCH_KEYS =~ ^[0-9]+$ && $BENCH_KEYS -gt 0 ]] || { echo "BENCH_KEYS must be a positive integer" >&2; exit 1; }

log() { printf '[keys-scale %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- controller dataplane snapshot api || echo '+dirty')"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries"
    cargo build --release -p tollhouse-controller -p tollhouse-dataplane -p tollhouse-e2e --bins
    cargo test --release -p tollhouse-e2e --test keys_scale --no-run
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "running with $BENCH_KEYS keys"
cargo test --release -p tollhouse-e2e --test keys_scale -- \
    --ignored --nocapture --exact keys_at_scale | tee "$out"

row=$(grep -o 'BENCH keys_scale .*' "$out" || true)
[[ -n $row ]] || { log "no BENCH line: did the test run?"; exit 1; }
val() { tr ' ' '\n' <<<"$row" | sed -n "s/^$1=//p"; }

echo
echo "API keys at scale: $started, $(nproc) CPUs, load $load, commit $commit"
echo
echo "| keys | YAML MB | snapshot MB | start → last key served, ms | route edit → served, p50 / max ms | key added → served, ms | key disabled → refused, ms | controller RSS MB | dataplane RSS MB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| $(val keys) | $(val yaml_mb) | $(val snapshot_mb) | $(val first_served_ms) | $(val edit_p50_ms) / $(val edit_max_ms) | $(val key_added_ms) | $(val key_revoked_ms) | $(val controller_rss_mb) | $(val dataplane_rss_mb) |"
