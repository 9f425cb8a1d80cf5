#!/usr/bin/env bash
# Build localhost/bindery-repo2docker:2024.7.0 (tests/images/repo2docker) when it is missing:
# the image the build pod test runs through `podman kube play`. Needs the local base image.
set -euo pipefail
IMAGE=localhost/bindery-repo2docker:2024.7.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
podman image exists "$IMAGE" && exit 0
echo "repo2docker-image.sh: building $IMAGE (pip install jupyter-repo2docker==2024.7.0)" >&2
log=/var/cache/bindery/repo2docker-build.log
mkdir -p "$(dirname "$log")"
if ! podman build --network host --pull=never --build-arg BASE=localhost/bindery-base:bookworm \
        -t "$IMAGE" "$HERE/../tests/images/repo2docker" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "repo2docker-image.sh: ERROR: build failed (full log: $log)" >&2
    exit 1
fi
