#!/usr/bin/env bash
# Make sure a Docker-API container engine answers, then print exactly one line
#   DOCKER_HOST=unix:///...
# on stdout. Everything else goes to stderr.
#
# Order:
#   1. $DOCKER_HOST, if set and it answers /_ping
#   2. /var/run/docker.sock, if it answers
#   3. as root on Debian: install and configure Podman, then run
#      `podman system service` on unix:///run/bindery/podman.sock
#
# Idempotent: when everything is in place it only pings the socket.
#
# Usage:  export "$(scripts/engine.sh)"
#         scripts/engine.sh --started-pid-file FILE
#   With --started-pid-file, FILE receives the pid of the podman service when this call started
#   it (and is left absent otherwise), so the caller (`make run`) can stop exactly that process
#   when it stops, and leave alone a service it found running.
set -euo pipefail

STARTED_PID_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --started-pid-file) [ $# -ge 2 ] || { echo "engine.sh: --started-pid-file needs a path" >&2; exit 2; }
                            STARTED_PID_FILE="$2"; shift 2 ;;
        *) echo "engine.sh: unknown argument: $1 (usage: engine.sh [--started-pid-file FILE])" >&2; exit 2 ;;
    esac
done
[ -z "$STARTED_PID_FILE" ] || rm -f "$STARTED_PID_FILE"

RUN_DIR=/run/bindery
SOCK="$RUN_DIR/podman.sock"
PID_FILE="$RUN_DIR/podman.pid"
LOG_FILE="$RUN_DIR/podman.log"
CONTAINERS_CONF=/etc/containers/containers.conf
REGISTRIES_CONF=/etc/containers/registries.conf.d/bindery-loopback.conf
MARKER="# Written by bindery scripts/engine.sh"
WAIT_SECONDS=${BINDERY_ENGINE_WAIT:-15}

log() { printf 'engine.sh: %s\n' "$*" >&2; }
die() { printf 'engine.sh: ERROR: %s\n' "$*" >&2; exit 1; }

# ping URL -> 0 when the engine answers "OK" on /_ping
ping_host() {
    local host="$1" out
    case "$host" in
        unix://*)
            local path="${host#unix://}"
            [ -S "$path" ] || return 1
            out=$(curl -fsS --max-time 3 --unix-socket "$path" http://d/_ping 2>/dev/null) || return 1
            ;;
        tcp://*|http://*)
            local addr="${host#*://}"
            out=$(curl -fsS --max-time 3 "http://${addr%/}/_ping" 2>/dev/null) || return 1
            ;;
        *) return 1 ;;
    esac
    [ "$out" = "OK" ]
}

emit() { printf 'DOCKER_HOST=%s\n' "$1"; exit 0; }

command -v curl >/dev/null 2>&1 || {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing curl"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >&2; } \
            || die "could not install curl"
    else
        die "curl is required: install it (e.g. apt-get install curl)"
    fi
}

# 1. an explicit DOCKER_HOST
# (our own socket goes through step 3, which also keeps its configuration current)
if [ -n "${DOCKER_HOST:-}" ] && ! { [ "$DOCKER_HOST" = "unix://$SOCK" ] && [ "$(id -u)" = 0 ]; }; then
    if ping_host "$DOCKER_HOST"; then emit "$DOCKER_HOST"; fi
    log "DOCKER_HOST=$DOCKER_HOST does not answer /_ping; looking further"
fi

# 2. a Docker daemon on the default socket
if ping_host unix:///var/run/docker.sock; then emit unix:///var/run/docker.sock; fi

# 3. Podman, set up by us
if [ "$(id -u)" != 0 ] || ! [ -r /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
    cat >&2 <<EOF
engine.sh: ERROR: no Docker-API engine answers, and this script can only set one up as root on Debian.
Install one of:
  - Docker Engine, running on /var/run/docker.sock (or set DOCKER_HOST to it), or
  - Podman with runc (Debian: sudo apt-get install -y podman runc), with
    /etc/containers/containers.conf containing:
        [containers]
        default_ulimits = []
        [engine]
        runtime = "runc"
        cgroup_manager = "cgroupfs"
        events_logger = "file"
    then run: podman system service --time=0 unix:///run/bindery/podman.sock &
    and set DOCKER_HOST=unix:///run/bindery/podman.sock
EOF
    exit 1
fi

# --- packages -------------------------------------------------------------
missing=()
for pkg in podman runc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}" >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
fi

# --- configuration ---------------------------------------------------------
config_changed=0

conf_has_settings() {
    local f="$1"
    [ -f "$f" ] || return 1
    grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=[[:space:]]*\[[[:space:]]*\]' "$f" &&
    grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$f" &&
    grep -Eq '^[[:space:]]*cgroup_manager[[:space:]]*=[[:space:]]*"cgroupfs"' "$f" &&
    grep -Eq '^[[:space:]]*events_logger[[:space:]]*=[[:space:]]*"file"' "$f"
}

# write_file PATH CONTENT: write only when the content differs; sets config_changed
write_file() {
    local path="$1" content="$2"
    # (both sides through $(...), which drops trailing newlines from each alike)
    if [ -f "$path" ] && [ "$(cat "$path")" = "$(printf '%s' "$content")" ]; then
        return 0
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" > "$path.tmp.$$"
    mv -f "$path.tmp.$$" "$path"
    log "wrote $path"
    config_changed=1
}

CONTAINERS_CONTENT="$MARKER
# crun fails here (cgroups in hybrid mode), runc works; without
# default_ulimits = [] container start fails on setrlimit.
[containers]
default_ulimits = []

[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
events_logger = \"file\""

if [ -f "$CONTAINERS_CONF" ] && ! grep -qxF "$MARKER" "$CONTAINERS_CONF"; then
    # Somebody else's file.
    if ! conf_has_settings "$CONTAINERS_CONF"; then
        backup="$CONTAINERS_CONF.bindery-backup.$(date +%Y%m%d%H%M%S)"
        cp -p "$CONTAINERS_CONF" "$backup"
        log "$CONTAINERS_CONF lacks the settings Podman needs here; saved it as $backup and rewrote it"
        write_file "$CONTAINERS_CONF" "$CONTAINERS_CONTENT"
    fi
else
    write_file "$CONTAINERS_CONF" "$CONTAINERS_CONTENT"
fi

# Plain-HTTP registries on loopback: 5000 for development, 5055-5062 for test runs
# (one port per concurrent run, TEST_REGISTRY_PORT).
REGISTRIES_CONTENT="$MARKER
# Plain-HTTP registries on loopback (test and development registries)."
for port in 5000 5055 5056 5057 5058 5059 5060 5061 5062; do
    for host in 127.0.0.1 localhost; do
        REGISTRIES_CONTENT="$REGISTRIES_CONTENT
[[registry]]
location = \"$host:$port\"
insecure = true
"
    done
done
write_file "$REGISTRIES_CONF" "$REGISTRIES_CONTENT"

# --- the service -----------------------------------------------------------
mkdir -p "$RUN_DIR"

our_pid() {
    # prints the recorded pid when that process is still our podman service
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    local cmd
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *"system service"*"$SOCK"* ]] || return 1
    printf '%s\n' "$pid"
}

start_service() {
    rm -f "$SOCK"
    log "starting podman system service on unix://$SOCK (log: $LOG_FILE)"
    setsid nohup podman system service --time=0 "unix://$SOCK" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    echo $! > "$PID_FILE"
    [ -z "$STARTED_PID_FILE" ] || echo $! > "$STARTED_PID_FILE"
}

if ping_host "unix://$SOCK"; then
    if [ "$config_changed" = 1 ]; then
        if pid=$(our_pid); then
            log "configuration changed: restarting podman service (pid $pid)"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
            start_service
        else
            log "WARNING: configuration changed but the service on $SOCK was not started by us" \
                "(no live pid in $PID_FILE); restart it yourself so it reads the new files"
        fi
    fi
else
    if pid=$(our_pid); then
        log "recorded podman service (pid $pid) does not answer; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 0.5
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    start_service
fi

deadline=$(( $(date +%s) + WAIT_SECONDS ))
until ping_host "unix://$SOCK"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
        die "podman service on unix://$SOCK did not answer /_ping within ${WAIT_SECONDS}s"
    fi
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
        log "last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
        die "podman service (pid $pid) exited before answering"
    fi
    sleep 0.2
done

emit "unix://$SOCK"
