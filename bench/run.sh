#!/usr/bin/env bash
# Tollhouse proxy benchmark: tollhouse-dataplane vs nginx vs the backend alone.
#
#   bench/run.sh                              # defaults: ROUNDS=3 DURATION=10 CONNS=32
#   ROUNDS=5 DURATION=15 CONNS=64 bench/run.sh
#
# Cases, all measured with the same wrk settings in one run:
#   direct         wrk -> tollhouse-echo /fast
#   nginx          wrk -> nginx (1 worker, keepalive upstream) -> tollhouse-echo /fast
#   tollhouse-10   wrk -> tollhouse-dataplane (10 routes)       -> tollhouse-echo /fast
#   tollhouse-10k  wrk -> tollhouse-dataplane (10,000 routes)   -> tollhouse-echo /fast
#
# Proxies and backend are pinned to CPU 0, wrk to CPU 1. Rounds are interleaved (each round runs
# every case once, in an order rotated from round to round) so that drift on a shared machine
# hits all cases alike. For every run the
# proxy's CPU time (utime+stime from /proc/PID/stat) is read before and after and divided by the
# requests wrk completed. The table shows per-case medians.
#
# Other knobs: WARMUP (seconds per target, default 2), SKIP_BUILD=1 (use the binaries already in
# target/release), RESULTS=FILE (also write the raw per-run rows there, tab-separated).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
RESULTS=${RESULTS:-}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET_DIR/release

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for v in ROUNDS DURATION CONNS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
need_install=()
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_install+=(nginx-light)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
command -v taskset >/dev/null 2>&1 || need_install+=(util-linux)
command -v getconf >/dev/null 2>&1 || need_install+=(libc-bin)
if ((${#need_install[@]})); then
    log "installing ${need_install[*]}"
    SUDO=()
    [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    if ! "${SUDO[@]}" apt-get install -y -qq "${need_install[@]}"; then
        # Newer Debian releases fold nginx-light into nginx.
        "${SUDO[@]}" apt-get install -y -qq "${need_install[@]/nginx-light/nginx}"
    fi
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries (cargo build --release --bins)"
    (cd "$REPO" && cargo build --release --bins)
fi
for b in tollhouse-echo tollhouse-controller tollhouse-dataplane; do
    [[ -x $BIN/$b ]] || die "$BIN/$b missing (build failed?)"
done

# ---------------------------------------------------------------------------------------------
# Processes and clean-up
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollhouse-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $rc -ne 0 ]]; then
        log "failed (exit $rc); last lines of the process logs:"
        for f in "$TMP"/*.log "$TMP"/nginx/error.log; do
            [[ -f $f ]] && { echo "== $f" >&2; tail -n 5 "$f" >&2; }
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port nobody listens on (a race with other users is possible but unlikely).
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 30000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# start NAME CMD... : runs CMD pinned to CPU 0 in the background; sets LAST_PID.
start() {
    local name=$1
    shift
    taskset -c 0 "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_for URL SECONDS [PID]: until URL answers 2xx.
wait_for() {
    local url=$1 secs=$2 pid=${3:-}
    local deadline=$((SECONDS + secs))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || die "process for $url exited"
        ((SECONDS < deadline)) || die "timed out waiting for $url"
        sleep 0.2
    done
}

# The value of the first "hash" key in a JSON document (both /status and /snapshot have exactly
# one: the controller's is snapshot.hash, the dataplane's is the top-level hash).
json_hash() { tr -d ' \n' | grep -o '"hash":"[^"]*"' | head -n 1 | cut -d'"' -f4; }

# Sum of utime+stime (clock ticks) over the given pids.
cpu_ticks() {
    local total=0 p rest f
    for p in "$@"; do
        rest=$(cat "/proc/$p/stat") || die "process $p is gone"
        rest=${rest##*) }
        # After "pid (comm) ", field 3 (state) is word 1: utime (14) is word 12, stime (15) 13.
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------
BACKEND_PORT=$(free_port)
NGINX_PORT=$(free_port)

log "tmp dir $TMP; rounds=$ROUNDS duration=${DURATION}s conns=$CONNS warmup=${WARMUP}s"
start echo "$BIN/tollhouse-echo" --listen "127.0.0.1:$BACKEND_PORT" --name bench --workers 1
BACKEND_PID=$LAST_PID
wait_for "http://127.0.0.1:$BACKEND_PORT/fast" 20 "$BACKEND_PID"

# nginx
mkdir -p "$TMP/nginx"
user_directive=""
[[ $(id -u) -eq 0 ]] && user_directive="user $(id -un) $(id -gn);"
sed -e "s|@PREFIX@|$TMP/nginx|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
    -e "s|@LISTEN_PORT@|$NGINX_PORT|g" -e "s|@USER_DIRECTIVE@|$user_directive|" \
    "$HERE/nginx.conf.template" >"$TMP/nginx/nginx.conf"
"$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    || die "nginx -t failed"
start nginx "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
NGINX_PID=$LAST_PID
wait_for "http://127.0.0.1:$NGINX_PORT/svc5/items/42" 20 "$NGINX_PID"

# Manifests: one Stage and N ApiRoutes /svc{i}/items/{id} -> backend /fast.
write_manifests() {
    local dir=$1 n=$2
    mkdir -p "$dir"
    awk -v n="$n" -v port="$BACKEND_PORT" 'BEGIN {
        print "apiVersion: tollhouse.dev/v1alpha1"
        print "kind: Stage"
        print "metadata: {name: bench, namespace: default}"
        print "spec: {api: bench, basePath: /}"
        for (i = 0; i < n; i++) {
            print "---"
            print "apiVersion: tollhouse.dev/v1alpha1"
            print "kind: ApiRoute"
            printf "metadata: {name: r%d, namespace: default}\n", i
            print "spec:"
            print "  api: bench"
            printf "  path: /svc%d/items/{id}\n", i
            print "  methods: [GET]"
            printf "  integration: {type: HTTP_PROXY, uri: \"http://127.0.0.1:%d/fast\"}\n", port
        }
    }' >"$dir/bench.yaml"
}

# start_tollhouse NAME ROUTES: a controller and a dataplane serving ROUTES routes.
# Sets TH_PORT and TH_PID.
start_tollhouse() {
    local name=$1 n=$2
    local cport lport aport
    cport=$(free_port)
    lport=$(free_port)
    aport=$(free_port)
    write_manifests "$TMP/$name-manifests" "$n"
    mkdir -p "$TMP/$name-state"
    start "$name-controller" "$BIN/tollhouse-controller" --dir "$TMP/$name-manifests" \
        --listen "127.0.0.1:$cport"
    local cpid=$LAST_PID
    wait_for "http://127.0.0.1:$cport/readyz" 120 "$cpid"
    start "$name-dataplane" "$BIN/tollhouse-dataplane" --controller "http://127.0.0.1:$cport" \
        --listen "127.0.0.1:$lport" --admin "127.0.0.1:$aport" --workers 1 \
        --state-dir "$TMP/$name-state"
    local dpid=$LAST_PID
    wait_for "http://127.0.0.1:$aport/readyz" 120 "$dpid"
    local want got deadline=$((SECONDS + 120))
    while :; do
        want=$(curl -fsS --max-time 5 "http://127.0.0.1:$cport/status" | json_hash || true)
        got=$(curl -fsS --max-time 5 "http://127.0.0.1:$aport/snapshot" | json_hash || true)
        [[ -n $want && $want == "$got" ]] && break
        kill -0 "$dpid" 2>/dev/null || die "$name dataplane exited"
        ((SECONDS < deadline)) || die "$name: dataplane hash '$got' never reached controller's '$want'"
        sleep 0.2
    done
    local routes
    routes=$(curl -fsS "http://127.0.0.1:$aport/snapshot" | tr -d ' \n' \
        | grep -o '"routes":[0-9]*' | head -n 1 | cut -d: -f2 || true)
    log "$name: dataplane pid $dpid on :$lport serves snapshot ${want:0:12} (routes: ${routes:-?})"
    [[ -z $routes || $routes == "$n" ]] || die "$name: dataplane serves $routes routes, want $n"
    TH_PORT=$lport
    TH_PID=$dpid
}

start_tollhouse th10 10
TH10_PORT=$TH_PORT TH10_PID=$TH_PID
start_tollhouse th10k 10000
TH10K_PORT=$TH_PORT TH10K_PID=$TH_PID

# Cases: name, URL, pids whose CPU counts as "the proxy".
CASES=(direct nginx tollhouse-10 tollhouse-10k)
declare -A URL PROXY_PIDS
URL[direct]="http://127.0.0.1:$BACKEND_PORT/fast"
URL[nginx]="http://127.0.0.1:$NGINX_PORT/svc5/items/42"
URL[tollhouse-10]="http://127.0.0.1:$TH10_PORT/svc5/items/42"
URL[tollhouse-10k]="http://127.0.0.1:$TH10K_PORT/svc5000/items/42"
PROXY_PIDS[direct]="$BACKEND_PID"
# nginx: master plus its worker(s) (the master is idle; the worker does the proxying).
NGINX_WORKERS=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null || pgrep -P "$NGINX_PID" || true)
[[ -n ${NGINX_WORKERS// /} ]] || die "no nginx worker process found under $NGINX_PID"
PROXY_PIDS[nginx]="$NGINX_PID $NGINX_WORKERS"
PROXY_PIDS[tollhouse-10]="$TH10_PID"
PROXY_PIDS[tollhouse-10k]="$TH10K_PID"

# Every target must answer 200 with the backend's fixed body before it is measured.
for c in "${CASES[@]}"; do
    body=$(curl -fsS --max-time 5 "${URL[$c]}") || die "$c: ${URL[$c]} did not answer 2xx"
    [[ $body == "hello, world" ]] || die "$c: unexpected body from ${URL[$c]}: ${body:0:200}"
done

NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}' || true)
log "nginx $NGINX_VERSION, wrk $WRK_VERSION, CLK_TCK=$CLK_TCK, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

WRK=(taskset -c 1 wrk -t1 "-c$CONNS" --latency)

for c in "${CASES[@]}"; do
    log "warm-up $c (${WARMUP}s)"
    timeout $((WARMUP + 30)) "${WRK[@]}" "-d${WARMUP}s" "${URL[$c]}" >/dev/null
done

# ---------------------------------------------------------------------------------------------
# Measure
# ---------------------------------------------------------------------------------------------
# wrk latency ("812.00us", "1.20ms", "2.00s") to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); m = 1 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); m = 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); m = 60000000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); m = 1000000 }
        else m = 1
        printf "%.1f", v * m }'
}

RAW=$TMP/results.tsv
printf 'round\tcase\treq_s\tp50_us\tp99_us\tproxy_cpu_us_req\tbackend_cpu_us_req\trequests\terrors\n' >"$RAW"
NCASES=${#CASES[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the order each round (round 1: a b c d, round 2: b c d a, ...) so that no case is
    # always first or always right after the same neighbour.
    for ((k = 0; k < NCASES; k++)); do
        c=${CASES[$(((k + r - 1) % NCASES))]}
        # shellcheck disable=SC2086
        p0=$(cpu_ticks ${PROXY_PIDS[$c]})
        b0=$(cpu_ticks "$BACKEND_PID")
        out=$(timeout $((DURATION + 30)) "${WRK[@]}" "-d${DURATION}s" "${URL[$c]}")
        # shellcheck disable=SC2086
        p1=$(cpu_ticks ${PROXY_PIDS[$c]})
        b1=$(cpu_ticks "$BACKEND_PID")
        echo "$out" >"$TMP/wrk-$r-$c.txt"
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
        sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out")
        errors=$((${non2xx:-0} + ${sockerr:-0}))
        [[ -n $reqs && $reqs -gt 0 ]] || die "$c: could not parse wrk output: $out"
        pcpu=$(awk -v d=$((p1 - p0)) -v t="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / t * 1e6 / n}')
        bcpu=$(awk -v d=$((b1 - b0)) -v t="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / t * 1e6 / n}')
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$c" "$rps" "$p50" "$p99" "$pcpu" \
            "$bcpu" "$reqs" "$errors" >>"$RAW"
        log "round $r/$ROUNDS $c: ${rps} req/s, p50 ${p50}us, p99 ${p99}us, proxy ${pcpu} us/req, backend ${bcpu} us/req, errors $errors"
    done
done
[[ -z $RESULTS ]] || cp "$RAW" "$RESULTS"

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
echo
echo "Tollhouse proxy benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk $WRK_VERSION: taskset -c 1 wrk -t1 -c$CONNS -d${DURATION}s --latency; proxies + backend on CPU 0; nginx $NGINX_VERSION"
echo "medians of $ROUNDS interleaved rounds (case order rotated per round); CPU = utime+stime of the proxy process per request (direct: the backend's)"
echo
awk -F'\t' -v order="${CASES[*]}" '
function median(key, n,    a, i, j, t, k) {
    k = 0
    for (i = 1; i <= n; i++) a[++k] = vals[key, i]
    for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
NR > 1 {
    c = $2; n[c]++
    vals[c SUBSEP "rps", n[c]] = $3; vals[c SUBSEP "p50", n[c]] = $4; vals[c SUBSEP "p99", n[c]] = $5
    vals[c SUBSEP "cpu", n[c]] = $6; vals[c SUBSEP "bcpu", n[c]] = $7; err[c] += $9
}
END {
    fmt = "| %-13s | %9s | %8s | %8s | %17s | %19s | %6s |\n"
    printf fmt, "case", "req/s", "p50 ms", "p99 ms", "proxy CPU us/req", "backend CPU us/req", "errors"
    printf "|%s|%s|%s|%s|%s|%s|%s|\n", "---------------", "----------:", "---------:", "---------:", "------------------:", "--------------------:", "-------:"
    split(order, cases, " ")
    for (i = 1; i in cases; i++) {
        c = cases[i]; if (!(c in n)) continue
        rps[c] = median(c SUBSEP "rps", n[c]); cpu[c] = median(c SUBSEP "cpu", n[c])
        printf fmt, c, sprintf("%.0f", rps[c]), sprintf("%.3f", median(c SUBSEP "p50", n[c]) / 1000),
            sprintf("%.3f", median(c SUBSEP "p99", n[c]) / 1000), sprintf("%.2f", cpu[c]),
            sprintf("%.2f", median(c SUBSEP "bcpu", n[c])), err[c] + 0
    }
    print ""
    r = "| %-32s | %14s | %9s |\n"
    printf r, "ratio (of medians)", "CPU/request", "req/s"
    printf "|%s|%s|%s|\n", "----------------------------------", "---------------:", "----------:"
    printf r, "tollhouse-10k / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10k"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10k"] / rps["tollhouse-10"])
    printf r, "tollhouse-10 / nginx", sprintf("%.3f", cpu["tollhouse-10"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10"] / rps["nginx"])
    printf r, "tollhouse-10k / nginx", sprintf("%.3f", cpu["tollhouse-10k"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10k"] / rps["nginx"])
}' "$RAW"
echo
echo "per-run rows:"
column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
