#!/usr/bin/env bash
# What `make test` needs besides Python packages: Debian packages, the container engine and
# the local base images (made from Debian packages; nothing can be pulled here).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in podman:podman runc:runc docker-registry:docker-registry debootstrap:debootstrap git:git curl:curl chromium:chromium sshd:openssh-server redis-server:redis-server; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "test-setup: please install: ${need[*]} (Debian package names)" >&2
        exit 1
    fi
    echo "test-setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# configurable-http-proxy (npm) for the real JupyterHub of the jupyterhub launcher tests and for
# `make run`'s one public address (tests/system/test_proxy.py): installed as `make run` does.
BINDERY_PROXY=true scripts/proxy.sh
command -v configurable-http-proxy >/dev/null 2>&1 || { echo "test-setup: configurable-http-proxy is missing" >&2; exit 1; }
# thebe and BinderHub's JS client (npm) for the cross-origin browser tests
# (tests/system/test_cross_origin.py), in a test-owned directory; quick when present.
# thebe's package carries its browser bundle (lib/index.js and its chunks): `npm pack` fetches
# just that, where `npm install` would add JupyterLab's whole dependency tree the page never loads.
npm_dir=var/test-npm
npm_stamp="$npm_dir/.thebe-0.9.3-binderhub-client-0.5.0"
if [ ! -f "$npm_stamp" ]; then
    echo "test-setup: npm: thebe@0.9.3, @jupyterhub/binderhub-client@0.5.0 -> $npm_dir" >&2
    rm -rf "$npm_dir" && mkdir -p "$npm_dir"
    npm install --prefix "$npm_dir" --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
        --loglevel=error @jupyterhub/binderhub-client@0.5.0 >/dev/null
    (cd "$npm_dir" && npm pack --silent thebe@0.9.3 >/dev/null && tar xzf thebe-0.9.3.tgz \
        && mv package thebe && rm thebe-0.9.3.tgz)
    touch "$npm_stamp"
fi
engine=$(scripts/engine.sh)
export "$engine"
scripts/base-image.sh
scripts/repo2docker-image.sh
