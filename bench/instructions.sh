#!/usr/bin/env bash
# Instructions per request of the dataplane, counted by valgrind's callgrind: a number that does
# not move with the machine's load, for comparing two builds where CPU time is too noisy to
# resolve a few percent (docs/benchmarks.md, "Instructions per request").
#
#   bench/instructions.sh                       # this tree
#   BASELINE=016d1e3 bench/instructions.sh      # this tree and the build at 016d1e3, side by side
#
# Each build serves the same 10 routes as bench/run.sh's tollhouse-10 (one Stage, /svc0..9/items/{id}
# -> tollhouse-echo /fast) from its own controller in directory mode. The dataplane runs under
# `valgrind --tool=callgrind` with one worker; wrk warms it up, callgrind's counters are zeroed,
# wrk sends load for DURATION seconds, the counters are dumped, and the user-space instructions
# (Ir) are divided by the requests wrk completed. The kernel's share (TCP) is not counted.
# Prints one line per build, then the functions whose share changed most (with BASELINE).
#
# Knobs: DURATION (10), CONNS (8), SKIP_BUILD=1, BASELINE=REV (built by bench/run.sh BUILD_ONLY=1).
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
SKIP_BUILD=${SKIP_BUILD:-0}
BASELINE=${BASELINE:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
BASE_BIN=$REPO/target/bench-baseline/target/release

log() { printf '[instructions %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -q "${need[@]}" >/dev/null; else sudo apt-get install -y -q "${need[@]}" >/dev/null; fi
fi
[[ $SKIP_BUILD == 1 ]] || (cd "$REPO" && cargo build --release --bins -q)
if [[ -n $BASELINE ]]; then
    SKIP_BUILD=1 BUILD_ONLY=1 BASELINE=$BASELINE "$HERE/run.sh"
fi

TMP=$(mktemp -d /tmp/tollhouse-instructions.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# measure NAME BINDIR: prints "NAME requests instructions instructions/request"; keeps the profile.
measure() {
    local name=$1 bin=$2 dir=$TMP/$1
    mkdir -p "$dir/manifests" "$dir/state"
    local bport cport lport aport
    bport=$(free_port) cport=$(free_port) lport=$(free_port) aport=$(free_port)
    "$bin/tollhouse-echo" --listen "127.0.0.1:$bport" --name bench --workers 1 >"$dir/echo.log" 2>&1 &
    PIDS+=($!)
    {
        printf 'apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata: {name: bench, namespace: default}\nspec: {api: bench, basePath: /}\n'
        for i in $(seq 0 9); do
            printf -- '---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: r%d, namespace: default}\n' "$i"
            printf 'spec:\n  api: bench\n  path: /svc%d/items/{id}\n  methods: [GET]\n' "$i"
            printf '  integration: {type: HTTP_PROXY, uri: "http://127.0.0.1:%d/fast"}\n' "$bport"
        done
    } >"$dir/manifests/bench.yaml"
    "$bin/tollhouse-controller" --dir "$dir/manifests" --listen "127.0.0.1:$cport" >"$dir/controller.log" 2>&1 &
    PIDS+=($!)
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$bin/tollhouse-dataplane" --controller "http://127.0.0.1:$cport" \
        --listen "127.0.0.1:$lport" --admin "127.0.0.1:$aport" --workers 1 \
        --state-dir "$dir/state" >"$dir/dataplane.log" 2>&1 &
    local dp=$!
    PIDS+=("$dp")
    local url="http://127.0.0.1:$lport/svc5/items/42" deadline=$((SECONDS + 120))
    until [[ $(curl -s --max-time 5 "$url" || true) == "hello, world" ]]; do
        kill -0 "$dp" 2>/dev/null || die "$name: dataplane exited (see $dir/dataplane.log)"
        ((SECONDS < deadline)) || die "$name: $url never answered 'hello, world'"
        sleep 0.5
    done
    wrk -t1 -c"$CONNS" -d3s "$url" >/dev/null
    callgrind_control --zero "$dp" >/dev/null 2>&1
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" >"$dir/wrk.txt"
    callgrind_control --dump "$dp" >/dev/null 2>&1
    local requests errors profile total
    requests=$(grep -o '[0-9]* requests in' "$dir/wrk.txt" | cut -d' ' -f1)
    errors=$(grep -c 'Non-2xx\|Socket errors' "$dir/wrk.txt" || true)
    [[ $errors == 0 ]] || die "$name: wrk saw errors: $(cat "$dir/wrk.txt")"
    for _ in $(seq 50); do
        profile=$(ls "$dir"/callgrind.out.* 2>/dev/null | head -n 1 || true)
        [[ -n $profile ]] && break
        sleep 0.2
    done
    [[ -n $profile ]] || die "$name: callgrind wrote no dump"
    sleep 1
    total=$(callgrind_annotate --auto=no "$profile" 2>/dev/null | grep -m1 'PROGRAM TOTALS' | awk '{gsub(",", "", $1); print $1}')
    printf '%-10s %9d requests %14d Ir %8d Ir/request\n' "$name" "$requests" "$total" $((total / requests))
    callgrind_annotate --auto=no --inclusive=no --threshold=100 "$profile" 2>/dev/null \
        | awk -v n="$requests" 'match($0, /^ *[0-9,]+ \(/) { v=$1; gsub(",", "", v); $1=""; $2=""; sub(/^ +/, ""); sub(/ \[.*\]$/, ""); sub(/^[^:]*:/, ""); s[$0]+=v/n } END { for (k in s) printf "%.0f\t%s\n", s[k], k }' \
        >"$dir/functions.tsv"
    kill "$dp" 2>/dev/null || true
}

echo "Tollhouse dataplane instructions per request: $(date -u +%FT%TZ), valgrind $(valgrind --version), wrk -t1 -c$CONNS -d${DURATION}s"
echo "this tree: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet || echo ' (with uncommitted changes)')"
measure tollhouse "$BIN"
if [[ -n $BASELINE ]]; then
    measure baseline "$BASE_BIN"
    echo
    echo "functions whose instructions per request changed most (this tree - baseline; inlining moves some between names):"
    join -t $'\t' -1 2 -2 2 -a 1 -a 2 -e 0 -o 0,1.1,2.1 \
        <(sort -t $'\t' -k2 "$TMP/tollhouse/functions.tsv") <(sort -t $'\t' -k2 "$TMP/baseline/functions.tsv") \
        | awk -F '\t' '{ d=$2-$3; if (d > 40 || d < -40) printf "%+7d %7d %7d  %s\n", d, $2, $3, substr($1, 1, 110) }' \
        | sort -rn | grep -v 'PROGRAM TOTALS\|thread_start\|call_once\|start_thread\|clone$' >"$TMP/changed.txt"
    head -n 25 "$TMP/changed.txt"
    echo "   ..."
    tail -n 12 "$TMP/changed.txt"
fi
