#!/usr/bin/env bash
# Make the local images the tests build on (nothing can be pulled from a registry):
#   localhost/bindery-base:bookworm     debootstrap'd Debian bookworm (minbase) with
#                                       python3, venv, pip, git, ca-certificates
#   localhost/bindery-jupyter:bookworm  FROM the base: user jovyan (1000), a venv at
#                                       /opt/venv (on PATH) with jupyter-server and
#                                       jupyterhub; tests/images/jupyter/Dockerfile
#   localhost/bindery-jupyterlab:bookworm FROM the jupyter image, with JupyterLab and
#                                       Notebook 7 (PyPI, pinned); tests/images/jupyterlab/
# Each image is made only when missing. The debootstrap tree is cached under
# /var/cache/bindery/ so a rerun after `podman rmi` is fast.
# Needs root on Debian (debootstrap, podman; installed here when missing).
set -euo pipefail

BASE_IMAGE=localhost/bindery-base:bookworm
JUPYTER_IMAGE=localhost/bindery-jupyter:bookworm
SUITE=bookworm
CACHE_DIR=/var/cache/bindery
TREE="$CACHE_DIR/rootfs-$SUITE"
INCLUDE=python3,python3-venv,python3-pip,git,ca-certificates
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JUPYTER_CONTEXT="$HERE/../tests/images/jupyter"
LAB_IMAGE=localhost/bindery-jupyterlab:bookworm
LAB_CONTEXT="$HERE/../tests/images/jupyterlab"

log() { printf 'base-image.sh: %s\n' "$*" >&2; }
die() { printf 'base-image.sh: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and podman's root storage); try: sudo $0"

# --- tools -----------------------------------------------------------------
need=()
command -v podman >/dev/null 2>&1 || need+=(podman runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "install ${need[*]} first"
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >&2 || {
        apt-get update -q >&2 && apt-get install -y -q "${need[@]}" >&2
    } || die "apt-get install ${need[*]} failed"
fi
# containers.conf (runc, ulimits) must be in place before podman runs anything
if [ ! -f /etc/containers/containers.conf ] || ! grep -q 'runtime *= *"runc"' /etc/containers/containers.conf; then
    "$HERE/engine.sh" >/dev/null
fi

# --- the Debian mirror this host's apt uses ------------------------------------
debian_mirror() {
    local m=""
    # deb822 sources: the URIs of a stanza whose Suites include the plain suite name
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        m=$(awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri=""; ok=0; next }
            /^URIs:/   { uri=$2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok=1 }
            END { if (uri != "" && ok) print uri }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# --- base image ------------------------------------------------------------
make_base() {
    mkdir -p "$CACHE_DIR"
    if [ ! -f "$TREE/.bindery-complete" ]; then
        local mirror tmp
        mirror=$(debian_mirror)
        tmp="$TREE.partial"
        rm -rf "$tmp"
        log "debootstrap $SUITE from $mirror into $tmp (takes a minute or two)"
        if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$mirror" \
                >"$CACHE_DIR/debootstrap.log" 2>&1; then
            tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
            die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
        fi
        # slim the tree: downloaded packages and package lists are not needed
        rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages \
               "$tmp"/var/cache/apt/*.bin
        rm -rf "$TREE"
        mv "$tmp" "$TREE"
        touch "$TREE/.bindery-complete"
    fi
    # the host's CA bundle (it may include an intercepting proxy's CA that pip needs),
    # and the extra CAs so update-ca-certificates in a build keeps them
    cp /etc/ssl/certs/ca-certificates.crt "$TREE/etc/ssl/certs/ca-certificates.crt"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        mkdir -p "$TREE/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$TREE/usr/local/share/ca-certificates/"
    fi
    # The host's pip config (here: cert = /etc/ssl/certs/ca-certificates.crt). Tested:
    # pip >= 24.2 verifies through the system store (truststore) and reaches the index
    # without it, but an older pip (e.g. pip==23.3 pinned by a repository) uses its own
    # certifi bundle and fails with CERTIFICATE_VERIFY_FAILED unless pip.conf names the
    # system bundle.
    if [ -f /etc/pip.conf ]; then
        cp /etc/pip.conf "$TREE/etc/pip.conf"
    else
        rm -f "$TREE/etc/pip.conf"
    fi
    log "importing $BASE_IMAGE"
    tar -C "$TREE" --exclude=./.bindery-complete -c . \
        | podman import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["/bin/bash"]' \
            - "$BASE_IMAGE" >"$CACHE_DIR/import.log" 2>&1 \
        || { cat "$CACHE_DIR/import.log" >&2; die "podman import failed"; }
}

if ! podman image exists "$BASE_IMAGE"; then
    make_base
fi

# build_image IMAGE CONTEXT BASE WHAT: `podman build` of a test image when it is missing.
build_image() {
    local image=$1 context=$2 base=$3 what=$4 buildlog
    podman image exists "$image" && return 0
    [ -f "$context/Dockerfile" ] || die "missing $context/Dockerfile"
    log "building $image ($what)"
    buildlog="$CACHE_DIR/$(basename "$context")-build.log"
    mkdir -p "$CACHE_DIR"
    if ! podman build --network host --pull=never --build-arg "BASE=$base" \
            -t "$image" "$context" >"$buildlog" 2>&1; then
        tail -n 30 "$buildlog" >&2
        die "podman build of $image failed (full log: $buildlog)"
    fi
}

build_image "$JUPYTER_IMAGE" "$JUPYTER_CONTEXT" "$BASE_IMAGE" "pip install jupyter-server jupyterhub"
build_image "$LAB_IMAGE" "$LAB_CONTEXT" "$JUPYTER_IMAGE" "pip install jupyterlab notebook"
