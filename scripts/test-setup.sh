#!/usr/bin/env bash
# What `make test` needs besides Python packages: Debian packages, the container engine and
# the local base images (made from Debian packages; nothing can be pulled here).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in podman:podman runc:runc docker-registry:docker-registry debootstrap:debootstrap git:git curl:curl; do
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
engine=$(scripts/engine.sh)
export "$engine"
scripts/base-image.sh
