#!/usr/bin/env bash
# Build Bindery's image from the Dockerfile, smoke-test it, and push it: the image the Helm chart runs.
#
# Usage:  scripts/image.sh REGISTRY [TAG]        (or: make image REGISTRY=... [TAG=...])
#   REGISTRY  the repository to push to, with its registry host: registry.example.org/bindery,
#             127.0.0.1:5000/bindery, docker.io/<user>/bindery
#   TAG       default: the commit (git rev-parse --short=12 HEAD), with -dirty when tracked files changed
# Environment:
#   ENGINE    podman or docker (default: podman if installed, else docker); the engine's CLI is used
#   BASE      the base image (default docker.io/library/python:3.11-slim-bookworm); a local image,
#             e.g. localhost/bindery-base:bookworm (scripts/base-image.sh), builds offline
#   PUSH      no: build and smoke-test only
#
# The smoke test: the image's web (gunicorn, as the image starts it) answers /versions on a free
# loopback port, as a user other than root. Redis is not needed for that (REDIS_URL points at a
# closed port). The container is removed by its id. The Dockerfile itself runs `pip check` and an
# import of every entry module while building.
# The last line of output is the helm arguments that select the pushed image.
set -euo pipefail

log() { printf 'image.sh: %s\n' "$*" >&2; }
die() { printf 'image.sh: ERROR: %s\n' "$1" >&2; exit "${2:-1}"; }

usage="usage: scripts/image.sh REGISTRY [TAG]   e.g. make image REGISTRY=registry.example.org/bindery TAG=v1"
[ $# -ge 1 ] && [ $# -le 2 ] || die "$usage" 2
REGISTRY="$1"
TAG="${2:-}"
[ -n "$REGISTRY" ] || die "REGISTRY is empty: $usage" 2

# A registry host (with a dot, a port, or localhost) and a lower-case path: Bindery's image is
# published nowhere, so it always goes to a registry named here, never to a guessed Docker Hub name.
if ! [[ "$REGISTRY" =~ ^([a-z0-9.-]+(:[0-9]+)?|\[[0-9a-f:]+\](:[0-9]+)?)(/[a-z0-9]+([._-][a-z0-9]+)*)+$ ]]; then
    die "REGISTRY=$REGISTRY is not a repository with its registry host (lower case, no tag), e.g. registry.example.org/bindery or 127.0.0.1:5000/bindery" 2
fi
host="${REGISTRY%%/*}"
if ! [[ "$host" == *.* || "$host" == *:* || "$host" == localhost ]]; then
    die "REGISTRY=$REGISTRY names no registry host ($host has no dot or port): write it out, e.g. docker.io/$REGISTRY" 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "$TAG" ]; then
    TAG="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null)" || die "no TAG given and $ROOT is not a git checkout" 2
    [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] || TAG="$TAG-dirty"
fi
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "TAG=$TAG is not a valid image tag (letters, digits, _ . -; at most 128)" 2

ENGINE="${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}"
case "$ENGINE" in podman|docker) ;; *) die "ENGINE=$ENGINE: expected podman or docker" 2 ;; esac
command -v "$ENGINE" >/dev/null 2>&1 || die "$ENGINE is not installed (set ENGINE=podman or ENGINE=docker)"
command -v curl >/dev/null 2>&1 || die "curl is needed for the smoke test"
BASE="${BASE:-docker.io/library/python:3.11-slim-bookworm}"
IMAGE="$REGISTRY:$TAG"

# --- build ----------------------------------------------------------------------------------------
# Host networking for the build's own `pip install` (our Dockerfile, not a user's repository).
log "building $IMAGE from $ROOT/Dockerfile with $ENGINE (BASE=$BASE)"
"$ENGINE" build --network host --build-arg "BASE=$BASE" -t "$IMAGE" "$ROOT" >&2 \
    || die "the build failed (its output is above)"

# --- smoke test -----------------------------------------------------------------------------------
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cid=""
cleanup() { if [ -n "$cid" ]; then "$ENGINE" rm -f "$cid" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT
cid="$("$ENGINE" run -d --network host -e "PORT=$port" -e BINDERY_LISTEN_ADDRESS=127.0.0.1 \
    -e BINDERY_LAUNCHER=bench -e REDIS_URL=redis://127.0.0.1:1/0 "$IMAGE")" || die "$IMAGE did not start"
log "smoke test: container ${cid:0:12}, /versions on 127.0.0.1:$port"
answer=""
for _ in $(seq 1 120); do
    answer="$(curl -fsS --max-time 2 --noproxy '*' "http://127.0.0.1:$port/versions" 2>/dev/null)" && break
    answer=""
    state="$("$ENGINE" inspect -f '{{.State.Status}}' "$cid" 2>/dev/null || echo gone)"
    case "$state" in exited|dead|gone) break ;; esac
    sleep 0.5
done
if [[ "$answer" != *'"bindery"'* ]]; then
    "$ENGINE" logs --tail 30 "$cid" >&2 2>&1 || true
    die "smoke test failed: $IMAGE did not answer /versions within 60 s (its last lines are above)"
fi
uid="$("$ENGINE" exec "$cid" id -u)" || die "smoke test failed: cannot run id in the container"
[ "$uid" != 0 ] || die "smoke test failed: the image runs as root"
log "smoke test passed: /versions answered $answer as uid $uid"
"$ENGINE" rm -f "$cid" >/dev/null
cid=""

# --- push -----------------------------------------------------------------------------------------
if [ "${PUSH:-yes}" = no ]; then
    log "PUSH=no: $IMAGE is built and checked, not pushed"
else
    flags=()
    # Docker treats registries on 127.0.0.0/8 as plain HTTP by default; Podman is told the same.
    if [ "$ENGINE" = podman ] && [[ "$host" == 127.* || "$host" == localhost* || "$host" == "[::1]"* ]]; then
        flags+=(--tls-verify=false)
    fi
    log "pushing $IMAGE"
    "$ENGINE" push "${flags[@]}" "$IMAGE" >&2 \
        || die "the push of $IMAGE failed (log in first with '$ENGINE login $host' when the registry asks for credentials)"
    log "pushed $IMAGE"
fi
echo "--set image.repository=$REGISTRY --set image.tag=$TAG"
