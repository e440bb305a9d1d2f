#!/usr/bin/env bash
# Tollhouse proxy benchmark: tollhouse-dataplane vs nginx vs the backend alone, and optionally
# vs an older build of tollhouse, with and without access logging.
#
#   bench/run.sh                              # defaults: ROUNDS=3 DURATION=10 CONNS=32
#   ROUNDS=5 DURATION=15 CONNS=64 bench/run.sh
#   BASELINE=016d1e3 ROUNDS=5 bench/run.sh    # also measure the build at 016d1e3
#
# Cases, all measured with the same wrk settings in one run:
#   direct            wrk -> tollhouse-echo /fast
#   nginx             wrk -> nginx (1 worker, keepalive upstream) -> tollhouse-echo /fast
#   tollhouse-10      wrk -> tollhouse-dataplane (10 routes)       -> tollhouse-echo /fast
#   tollhouse-10k     wrk -> tollhouse-dataplane (10,000 routes)   -> tollhouse-echo /fast
#   baseline-10       as tollhouse-10, but controller and dataplane built from $BASELINE
#                     (only when BASELINE is set)
#   tollhouse-10-throttle  as tollhouse-10, with a Stage throttle no run reaches (THROTTLE_CASE=0
#                     leaves it out)
#   tollhouse-10-log  as tollhouse-10, but the Stage has an accessLog (AWS's JSON example
#                     format) and the dataplane runs with --access-log FILE (LOG_CASE=1)
#   tollhouse-10-key  as tollhouse-10, but every route has apiKeyRequired and wrk sends the
#                     x-api-key of a UsagePlan with a per-key throttle and a monthly quota no run
#                     reaches (KEY_CASE=0 leaves it out)
#   tollhouse-10-redis  as tollhouse-10-key, but the dataplane holds every limit and the quota
#                     in a redis-server (--redis; one Lua script round trip a request); the
#                     proxy's CPU is the dataplane's plus redis-server's (REDIS_CASE=0 leaves it
#                     out; it needs KEY_CASE=1)
#   tollhouse-10-jwt  as tollhouse-10, but every route has a JWT Authorizer and wrk sends a
#                     Bearer token (RS256, minted by PyJWT from e2e/idp/idp.py, which serves the
#                     issuer's discovery and JWKS; needs e2e/kube/setup.sh's venv); every request
#                     verifies the signature and the claims (JWT_CASE=0 leaves it out)
#   tollhouse-10-fn   as tollhouse-10, but every route has a TOKEN function Authorizer (the
#                     Powertools function e2e/functions/authorizer.py behind an Invoke-API
#                     server, on CPU 0) with the default 300 s result cache; wrk sends one token,
#                     so the function is called once and every request is a cache hit whose
#                     IAM policy is evaluated against the method ARN (FN_CASE=0 leaves it out)
#   tollhouse-10-sigv4  as tollhouse-10, but every route has a SIGV4 Authorizer; each run sends
#                     one request signed by botocore just before it (valid for 5 minutes), so
#                     every request is canonicalised and its signature checked; snapshots go
#                     over mutual TLS, as signing keys must (SIGV4_CASE=0 leaves it out)
#   tollhouse-10-policy  as tollhouse-10, but the Stage has a resource policy of three
#                     statements (a Deny of another range, a Deny of DELETE, an Allow of
#                     127.0.0.0/8 for GET) checked on every request (POLICY_CASE=0 leaves it out)
#   tollhouse-10-map  as tollhouse-10, but every route maps three request parameters (a header
#                     from $context.requestId, one from $request.header.user-agent, and removes
#                     one) (MAP_CASE=0 leaves it out)
#
# Proxies and backend are pinned to CPU 0, wrk to CPU 1. Rounds are interleaved (each round runs
# every case once, in an order rotated from round to round) so that drift on a shared machine
# hits all cases alike. For every run the
# proxy's CPU time (utime+stime from /proc/PID/stat) is read before and after and divided by the
# requests wrk completed. The table shows per-case medians.
#
# Other knobs: WARMUP (seconds per target, default 2), SKIP_BUILD=1 (use the binaries already in
# target/release, and the baseline's if they were built from the same revision), RESULTS=FILE
# (also write the raw per-run rows there, tab-separated).
#
# BASELINE=REV (any git revision): check REV out into the worktree target/bench-baseline/src
# (`git worktree add --detach`; reused, and moved to REV if needed, on later runs) and build its
# release binaries with CARGO_TARGET_DIR=target/bench-baseline/target, so the main target/ is
# never touched. baseline-10 gets the same manifests as tollhouse-10, which use only long-standing
# fields, and the same dataplane flags, so REV must accept those. Ratio rows
# "tollhouse-10 / baseline-10" are added.
#
# LOG_CASE=1 (default; 0 leaves it out): the tollhouse-10-log case, with the access log written
# to the run's temporary directory (about 250 bytes a request: 100-200 MB with the defaults). The
# dataplane must have --access-log and the controller must know the Stage's accessLog field; the
# script stops with an error before measuring if either is missing. After the run it checks that
# the log has about as many lines as requests were sent to that case, and adds the ratio row
# "tollhouse-10-log / tollhouse-10".
#
# MANY_KEYS=N (default 0: left out; needs KEY_CASE=1): the tollhouse-100k-key case, tollhouse-10-key
# with N-1 more keys in the plan (issue 11: 100,000 keys, lookups no slower than with one), and the
# ratio row "tollhouse-100k-key / tollhouse-10-key". bench/keys-scale.sh measures the rest of it.
#
# BUILD_ONLY=1: build (the main tree unless SKIP_BUILD=1, and the baseline when BASELINE is set),
# then exit without measuring; e.g. `SKIP_BUILD=1 BUILD_ONLY=1 BASELINE=REV nice -n 19
# bench/run.sh` prepares the baseline ahead of time.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
BUILD_ONLY=${BUILD_ONLY:-0}
BASELINE=${BASELINE:-}
LOG_CASE=${LOG_CASE:-1}
THROTTLE_CASE=${THROTTLE_CASE:-1}
KEY_CASE=${KEY_CASE:-1}
REDIS_CASE=${REDIS_CASE:-$KEY_CASE}
MANY_KEYS=${MANY_KEYS:-0}
JWT_CASE=${JWT_CASE:-1}
FN_CASE=${FN_CASE:-1}
SIGV4_CASE=${SIGV4_CASE:-1}
MAP_CASE=${MAP_CASE:-1}
POLICY_CASE=${POLICY_CASE:-1}
RESULTS=${RESULTS:-}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$TARGET_DIR/release
# The baseline lives under target/ (ignored by git, and out of the way of the main build).
BASE_ROOT=$REPO/target/bench-baseline
BASE_SRC=$BASE_ROOT/src
BASE_TARGET=$BASE_ROOT/target
BASE_BIN=$BASE_TARGET/release
BINS=(tollhouse-echo tollhouse-controller tollhouse-dataplane)
# AWS's JSON example for an access-log format (API Gateway developer guide, "access logging").
# shellcheck disable=SC2016 # the $context variables are for the dataplane, not for bash
ACCESS_LOG_FORMAT='{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","routeKey":"$context.routeKey","status":"$context.status","protocol":"$context.protocol","responseLength":"$context.responseLength"}'

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for v in ROUNDS DURATION CONNS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in BUILD_ONLY LOG_CASE THROTTLE_CASE KEY_CASE REDIS_CASE JWT_CASE FN_CASE SIGV4_CASE MAP_CASE POLICY_CASE; do
    [[ ${!v} == 0 || ${!v} == 1 ]] || die "$v must be 0 or 1 (got '${!v}')"
done

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries (cargo build --release --bins)"
    (cd "$REPO" && cargo build --release --bins)
fi
if [[ $SKIP_BUILD != 1 || $BUILD_ONLY != 1 ]]; then
    for b in "${BINS[@]}"; do
        [[ -x $BIN/$b ]] || die "$BIN/$b missing (build failed?)"
    done
fi

# baseline_worktree: $BASE_SRC is a worktree of this repository with $BASE_REV checked out.
baseline_worktree() {
    mkdir -p "$BASE_ROOT"
    # A worktree whose directory was deleted (cargo clean) is still registered until pruned.
    git -C "$REPO" worktree prune
    if [[ ! -e $BASE_SRC ]]; then
        log "adding worktree $BASE_SRC at ${BASE_REV:0:12}"
        git -C "$REPO" worktree add --quiet --detach "$BASE_SRC" "$BASE_REV"
        return
    fi
    # Inside target/ a plain directory would resolve to the main repository, so compare the
    # top level as well as the shared git directory.
    local top common want_common
    top=$(git -C "$BASE_SRC" rev-parse --show-toplevel 2>/dev/null || true)
    common=$(git -C "$BASE_SRC" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    want_common=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir)
    [[ $top == "$(cd "$BASE_SRC" && pwd -P)" && $common == "$want_common" ]] \
        || die "$BASE_SRC exists but is not a worktree of $REPO; remove it and run again"
    local dirty
    dirty=$(git -C "$BASE_SRC" status --porcelain --untracked-files=no)
    [[ -z $dirty ]] || die "baseline worktree $BASE_SRC has local changes, so it would not build \
$BASELINE as committed: $(tr '\n' ' ' <<<"$dirty")(it is only for bench/run.sh: \
git worktree remove --force $BASE_SRC)"
    local head
    head=$(git -C "$BASE_SRC" rev-parse HEAD)
    if [[ $head == "$BASE_REV" ]]; then
        log "reusing worktree $BASE_SRC at ${BASE_REV:0:12}"
    else
        log "moving worktree $BASE_SRC from ${head:0:12} to ${BASE_REV:0:12}"
        git -C "$BASE_SRC" checkout --quiet --detach "$BASE_REV"
    fi
}

# The baseline's binaries are reused only if they were built from the same revision: a stamp
# written after a successful build records which.
baseline_built() {
    local b
    for b in "${BINS[@]}"; do [[ -x $BASE_BIN/$b ]] || return 1; done
    [[ $(cat "$BASE_ROOT/built-rev" 2>/dev/null || true) == "$BASE_REV" ]]
}

if [[ -n $BASELINE ]]; then
    BASE_REV=$(git -C "$REPO" rev-parse --verify --quiet "$BASELINE^{commit}") \
        || die "BASELINE=$BASELINE is not a commit in $REPO"
    BASE_DESC=$(git -C "$REPO" log -1 --format='%h %s' "$BASE_REV")
    if [[ $SKIP_BUILD == 1 ]] && baseline_built; then
        log "baseline: using the binaries in $BASE_BIN, built from ${BASE_REV:0:12} (SKIP_BUILD=1)"
    else
        baseline_worktree
        log "building baseline ${BASE_REV:0:12} (cargo build --release --bins, CARGO_TARGET_DIR=$BASE_TARGET)"
        rm -f "$BASE_ROOT/built-rev"
        (cd "$BASE_SRC" && CARGO_TARGET_DIR=$BASE_TARGET cargo build --release --bins) \
            || die "baseline build of $BASELINE (${BASE_REV:0:12}) failed"
        echo "$BASE_REV" >"$BASE_ROOT/built-rev"
    fi
    for b in "${BINS[@]}"; do
        [[ -x $BASE_BIN/$b ]] || die "$BASE_BIN/$b missing (baseline build failed?)"
    done
fi

if [[ $BUILD_ONLY == 1 ]]; then
    [[ $SKIP_BUILD == 1 ]] || log "built $BIN/{$(IFS=,; echo "${BINS[*]}")}"
    [[ -z $BASELINE ]] || log "baseline ready: $BASE_BIN/{$(IFS=,; echo "${BINS[*]}")} from ${BASE_REV:0:12}"
    log "BUILD_ONLY=1: not measuring"
    exit 0
fi

# A dataplane without the flag would exit at start-up with a clap usage error; say so plainly
# before anything is started.
if [[ $LOG_CASE == 1 ]]; then
    dp_help=$("$BIN/tollhouse-dataplane" --help 2>&1 || true)
    [[ $dp_help == *--access-log* ]] || die "LOG_CASE=1, but $BIN/tollhouse-dataplane does not accept --access-log (it predates \
access logging, or was built before it was added); rebuild, or run with LOG_CASE=0"
fi

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
need_install=()
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_install+=(nginx-light)
command -v curl >/dev/null 2>&1 || need_install+=(curl)
[[ $REDIS_CASE != 1 ]] || command -v redis-server >/dev/null 2>&1 || need_install+=(redis-server)
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
# Processes and clean-up
# ---------------------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollhouse-bench.XXXXXX")
ACCESS_LOG=$TMP/access.log
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
            [[ $f == "$ACCESS_LOG" ]] && continue
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

# wait_for URL SECONDS [PID [NAME]]: until URL answers 2xx.
wait_for() {
    local url=$1 secs=$2 pid=${3:-} name=${4:-}
    local deadline=$((SECONDS + secs))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || die "${name:-process} for $url exited${name:+: \
$(grep -m 1 -i error "$TMP/$name.log" 2>/dev/null || true)}"
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

# Manifests: one Stage and N ApiRoutes /svc{i}/items/{id} -> backend /fast. STAGE_EXTRA is
# appended inside the Stage's spec mapping (", key: value"); it goes through the environment
# because awk -v would interpret backslashes. ROUTE_EXTRA (from the environment: a line such as
# "  apiKeyRequired: true") is added to every route's spec, INTEGRATION_EXTRA (", key: value")
# inside every route's integration, and EXTRA_YAML (a file) appended.
write_manifests() {
    local dir=$1 n=$2 extra=${3:-}
    mkdir -p "$dir"
    STAGE_EXTRA=$extra ROUTE_EXTRA=${ROUTE_EXTRA:-} INTEGRATION_EXTRA=${INTEGRATION_EXTRA:-} awk -v n="$n" -v port="$BACKEND_PORT" 'BEGIN {
        print "apiVersion: tollhouse.dev/v1alpha1"
        print "kind: Stage"
        print "metadata: {name: bench, namespace: default}"
        print "spec: {api: bench, basePath: /" ENVIRON["STAGE_EXTRA"] "}"
        for (i = 0; i < n; i++) {
            print "---"
            print "apiVersion: tollhouse.dev/v1alpha1"
            print "kind: ApiRoute"
            printf "metadata: {name: r%d, namespace: default}\n", i
            print "spec:"
            print "  api: bench"
            printf "  path: /svc%d/items/{id}\n", i
            print "  methods: [GET]"
            printf "  integration: {type: HTTP_PROXY, uri: \"http://127.0.0.1:%d/fast\"%s}\n", port, ENVIRON["INTEGRATION_EXTRA"]
            if (ENVIRON["ROUTE_EXTRA"] != "") print ENVIRON["ROUTE_EXTRA"]
        }
    }' >"$dir/bench.yaml"
    [[ -z ${EXTRA_YAML:-} ]] || cp "$EXTRA_YAML" "$dir/extra.yaml"
}

# start_tollhouse NAME ROUTES [BINDIR [STAGE_EXTRA [DATAPLANE_ARG...]]]: a controller and a
# dataplane from BINDIR (default $BIN) serving ROUTES routes. Sets TH_PORT, TH_ADMIN and TH_PID.
start_tollhouse() {
    local name=$1 n=$2 bin=${3:-$BIN} extra=${4:-}
    shift $(($# < 4 ? $# : 4))
    local cport lport aport
    cport=$(free_port)
    lport=$(free_port)
    aport=$(free_port)
    write_manifests "$TMP/$name-manifests" "$n" "$extra"
    mkdir -p "$TMP/$name-state"
    # TH_TLS=1: snapshots over mutual TLS (they carry secrets, e.g. SigV4 signing keys); the
    # controller's status is then on its plain admin listener.
    local status_port=$cport scheme=http ctls=() dtls=()
    if [[ ${TH_TLS:-0} == 1 ]]; then
        local certs=$TMP/$name-certs
        "$bin/tollhouse-devcerts" --out "$certs" --name 127.0.0.1 >/dev/null
        status_port=$(free_port)
        scheme=https
        ctls=(--tls-cert "$certs/controller.pem" --tls-key "$certs/controller.key"
            --client-ca "$certs/ca.pem" --admin-listen "127.0.0.1:$status_port")
        dtls=(--controller-ca "$certs/ca.pem" --tls-cert "$certs/dataplane.pem"
            --tls-key "$certs/dataplane.key")
    fi
    start "$name-controller" "$bin/tollhouse-controller" --dir "$TMP/$name-manifests" \
        --listen "127.0.0.1:$cport" "${ctls[@]}"
    local cpid=$LAST_PID
    wait_for "http://127.0.0.1:$status_port/readyz" 120 "$cpid" "$name-controller"
    start "$name-dataplane" "$bin/tollhouse-dataplane" --controller "$scheme://127.0.0.1:$cport" \
        --listen "127.0.0.1:$lport" --admin "127.0.0.1:$aport" --workers 1 \
        --state-dir "$TMP/$name-state" "${dtls[@]}" "$@"
    local dpid=$LAST_PID
    wait_for "http://127.0.0.1:$aport/readyz" 120 "$dpid" "$name-dataplane"
    local want got deadline=$((SECONDS + 120))
    while :; do
        want=$(curl -fsS --max-time 5 "http://127.0.0.1:$status_port/status" | json_hash || true)
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
    TH_ADMIN=$aport
    TH_PID=$dpid
}

# This tree's dataplanes hold every request to an account-wide limit (AWS's 10,000 a second by
# default, which the runs here exceed); it is raised out of reach, so they pay for the check
# without ever refusing. So is a baseline's, when it has the flag.
ACCOUNT=(--account-rate-limit 1000000000 --account-burst-limit 1000000000)
start_tollhouse th10 10 "$BIN" "" "${ACCOUNT[@]}"
TH10_PORT=$TH_PORT TH10_PID=$TH_PID
start_tollhouse th10k 10000 "$BIN" "" "${ACCOUNT[@]}"
TH10K_PORT=$TH_PORT TH10K_PID=$TH_PID
if [[ -n $BASELINE ]]; then
    # A baseline that has the account limit gets the same flags (else its 10,000/s default
    # answers most of the run with 429s); an older one has no such limit.
    BASE_ACCOUNT=()
    if "$BASE_BIN/tollhouse-dataplane" --help 2>/dev/null | grep -q -- --account-rate-limit; then
        BASE_ACCOUNT=("${ACCOUNT[@]}")
    fi
    start_tollhouse base10 10 "$BASE_BIN" "" "${BASE_ACCOUNT[@]}"
    BASE10_PORT=$TH_PORT BASE10_PID=$TH_PID
    # The same routes, so the same manifests: nothing a baseline controller might not know.
    cmp -s "$TMP/th10-manifests/bench.yaml" "$TMP/base10-manifests/bench.yaml" \
        || die "baseline-10 and tollhouse-10 manifests differ"
fi
if [[ $LOG_CASE == 1 ]]; then
    # A single-quoted YAML scalar: the format is full of double quotes, braces and commas.
    start_tollhouse th10log 10 "$BIN" ", accessLog: {format: '$ACCESS_LOG_FORMAT'}" \
        --access-log "$ACCESS_LOG" "${ACCOUNT[@]}"
    TH10LOG_PORT=$TH_PORT TH10LOG_PID=$TH_PID TH10LOG_ADMIN=$TH_ADMIN
fi
if [[ $THROTTLE_CASE == 1 ]]; then
    # A Stage limit no run reaches: every request takes a token from it and from the account.
    start_tollhouse th10throttle 10 "$BIN" ", throttle: {rateLimit: 1000000000, burstLimit: 1000000000}" \
        "${ACCOUNT[@]}"
    TH10THR_PORT=$TH_PORT TH10THR_PID=$TH_PID
fi

if [[ $KEY_CASE == 1 ]]; then
    # One API key in a plan whose per-key throttle and monthly quota no run reaches: every
    # request hashes and looks up its key, takes a token from the plan's bucket for it, counts
    # in its quota (written to the state directory each second) and passes the account limit.
    BENCH_KEY=BenchKey0123456789abcdefghijklmnop
    cat >"$TMP/keys.yaml" <<YAML
apiVersion: v1
kind: Secret
type: tollhouse.dev/api-key
metadata: {name: bench-key, namespace: default, labels: {plan: bench}}
stringData: {key: $BENCH_KEY}
---
apiVersion: tollhouse.dev/v1alpha1
kind: UsagePlan
metadata: {name: bench, namespace: default}
spec:
  apiStages: [{stage: bench}]
  throttle: {rateLimit: 1000000000, burstLimit: 1000000000}
  quota: {limit: 1000000000000, period: MONTH}
  apiKeySelector: {matchLabels: {plan: bench}}
YAML
    ROUTE_EXTRA="  apiKeyRequired: true" EXTRA_YAML="$TMP/keys.yaml" \
        start_tollhouse th10key 10 "$BIN" "" "${ACCOUNT[@]}"
    TH10KEY_PORT=$TH_PORT TH10KEY_PID=$TH_PID
    code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TH10KEY_PORT/svc5/items/42")
    [[ $code == 403 ]] || die "tollhouse-10-key: a request without a key got $code, not 403"
fi
if [[ $MANY_KEYS -gt 0 ]]; then
    [[ $KEY_CASE == 1 ]] || die "MANY_KEYS needs KEY_CASE=1"
    # The bench key and MANY_KEYS-1 others, all in the plan: the one sent is looked up among them.
    cp "$TMP/keys.yaml" "$TMP/many-keys.yaml"
    awk -v n="$MANY_KEYS" 'BEGIN { for (i = 1; i < n; i++) printf "---\napiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata: {name: k%d, namespace: default, labels: {plan: bench}}\nstringData: {key: ManyKey%012dabcdefghij}\n", i, i }' >>"$TMP/many-keys.yaml"
    ROUTE_EXTRA="  apiKeyRequired: true" EXTRA_YAML="$TMP/many-keys.yaml" \
        start_tollhouse th100kkey 10 "$BIN" "" "${ACCOUNT[@]}"
    TH100KKEY_PORT=$TH_PORT TH100KKEY_PID=$TH_PID
    # Served only once the whole snapshot, every key included, is.
    for _ in $(seq 600); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' -H "x-api-key: ManyKey$(printf %012d $((MANY_KEYS - 1)))abcdefghij" "http://127.0.0.1:$TH100KKEY_PORT/svc5/items/42" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || die "tollhouse-100k-key: the last of the $MANY_KEYS keys is not served ($code)"
fi
if [[ $REDIS_CASE == 1 ]]; then
    [[ $KEY_CASE == 1 ]] || die "REDIS_CASE=1 needs KEY_CASE=1"
    REDIS_PORT=$(free_port)
    start redis /usr/bin/redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
        --appendonly no
    REDIS_PID=$LAST_PID
    for _ in $(seq 100); do
        [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] || die "redis-server did not start"
    ROUTE_EXTRA="  apiKeyRequired: true" EXTRA_YAML="$TMP/keys.yaml" \
        start_tollhouse th10redis 10 "$BIN" "" "${ACCOUNT[@]}" --redis "redis://127.0.0.1:$REDIS_PORT"
    TH10REDIS_PORT=$TH_PORT TH10REDIS_PID=$TH_PID TH10REDIS_ADMIN=$TH_ADMIN
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$TH10REDIS_ADMIN/metrics" | grep -q '^tollhouse_redis_up 1' && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$TH10REDIS_ADMIN/metrics" | grep -q '^tollhouse_redis_up 1' \
        || die "tollhouse-10-redis: the dataplane never reported tollhouse_redis_up 1"
fi

if [[ $JWT_CASE == 1 ]]; then
    # The test issuer (PyJWT) on CPU 0; it is asked once for discovery and keys, then idle.
    PY=${TOLLHOUSE_PYTHON:-$HOME/.cache/tollhouse-kube/bin/python-boto3}
    [[ -x $PY ]] || die "JWT_CASE=1 needs PyJWT: run e2e/kube/setup.sh (or JWT_CASE=0)"
    IDP_PORT=$(free_port)
    start idp "$PY" "$REPO/e2e/idp/idp.py" "$IDP_PORT"
    wait_for "http://127.0.0.1:$IDP_PORT/counts" 30 "$LAST_PID" idp
    ISSUER="http://127.0.0.1:$IDP_PORT"
    cat >"$TMP/jwt.yaml" <<YAML
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {name: bench, namespace: default}
spec:
  type: JWT
  jwt: {issuer: "$ISSUER", audience: [bench]}
YAML
    NOW=$(date +%s)
    BENCH_TOKEN=$(curl -fsS "$ISSUER/mint" -d "{\"kid\":\"k1\",\"claims\":{\"iss\":\"$ISSUER\",\"aud\":\"bench\",\"sub\":\"bench\",\"iat\":$NOW,\"exp\":$((NOW + 86400)),\"scope\":\"bench\"}}")
    ROUTE_EXTRA="  authorization: {authorizerRef: {name: bench}}" EXTRA_YAML="$TMP/jwt.yaml" \
        start_tollhouse th10jwt 10 "$BIN" "" "${ACCOUNT[@]}"
    TH10JWT_PORT=$TH_PORT TH10JWT_PID=$TH_PID
    code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TH10JWT_PORT/svc5/items/42")
    [[ $code == 401 ]] || die "tollhouse-10-jwt: a request without a token got $code, not 401"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer $BENCH_TOKEN" "http://127.0.0.1:$TH10JWT_PORT/svc5/items/42")
    [[ $code == 200 ]] || die "tollhouse-10-jwt: a request with a valid token got $code, not 200"
fi

if [[ $FN_CASE == 1 ]]; then
    PY=${TOLLHOUSE_PYTHON:-$HOME/.cache/tollhouse-kube/bin/python-boto3}
    [[ -x $PY ]] || die "FN_CASE=1 needs AWS Lambda Powertools: run e2e/kube/setup.sh (or FN_CASE=0)"
    FN_PORT=$(free_port)
    start fn "$PY" "$REPO/e2e/functions/authorizer.py" "$FN_PORT"
    wait_for "http://127.0.0.1:$FN_PORT/counts" 30 "$LAST_PID" fn
    cat >"$TMP/fn.yaml" <<YAML
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {name: bench, namespace: default}
spec:
  type: TOKEN
  function: {uri: "http://127.0.0.1:$FN_PORT/2015-03-31/functions/function/invocations"}
YAML
    ROUTE_EXTRA="  authorization: {authorizerRef: {name: bench}}" EXTRA_YAML="$TMP/fn.yaml" \
        start_tollhouse th10fn 10 "$BIN" "" "${ACCOUNT[@]}"
    TH10FN_PORT=$TH_PORT TH10FN_PID=$TH_PID
    code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TH10FN_PORT/svc5/items/42")
    [[ $code == 401 ]] || die "tollhouse-10-fn: a request without a token got $code, not 401"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "authorization: Bearer allow:bench" "http://127.0.0.1:$TH10FN_PORT/svc5/items/42")
    [[ $code == 200 ]] || die "tollhouse-10-fn: a request with an allowed token got $code, not 200"
fi

if [[ $SIGV4_CASE == 1 ]]; then
    PY=${TOLLHOUSE_PYTHON:-$HOME/.cache/tollhouse-kube/bin/python-boto3}
    [[ -x $PY ]] || die "SIGV4_CASE=1 needs botocore: run e2e/kube/setup.sh (or SIGV4_CASE=0)"
    cat >"$TMP/sigv4.yaml" <<YAML
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {name: bench, namespace: default}
spec:
  type: SIGV4
  sigv4: {region: us-east-1, credentialSelector: {matchLabels: {bench: sigv4}}}
---
apiVersion: v1
kind: Secret
type: tollhouse.dev/sigv4-credentials
metadata: {name: bench, namespace: default, labels: {bench: sigv4}}
stringData: {accessKeyId: AKIDBENCH, secretAccessKey: bench-secret-access-key}
YAML
    TH_TLS=1 ROUTE_EXTRA="  authorization: {authorizerRef: {name: bench}}" EXTRA_YAML="$TMP/sigv4.yaml" \
        start_tollhouse th10sigv4 10 "$BIN" "" "${ACCOUNT[@]}"
    TH10SIGV4_PORT=$TH_PORT TH10SIGV4_PID=$TH_PID
    code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TH10SIGV4_PORT/svc5/items/42")
    [[ $code == 403 ]] || die "tollhouse-10-sigv4: an unsigned request got $code, not 403"
fi

# sigv4_headers URL: botocore's Authorization and X-Amz-Date for a GET of URL, one per line.
sigv4_headers() {
    "$PY" - "$1" <<'PY'
import sys, botocore.auth, botocore.awsrequest, botocore.credentials
req = botocore.awsrequest.AWSRequest("GET", sys.argv[1])
creds = botocore.credentials.Credentials("AKIDBENCH", "bench-secret-access-key")
botocore.auth.SigV4Auth(creds, "execute-api", "us-east-1").add_auth(req)
print("authorization: " + req.headers["Authorization"])
print("x-amz-date: " + req.headers["X-Amz-Date"])
PY
}

if [[ $MAP_CASE == 1 ]]; then
    INTEGRATION_EXTRA=', requestParameters: {"overwrite:header.x-request": "$context.requestId", "append:header.x-agent": "ua=$request.header.user-agent", "remove:header.accept": "'"''"'"}' \
        start_tollhouse th10map 10 "$BIN" "" "${ACCOUNT[@]}"
    TH10MAP_PORT=$TH_PORT TH10MAP_PID=$TH_PID
fi

if [[ $POLICY_CASE == 1 ]]; then
    start_tollhouse th10policy 10 "$BIN" ', resourcePolicy: {statements: [{effect: Deny, sourceIps: ["203.0.113.0/24"]}, {effect: Deny, routes: ["DELETE /*"]}, {effect: Allow, sourceIps: ["127.0.0.0/8"], routes: ["GET /*"]}]}' "${ACCOUNT[@]}"
    TH10POLICY_PORT=$TH_PORT TH10POLICY_PID=$TH_PID
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "http://127.0.0.1:$TH10POLICY_PORT/svc5/items/42")
    [[ $code == 403 || $code == 404 ]] || die "tollhouse-10-policy: a DELETE got $code, not 403/404"
fi

# Cases: name, URL, pids whose CPU counts as "the proxy"; HEADER: a request header to send.
CASES=(direct nginx tollhouse-10 tollhouse-10k)
[[ -z $BASELINE ]] || CASES+=(baseline-10)
[[ $LOG_CASE != 1 ]] || CASES+=(tollhouse-10-log)
[[ $THROTTLE_CASE != 1 ]] || CASES+=(tollhouse-10-throttle)
[[ $KEY_CASE != 1 ]] || CASES+=(tollhouse-10-key)
[[ $REDIS_CASE != 1 ]] || CASES+=(tollhouse-10-redis)
[[ $MANY_KEYS -le 0 ]] || CASES+=(tollhouse-100k-key)
[[ $JWT_CASE != 1 ]] || CASES+=(tollhouse-10-jwt)
[[ $FN_CASE != 1 ]] || CASES+=(tollhouse-10-fn)
[[ $SIGV4_CASE != 1 ]] || CASES+=(tollhouse-10-sigv4)
[[ $MAP_CASE != 1 ]] || CASES+=(tollhouse-10-map)
[[ $POLICY_CASE != 1 ]] || CASES+=(tollhouse-10-policy)
declare -A URL PROXY_PIDS HEADER
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
if [[ -n $BASELINE ]]; then
    URL[baseline-10]="http://127.0.0.1:$BASE10_PORT/svc5/items/42"
    PROXY_PIDS[baseline-10]="$BASE10_PID"
fi
if [[ $LOG_CASE == 1 ]]; then
    URL[tollhouse-10-log]="http://127.0.0.1:$TH10LOG_PORT/svc5/items/42"
    # The log's writer thread is part of the dataplane process, so its CPU counts too.
    PROXY_PIDS[tollhouse-10-log]="$TH10LOG_PID"
fi
if [[ $THROTTLE_CASE == 1 ]]; then
    URL[tollhouse-10-throttle]="http://127.0.0.1:$TH10THR_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-throttle]="$TH10THR_PID"
fi
if [[ $KEY_CASE == 1 ]]; then
    URL[tollhouse-10-key]="http://127.0.0.1:$TH10KEY_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-key]="$TH10KEY_PID"
    HEADER[tollhouse-10-key]="x-api-key: $BENCH_KEY"
fi
if [[ $JWT_CASE == 1 ]]; then
    URL[tollhouse-10-jwt]="http://127.0.0.1:$TH10JWT_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-jwt]="$TH10JWT_PID"
    HEADER[tollhouse-10-jwt]="authorization: Bearer $BENCH_TOKEN"
fi
if [[ $FN_CASE == 1 ]]; then
    URL[tollhouse-10-fn]="http://127.0.0.1:$TH10FN_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-fn]="$TH10FN_PID"
    HEADER[tollhouse-10-fn]="authorization: Bearer allow:bench"
fi
if [[ $SIGV4_CASE == 1 ]]; then
    URL[tollhouse-10-sigv4]="http://127.0.0.1:$TH10SIGV4_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-sigv4]="$TH10SIGV4_PID"
fi
if [[ $POLICY_CASE == 1 ]]; then
    URL[tollhouse-10-policy]="http://127.0.0.1:$TH10POLICY_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-policy]="$TH10POLICY_PID"
fi
if [[ $MAP_CASE == 1 ]]; then
    URL[tollhouse-10-map]="http://127.0.0.1:$TH10MAP_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-10-map]="$TH10MAP_PID"
fi
if [[ $MANY_KEYS -gt 0 ]]; then
    URL[tollhouse-100k-key]="http://127.0.0.1:$TH100KKEY_PORT/svc5/items/42"
    PROXY_PIDS[tollhouse-100k-key]="$TH100KKEY_PID"
    HEADER[tollhouse-100k-key]="x-api-key: $BENCH_KEY"
fi
if [[ $REDIS_CASE == 1 ]]; then
    URL[tollhouse-10-redis]="http://127.0.0.1:$TH10REDIS_PORT/svc5/items/42"
    # Redis does the counting: its CPU is part of what the case costs.
    PROXY_PIDS[tollhouse-10-redis]="$TH10REDIS_PID $REDIS_PID"
    HEADER[tollhouse-10-redis]="x-api-key: $BENCH_KEY"
fi

# header_args CASE: the request-header arguments (curl and wrk both take -H) of a case.
# The SigV4 case signs afresh each time (a signature is good for 5 minutes).
header_args() {
    if [[ $1 == tollhouse-10-sigv4 ]]; then
        local h
        while IFS= read -r h; do printf '%s\n' -H "$h"; done < <(sigv4_headers "${URL[$1]}")
        return
    fi
    [[ -z ${HEADER[$1]:-} ]] || printf '%s\n' -H "${HEADER[$1]}"
}

# Every target must answer 200 with the backend's fixed body before it is measured.
for c in "${CASES[@]}"; do
    mapfile -t hargs < <(header_args "$c")
    body=$(curl -fsS --max-time 5 "${hargs[@]}" "${URL[$c]}") || die "$c: ${URL[$c]} did not answer 2xx"
    [[ $body == "hello, world" ]] || die "$c: unexpected body from ${URL[$c]}: ${body:0:200}"
done

# log_lines: lines in the access log once the writer has caught up (the count holds still for
# a second).
log_lines() {
    local a b=-1 deadline=$((SECONDS + 15))
    while :; do
        a=$(wc -l 2>/dev/null <"$ACCESS_LOG" || echo 0)
        [[ $a == "$b" ]] && break
        ((SECONDS < deadline)) || break
        b=$a
        sleep 1
    done
    echo "$a"
}

# Requests sent to tollhouse-10-log: the check above, the warm-up and the measured runs.
LOG_SENT=1
if [[ $LOG_CASE == 1 ]]; then
    deadline=$((SECONDS + 10))
    until [[ -s $ACCESS_LOG ]] || ((SECONDS >= deadline)); do sleep 0.2; done
    [[ -s $ACCESS_LOG ]] || die "tollhouse-10-log: a request was served but $ACCESS_LOG is empty: \
the Stage's accessLog did not reach the dataplane (does this controller know the field?) or the \
dataplane does not write it"
fi

NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}' || true)
log "nginx $NGINX_VERSION, wrk $WRK_VERSION, CLK_TCK=$CLK_TCK, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

WRK=(taskset -c 1 wrk -t1 "-c$CONNS" --latency)

for c in "${CASES[@]}"; do
    log "warm-up $c (${WARMUP}s)"
    mapfile -t hargs < <(header_args "$c")
    out=$(timeout $((WARMUP + 30)) "${WRK[@]}" "${hargs[@]}" "-d${WARMUP}s" "${URL[$c]}")
    if [[ $c == tollhouse-10-log ]]; then
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        LOG_SENT=$((LOG_SENT + ${reqs:-0}))
    fi
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
        mapfile -t hargs < <(header_args "$c")
        out=$(timeout $((DURATION + 30)) "${WRK[@]}" "${hargs[@]}" "-d${DURATION}s" "${URL[$c]}")
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
        [[ $c != tollhouse-10-log ]] || LOG_SENT=$((LOG_SENT + reqs))
        pcpu=$(awk -v d=$((p1 - p0)) -v t="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / t * 1e6 / n}')
        bcpu=$(awk -v d=$((b1 - b0)) -v t="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.2f", d / t * 1e6 / n}')
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$c" "$rps" "$p50" "$p99" "$pcpu" \
            "$bcpu" "$reqs" "$errors" >>"$RAW"
        log "round $r/$ROUNDS $c: ${rps} req/s, p50 ${p50}us, p99 ${p99}us, proxy ${pcpu} us/req, backend ${bcpu} us/req, errors $errors"
    done
done
[[ -z $RESULTS ]] || cp "$RAW" "$RESULTS"
# A case answering errors (429s from a limit, 5xx, socket errors) did not measure proxying.
ERRORED=$(awk -F'\t' 'NR > 1 && $9 > 0 {print $2}' "$RAW" | sort -u | tr '\n' ' ')

if [[ $LOG_CASE == 1 ]]; then
    LOG_LINES=$(log_lines)
    LOG_DROPPED=$(curl -fsS --max-time 5 "http://127.0.0.1:$TH10LOG_ADMIN/metrics" \
        | awk '$1 == "tollhouse_access_log_dropped_total" {print $2}' || true)
    # wrk counts only the requests it saw answered; each run can leave up to CONNS in flight
    # that the dataplane still served (and logged) when wrk stopped.
    LOG_SLACK=$((CONNS * (ROUNDS + 1) + LOG_SENT / 1000))
    LOG_DIFF=$((LOG_LINES - LOG_SENT))
    LOG_VERDICT=ok
    ((LOG_DIFF <= LOG_SLACK && -LOG_DIFF <= LOG_SLACK)) || LOG_VERDICT=MISMATCH
fi

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
echo
echo "Tollhouse proxy benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk $WRK_VERSION: taskset -c 1 wrk -t1 -c$CONNS -d${DURATION}s --latency; proxies + backend on CPU 0; nginx $NGINX_VERSION"
echo "medians of $ROUNDS interleaved rounds (case order rotated per round); CPU = utime+stime of the proxy process per request (direct: the backend's)"
[[ -z $BASELINE ]] || echo "baseline-10: controller + dataplane built from $BASE_DESC, same manifests as tollhouse-10"
[[ $LOG_CASE != 1 ]] || echo "tollhouse-10-log: tollhouse-10 + Stage accessLog (AWS JSON example format), dataplane --access-log FILE"
[[ $THROTTLE_CASE != 1 ]] || echo "tollhouse-10-throttle: tollhouse-10 + Stage throttle (never reached); every tollhouse case has an account limit it never reaches"
[[ $KEY_CASE != 1 ]] || echo "tollhouse-10-key: tollhouse-10 + apiKeyRequired on every route, wrk sends x-api-key; UsagePlan with per-key throttle and monthly quota (never reached)"
[[ $MANY_KEYS -le 0 ]] || echo "tollhouse-100k-key: tollhouse-10-key with $MANY_KEYS keys in the plan (the same one sent)"
[[ $JWT_CASE != 1 ]] || echo "tollhouse-10-jwt: tollhouse-10 + a JWT Authorizer on every route (RS256, 2048-bit key from the issuer's JWKS), wrk sends a Bearer token"
[[ $FN_CASE != 1 ]] || echo "tollhouse-10-fn: tollhouse-10 + a TOKEN function Authorizer on every route (Powertools function, 300 s cache), wrk sends one token: $(curl -fsS "http://127.0.0.1:$FN_PORT/counts") for the whole run"
[[ $SIGV4_CASE != 1 ]] || echo "tollhouse-10-sigv4: tollhouse-10 + a SIGV4 Authorizer on every route; wrk replays one botocore-signed GET per run (canonical request, HMAC check)"
[[ $POLICY_CASE != 1 ]] || echo "tollhouse-10-policy: tollhouse-10 + a Stage resource policy of three statements, checked on every request"
[[ $MAP_CASE != 1 ]] || echo "tollhouse-10-map: tollhouse-10 + three requestParameters on every route (two headers set from \$context/\$request, one removed)"
[[ $REDIS_CASE != 1 ]] || echo "tollhouse-10-redis: tollhouse-10-key + --redis (redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2) on CPU 0, no persistence); CPU = dataplane + redis-server"
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
    split(order, cases, " ")
    # The case column is as wide as the longest name (13 without the optional cases).
    w = 13
    for (i = 1; i in cases; i++) if (length(cases[i]) > w) w = length(cases[i])
    dashes = ""
    for (i = 0; i < w + 2; i++) dashes = dashes "-"
    fmt = "| %-" w "s | %9s | %8s | %8s | %17s | %19s | %6s |\n"
    printf fmt, "case", "req/s", "p50 ms", "p99 ms", "proxy CPU us/req", "backend CPU us/req", "errors"
    printf "|%s|%s|%s|%s|%s|%s|%s|\n", dashes, "----------:", "---------:", "---------:", "------------------:", "--------------------:", "-------:"
    for (i = 1; i in cases; i++) {
        c = cases[i]; if (!(c in n)) continue
        rps[c] = median(c SUBSEP "rps", n[c]); cpu[c] = median(c SUBSEP "cpu", n[c])
        printf fmt, c, sprintf("%.0f", rps[c]), sprintf("%.3f", median(c SUBSEP "p50", n[c]) / 1000),
            sprintf("%.3f", median(c SUBSEP "p99", n[c]) / 1000), sprintf("%.2f", cpu[c]),
            sprintf("%.2f", median(c SUBSEP "bcpu", n[c])), err[c] + 0
    }
    print ""
    r = "| %-38s | %14s | %9s |\n"
    printf r, "ratio (of medians)", "CPU/request", "req/s"
    printf "|%s|%s|%s|\n", "----------------------------------------", "---------------:", "----------:"
    printf r, "tollhouse-10k / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10k"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10k"] / rps["tollhouse-10"])
    printf r, "tollhouse-10 / nginx", sprintf("%.3f", cpu["tollhouse-10"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10"] / rps["nginx"])
    printf r, "tollhouse-10k / nginx", sprintf("%.3f", cpu["tollhouse-10k"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10k"] / rps["nginx"])
    if ("baseline-10" in n)
        printf r, "tollhouse-10 / baseline-10", sprintf("%.3f", cpu["tollhouse-10"] / cpu["baseline-10"]), sprintf("%.3f", rps["tollhouse-10"] / rps["baseline-10"])
    if ("tollhouse-10-log" in n)
        printf r, "tollhouse-10-log / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-log"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-log"] / rps["tollhouse-10"])
    if ("tollhouse-10-throttle" in n) {
        printf r, "tollhouse-10-throttle / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-throttle"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-throttle"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-throttle / nginx", sprintf("%.3f", cpu["tollhouse-10-throttle"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-throttle"] / rps["nginx"])
    }
    if ("tollhouse-100k-key" in n) {
        printf r, "tollhouse-100k-key / tollhouse-10-key", sprintf("%.3f", cpu["tollhouse-100k-key"] / cpu["tollhouse-10-key"]), sprintf("%.3f", rps["tollhouse-100k-key"] / rps["tollhouse-10-key"])
    }
    if ("tollhouse-10-key" in n) {
        printf r, "tollhouse-10-key / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-key"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-key"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-key / nginx", sprintf("%.3f", cpu["tollhouse-10-key"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-key"] / rps["nginx"])
    }
    if ("tollhouse-10-jwt" in n) {
        printf r, "tollhouse-10-jwt / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-jwt"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-jwt"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-jwt / nginx", sprintf("%.3f", cpu["tollhouse-10-jwt"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-jwt"] / rps["nginx"])
    }
    if ("tollhouse-10-fn" in n) {
        printf r, "tollhouse-10-fn / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-fn"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-fn"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-fn / nginx", sprintf("%.3f", cpu["tollhouse-10-fn"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-fn"] / rps["nginx"])
    }
    if ("tollhouse-10-sigv4" in n) {
        printf r, "tollhouse-10-sigv4 / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-sigv4"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-sigv4"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-sigv4 / nginx", sprintf("%.3f", cpu["tollhouse-10-sigv4"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-sigv4"] / rps["nginx"])
    }
    if ("tollhouse-10-policy" in n) {
        printf r, "tollhouse-10-policy / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-policy"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-policy"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-policy / nginx", sprintf("%.3f", cpu["tollhouse-10-policy"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-policy"] / rps["nginx"])
    }
    if ("tollhouse-10-map" in n) {
        printf r, "tollhouse-10-map / tollhouse-10", sprintf("%.3f", cpu["tollhouse-10-map"] / cpu["tollhouse-10"]), sprintf("%.3f", rps["tollhouse-10-map"] / rps["tollhouse-10"])
        printf r, "tollhouse-10-map / nginx", sprintf("%.3f", cpu["tollhouse-10-map"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-map"] / rps["nginx"])
    }
    if ("tollhouse-10-redis" in n) {
        printf r, "tollhouse-10-redis / tollhouse-10-key", sprintf("%.3f", cpu["tollhouse-10-redis"] / cpu["tollhouse-10-key"]), sprintf("%.3f", rps["tollhouse-10-redis"] / rps["tollhouse-10-key"])
        printf r, "tollhouse-10-redis / nginx", sprintf("%.3f", cpu["tollhouse-10-redis"] / cpu["nginx"]), sprintf("%.3f", rps["tollhouse-10-redis"] / rps["nginx"])
    }
}' "$RAW"
if [[ $LOG_CASE == 1 ]]; then
    echo
    echo "access log (tollhouse-10-log): $LOG_LINES lines for $LOG_SENT requests sent (check, warm-up and $ROUNDS runs; difference $LOG_DIFF, allowed ±$LOG_SLACK), ${LOG_DROPPED:-?} dropped by the dataplane: $LOG_VERDICT"
fi
if [[ $REDIS_CASE == 1 ]]; then
    REDIS_METRICS=$(curl -fsS --max-time 5 "http://127.0.0.1:$TH10REDIS_ADMIN/metrics" || true)
    FALLBACKS=$(awk '$1 == "tollhouse_redis_fallback_requests_total" {print $2}' <<<"$REDIS_METRICS")
    SCRIPT_N=$(awk '$1 == "tollhouse_redis_script_duration_seconds_count" {print $2}' <<<"$REDIS_METRICS")
    SCRIPT_SUM=$(awk '$1 == "tollhouse_redis_script_duration_seconds_sum" {print $2}' <<<"$REDIS_METRICS")
    echo
    # The histogram's buckets (100 us, 250 us, 500 us, 1 ms, ...): the share within 1 ms and the
    # bucket that holds the 99th percentile.
    SCRIPT_P99=$(awk '$1 ~ /^tollhouse_redis_script_duration_seconds_bucket/ {
            match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5); les[++k] = le; cum[k] = $2
        } END {
            total = cum[k]; if (total == 0) { print "?"; exit }
            for (i = 1; i <= k; i++) if (les[i] == "0.001") within = cum[i] / total
            for (i = 1; i <= k; i++) if (cum[i] >= 0.99 * total) { p99 = les[i]; break }
            printf "%.1f %% within 1 ms, p99 <= %s s", within * 100, p99
        }' <<<"$REDIS_METRICS")
    echo "redis (tollhouse-10-redis): script round trips by the histogram: ${SCRIPT_P99:-?}"
    echo "redis (tollhouse-10-redis): ${SCRIPT_N:-?} script round trips, mean $(awk -v s="${SCRIPT_SUM:-0}" -v n="${SCRIPT_N:-0}" 'BEGIN {if (n > 0) printf "%.0f", s / n * 1e6; else print "?"}') us; ${FALLBACKS:-?} requests fell back to the dataplane's own limits"
fi
echo
echo "per-run rows:"
column -t -s $'\t' "$RAW" 2>/dev/null || cat "$RAW"
[[ -z ${ERRORED// /} ]] || die "cases with non-2xx answers or socket errors: $ERRORED(see the errors column); their numbers do not measure proxying"
if [[ $LOG_CASE == 1 && $LOG_VERDICT != ok ]]; then
    die "the access log has $LOG_LINES lines, but $LOG_SENT requests were sent to tollhouse-10-log \
(${LOG_DROPPED:-?} counted as dropped): the dataplane did not log one line per request, so the \
tollhouse-10-log row does not measure what it says"
fi
