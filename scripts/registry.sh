#!/usr/bin/env bash
# A Docker Registry v2 (Debian's docker-registry) on loopback, for tests.
#   scripts/registry.sh start PORT DIR   serve http://127.0.0.1:PORT, data in DIR/data,
#                                        pid in DIR/registry.pid, log in DIR/registry.log
#   scripts/registry.sh stop DIR         stop the registry whose pid is in DIR/registry.pid
# Starting an already running registry (same DIR, answering on PORT) does nothing.
# Podman pushes to it only if 127.0.0.1:PORT is marked insecure in
# /etc/containers/registries.conf.d/ (scripts/engine.sh does 5000 and 5055-5062).
set -euo pipefail

log() { printf 'registry.sh: %s\n' "$*" >&2; }
die() { printf 'registry.sh: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { die "usage: $0 start PORT DIR | $0 stop DIR"; }

WAIT_SECONDS=${BINDERY_REGISTRY_WAIT:-15}

# prints the pid in DIR/registry.pid when that process is a live docker-registry
live_pid() {
    local dir="$1" pid cmd
    [ -f "$dir/registry.pid" ] || return 1
    pid=$(cat "$dir/registry.pid" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmd" == *registry*serve* ]] || return 1
    printf '%s\n' "$pid"
}

answers() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/v2/" 2>/dev/null) || return 1
    [ "$code" = 200 ] || [ "$code" = 401 ]
}

ensure_registry_binary() {
    command -v docker-registry >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing docker-registry"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q docker-registry >&2 || {
            apt-get update -q >&2 && apt-get install -y -q docker-registry >&2
        } || die "apt-get install docker-registry failed"
        # the package starts a system-wide registry on :5000; we run our own
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q docker-registry 2>/dev/null; then
            systemctl stop docker-registry >&2 || true
            systemctl disable docker-registry >&2 || true
        fi
    else
        die "docker-registry not found: install it (Debian: apt-get install docker-registry)"
    fi
}

cmd_start() {
    local port="$1" dir="$2" pid
    [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)

    if pid=$(live_pid "$dir"); then
        if answers "$port"; then
            return 0
        fi
        die "a registry (pid $pid) already runs from $dir but does not answer on port $port; stop it first"
    fi
    if answers "$port"; then
        die "something else already answers on http://127.0.0.1:$port/v2/"
    fi
    ensure_registry_binary

    cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: bindery-local-registry-$port
  headers:
    X-Content-Type-Options: [nosniff]
YAML
    setsid nohup docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$dir/registry.pid"

    local deadline=$(( $(date +%s) + WAIT_SECONDS ))
    until answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/registry.log" >&2 || true
            rm -f "$dir/registry.pid"
            die "docker-registry exited (log: $dir/registry.log)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 20 "$dir/registry.log" >&2 || true
            kill "$pid" 2>/dev/null || true
            rm -f "$dir/registry.pid"
            die "registry did not answer on http://127.0.0.1:$port/v2/ within ${WAIT_SECONDS}s"
        fi
        sleep 0.1
    done
}

cmd_stop() {
    local dir="$1" pid
    [ -d "$dir" ] || return 0
    if pid=$(live_pid "$dir"); then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "registry (pid $pid) ignored SIGTERM; killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/registry.pid"
}

case "${1:-}" in
    start) [ $# -eq 3 ] || usage; cmd_start "$2" "$3" ;;
    stop)  [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
    *) usage ;;
esac
