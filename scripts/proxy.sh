#!/usr/bin/env bash
# configurable-http-proxy (npm), the proxy `make run` serves its one public address with
# (app/runner.py, docs/operating.md "One public address"). Installed when missing, as root on
# Debian (nodejs, npm, then `npm install -g`); elsewhere it says what to install. Nothing to do
# with BINDERY_PROXY=false.
set -euo pipefail
case "${BINDERY_PROXY:-true}" in false|False|0|no) exit 0 ;; esac
command -v configurable-http-proxy >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    # (a warning: proxy may be off in the YAML file; the runner stops with a message if it is on)
    echo "bindery: configurable-http-proxy is missing: install it (npm install -g configurable-http-proxy)," \
         "or set proxy: false to serve without the proxy" >&2
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "bindery: installing nodejs npm" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
echo "bindery: npm install -g configurable-http-proxy" >&2
npm install -g --silent configurable-http-proxy >/dev/null
