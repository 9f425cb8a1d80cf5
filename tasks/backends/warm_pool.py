"""Warm pool of the docker launcher: servers started before anyone asks, handed over at once.

A cached launch spends almost all its time starting the container and waiting for Jupyter
to answer (about 1.3 s).  For the images operators name in ``warm_pool`` (and, optionally,
the specs launched most lately, ``warm_pool_top``), the beat task (tasks/beat/warm_pool.py)
keeps that many servers started; a launch of such an image takes one and is ready in
milliseconds.

How a server is handed over:

- Each pooled server is one JSON member of a per-image Redis set (``POOL_IDLE``): container,
  port, token, start time.  A launch takes one with ``SPOP``, which gives a member to exactly
  one caller: two launches never get the same server.
- The token is made here when the server starts and lives only in that member: nobody has
  seen it before the one launch that pops it (the pool never logs or publishes it), so
  handing it over once is as good as a fresh token.
- The server keeps its labels (its launch label is ``pool-<id>``); the claim is recorded
  in Redis (``POOL_CLAIMED`` launch → container, ``POOL_OWNER`` container → claim time) so
  stopping the launch removes it and its ``launch_max_age`` counts from the claim.
- Refills start only when no launch waits in the line of server starts (tasks/lock.py,
  ``StartLine``), and a pool hit never joins that line.
- Pooled servers never take a real launch's place: refills leave one server of
  ``quota_total`` free, a launch that finds the quota full removes a pooled server first
  (:func:`evict_one`), and idle pooled servers do not count against a repository's quota.
- A spec's pool follows the image of its latest launch: when a new commit makes a new
  image, the old image is no longer wanted and the beat task retires its idle servers.
- Idle servers would stop themselves after ``launch_idle_timeout``; the beat task's
  check (an authenticated ``GET /api``) is activity to Jupyter, so it keeps them alive,
  and replaces the ones older than ``warm_pool_max_age``.
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import threading
import time
from typing import Any

import docker
import requests
from flask import current_app

from app import keys
from app.launch_events import PROVIDER_NAMES, REDIS_STREAM
from app.metrics import metrics
from tasks.backends import user_network
from tasks.backends.default_url import default_url_event, find_default_url
from tasks.lock import StartLine, start_concurrency

log = logging.getLogger(__name__)

POOL_LABEL = "org.bindery.pool"  # value: the image's digest; only pooled containers carry it
_PROVIDER_PREFIX = {name: prefix for prefix, name in PROVIDER_NAMES.items()}


def enabled(config: dict[str, Any]) -> bool:
    return config.get("launcher", "docker") == "docker" and bool(config["warm_pool"] or config["warm_pool_top"])


def is_spec(config: dict[str, Any], name: str) -> bool:
    """``gh/org/repo/main`` names a spec (its first part is a provider); anything else an image."""
    return name.split("/", 1)[0] in PROVIDER_NAMES and "/" in name


def spec_key(launch: dict[str, Any]) -> str:
    return f"{launch['provider']}/{launch['spec']}"


# --- which images are pooled ---------------------------------------------------------------------

def top_specs(config: dict[str, Any], redis: Any, now: float | None = None) -> list[str]:
    """The ``warm_pool_top`` specs with most successful launches in the last hours (launch events)."""
    if not config["warm_pool_top"]:
        return []
    since = int(((now or time.time()) - config["warm_pool_top_hours"] * 3600) * 1000)
    counts: dict[str, int] = {}
    for _id, fields in redis.xrange(REDIS_STREAM, min=f"{since}-0", max="+"):
        try:
            event = json.loads(fields["event"])
        except (KeyError, ValueError):
            continue
        if event.get("status") != "success" or event.get("provider") not in _PROVIDER_PREFIX \
                or event.get("trigger", "click") != "click":  # (a push's build is nobody's launch)
            continue
        name = f"{_PROVIDER_PREFIX[event['provider']]}/{event.get('spec', '')}"
        counts[name] = counts.get(name, 0) + 1
    return [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][:config["warm_pool_top"]]


def wanted(config: dict[str, Any], redis: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """image → (pool size, what its servers are labelled with), for every pooled image now."""
    sizes: dict[str, int] = {name: config["warm_pool_top_size"] for name in top_specs(config, redis)}
    sizes.update(config["warm_pool"])
    known = redis.hgetall(keys.POOL_TARGETS())
    result: dict[str, tuple[int, dict[str, Any]]] = {}
    for name, size in sizes.items():
        if not size:
            continue
        if is_spec(config, name):
            if name not in known:
                continue  # not launched yet: its image is not known
            target = json.loads(known[name])
        else:
            target = {"image": name, "repo_url": name, "resolved_ref": name.rsplit(":", 1)[-1]}
        image = target["image"]
        previous = result.get(image, (0, target))[0]
        result[image] = (max(previous, size), target)
    return result


def note_launch(config: dict[str, Any], redis: Any, launch: dict[str, Any], name: str | None = None) -> bool:
    """A launch of a pooled spec (or ``name``) makes its image the spec's pool (a new image retires the old one)."""
    name = name or spec_key(launch)
    if not (name in config["warm_pool"] or config["warm_pool_top"]):
        return False
    redis.hset(keys.POOL_TARGETS(), name, json.dumps({
        "image": launch["image"], "repo_url": launch["repo_url"], "resolved_ref": launch["resolved_ref"],
        "at": time.time()}))
    return True


def note_build(config: dict[str, Any], redis: Any, launch: dict[str, Any]) -> bool:
    """A push built (or found) a commit's image: the links it names (``pool_specs``) now run that image.

    Their pools move to it and a refill is queued at once, so the first click after the push
    is a pool hit instead of waiting for a click to name the new image (the beat task retires
    the old image's idle servers).  True when a refill was queued.
    """
    if not enabled(config):
        return False
    noted = [name for name in launch.get("pool_specs") or () if note_launch(config, redis, launch, name)]
    if noted and launch["image"] in wanted(config, redis):
        _refill_soon(launch["image"])
        return True
    return False


# --- the pool's servers ----------------------------------------------------------------------------

def _idle_key(image: str) -> str:
    return keys.POOL_IDLE(keys.digest(image))


def idle(redis: Any, image: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis.smembers(_idle_key(image))]


def idle_count(redis: Any, repo_label: str | None = None) -> int:
    """Idle pooled servers (of one repository label): they do not count against its quota."""
    total = 0
    for image in redis.smembers(keys.POOL_IMAGES()):
        if repo_label is None:
            total += redis.scard(_idle_key(image))
        else:
            total += sum(1 for entry in idle(redis, image) if entry.get("repo") == repo_label)
    return total


def start_server(launcher: Any, target: dict[str, Any]) -> dict[str, Any]:
    """Start one server of the target's image, wait until it answers, and put it in the pool."""
    config, redis = launcher.config, launcher.redis
    image = target["image"]
    pool_id = f"pool-{secrets.token_hex(8)}"
    port = launcher._claim_port(pool_id)
    redis.expire(keys.PORT(port), config["warm_pool_max_age"] + config["launch_max_age"] + 120)
    token = secrets.token_hex(24)
    labels = launcher.pool_labels(pool_id, target["repo_url"], target["resolved_ref"], port)
    repo = labels["org.bindery.repo"]
    container = None
    try:
        container = user_network.run_server(
            launcher.client, config, port, image, launcher._command(port, pool_id),
            environment=launcher._environment(token), name=f"bindery-{pool_id}",
            labels={**labels, POOL_LABEL: keys.digest(image)})
        inside = f"http://{config['launch_host']}:{port}{launcher.base_url(pool_id)}"
        session = requests.Session()
        launcher._wait_ready(container, session, inside, token, lambda event: None)
        found = find_default_url(session, inside, token, config["default_url"], image=image)
    except BaseException:
        if container is not None:
            _remove(launcher, container.id)
        redis.delete(keys.PORT(port))
        raise
    entry = {"container": container.id, "port": port, "token": token, "created": time.time(),
             "image": image, "repo": repo, "default_url": found, "id": pool_id, "base": launcher.base_url(pool_id)}
    redis.sadd(keys.POOL_IMAGES(), image)
    redis.sadd(_idle_key(image), json.dumps(entry, sort_keys=True))
    return entry


def _remove(launcher: Any, container_id: str) -> None:
    try:
        launcher.client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass


def retire(launcher: Any, raw: str, image: str) -> bool:
    """Remove an idle server, unless a launch took it meanwhile (SREM decides, atomically)."""
    if not launcher.redis.srem(_idle_key(image), raw):
        return False
    _discard(launcher, json.loads(raw))
    return True


def _discard(launcher: Any, entry: dict[str, Any]) -> None:
    _remove(launcher, entry["container"])
    launcher.redis.delete(keys.PORT(entry["port"]))


def evict_one(launcher: Any) -> bool:
    """Quota pressure: remove one idle pooled server so a real launch can start (False: none)."""
    for image in launcher.redis.smembers(keys.POOL_IMAGES()):
        raw = launcher.redis.spop(_idle_key(image))
        if raw:
            _discard(launcher, json.loads(raw))
            log.info("warm pool: removed an idle server of %s for a launch (quota full)", image)
            return True
    return False


def _answers(entry: dict[str, Any], host: str, timeout: float = 2) -> bool:
    try:
        url = f"http://{host}:{entry['port']}{entry.get('base', '/')}api"
        return requests.get(url, params={"token": entry["token"]}, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


# --- a launch takes one -----------------------------------------------------------------------

def claim(launcher: Any, launch: dict[str, Any], emit: Any) -> tuple[str, str] | None:
    """(url, token) of a pooled server of the launch's image, now the launch's own; None on a miss.

    Sets ``launch["pool"]`` to ``hit`` or ``miss`` (the launch event records it) when the
    image is pooled; launches of other images are left alone.
    """
    config, redis = launcher.config, launcher.redis
    note_launch(config, redis, launch)
    image = launch["image"]
    pooled = image in config["warm_pool"] or spec_key(launch) in config["warm_pool"]
    if not pooled and not redis.sismember(keys.POOL_IMAGES(), image):
        return None
    while True:
        raw = redis.spop(_idle_key(image))
        if raw is None:
            launch["pool"] = "miss"
            metrics().pool_launches.labels(result="miss").inc()
            # refills wait until this launch's own server answers (started_after_miss)
            redis.zadd(keys.POOL_STARTING(), {launch["id"]: time.time() + config["launch_timeout"]})
            _refill_soon(image)
            return None
        entry = json.loads(raw)
        if time.time() - entry["created"] < config["warm_pool_max_age"] and _answers(entry, config["launch_host"]):
            break
        _discard(launcher, entry)  # stale or gone: the next one
    ttl = config["launch_max_age"] + 120
    pipe = redis.pipeline()
    pipe.set(keys.POOL_CLAIMED(launch["id"]), entry["container"], ex=ttl)
    pipe.set(keys.POOL_OWNER(entry["container"]), str(time.time()), ex=ttl)
    pipe.set(keys.PORT(entry["port"]), launch["id"], ex=ttl)
    pipe.execute()
    launch["pool"] = "hit"
    metrics().pool_launches.labels(result="hit").inc()
    emit({"phase": "launching", "message": "Server taken from the warm pool (already started).\n", "pool": "hit"})
    event = default_url_event(config["default_url"], entry.get("default_url"))
    if event:
        emit(event)
    _refill_soon(image)
    return launcher.route(entry.get("id"), entry["port"]), entry["token"]  # its route comes with the claim


def _refill_soon(image: str) -> None:
    """Queue a refill of the image's pool (a worker not running Celery, e.g. a test, skips it)."""
    try:
        from celery import current_app as celery_app

        if celery_app.conf.broker_url:
            celery_app.send_task("bindery.warm_pool_fill", args=[image])
    except Exception as exc:  # noqa: BLE001 - the beat task refills anyway
        log.info("warm pool: refill of %s not queued (%s)", image, type(exc).__name__)


def started_after_miss(launcher: Any, launch: dict[str, Any]) -> None:
    """A launch that missed the pool has its server (or gave up): refills may go on."""
    if launch.get("pool") == "miss":
        launcher.redis.zrem(keys.POOL_STARTING(), launch["id"])


def _launches_starting(redis: Any) -> bool:
    return bool(redis.zcount(keys.POOL_STARTING(), time.time(), "+inf"))


def stop_claimed(launcher: Any, launch_id: str) -> int:
    """Remove the pooled server a launch took (its labels name the pool, not the launch)."""
    container_id = launcher.redis.get(keys.POOL_CLAIMED(launch_id))
    if not container_id:
        return 0
    removed = 0
    for found in launcher.client.api.containers(all=True, filters={"id": container_id}):
        _remove(launcher, found["Id"])
        launcher.unroute(found.get("Labels") or {})
        port = (found.get("Labels") or {}).get("org.bindery.port")
        if port:
            launcher.redis.delete(keys.PORT(port))
        removed += 1
    launcher.redis.delete(keys.POOL_CLAIMED(launch_id), keys.POOL_OWNER(container_id))
    return removed


def age_start(redis: Any, container_id: str, labels: dict[str, str]) -> float:
    """When a server's ``launch_max_age`` starts: its claim for pooled servers (idle ones: never)."""
    if POOL_LABEL not in labels:
        return float(labels.get("org.bindery.created", "0"))
    claimed = redis.get(keys.POOL_OWNER(container_id))
    return float(claimed) if claimed else time.time()  # idle: the pool's beat task retires it


# --- refill, retire, keep alive ----------------------------------------------------------------

def fill(launcher: Any, image: str, target: dict[str, Any], size: int, room: int) -> int:
    """Start servers until the image has ``size`` idle ones (at most ``room`` new); returns how many."""
    config, redis = launcher.config, launcher.redis
    redis.zremrangebyscore(keys.POOL_STARTING(), "-inf", time.time())
    if _launches_starting(redis) or StartLine(redis, "start").waiting():
        return 0  # real launches first (two servers starting at once slow both): the beat comes back
    lock = keys.POOL_FILLING(keys.digest(image))
    if not redis.set(lock, "1", nx=True, ex=config["launch_timeout"] + 30):
        return 0  # another worker fills it
    try:
        need = min(size - redis.scard(_idle_key(image)), room)
        if config["quota_total"]:
            need = min(need, config["quota_total"] - 1 - launcher.running())
        if need <= 0:
            return 0
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        results: list[bool] = []

        def start() -> None:
            with app.app_context():  # (the launcher reads Redis through the app)
                try:
                    start_server(launcher, target)
                    results.append(True)
                except Exception as exc:  # noqa: BLE001 - one failed start must not stop the others
                    log.warning("warm pool: a server of %s did not start: %s", image, exc)

        # Plain threads: greenlets in the gevent launch worker (a ThreadPoolExecutor's C queue
        # would block its hub, and every launch with it, while servers start).  As many at a
        # time as launches start (launch_start_concurrency), and none once a launch waits.
        width = start_concurrency(config)
        for first in range(0, need, width):
            if first and StartLine(redis, "start").waiting():
                break
            threads = [threading.Thread(target=start, daemon=True) for _ in range(min(width, need - first))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return len(results)
    finally:
        redis.delete(lock)


def capacity(config: dict[str, Any]) -> int:
    """How many idle pooled servers may exist at once (servers and memory caps)."""
    cap = config["warm_pool_max_servers"]
    if config["warm_pool_max_memory_mb"]:
        cap = min(cap, config["warm_pool_max_memory_mb"] // config["warm_pool_server_memory_mb"])
    return cap


def maintain(launcher: Any) -> dict[str, int]:
    """The beat task's round: retire unwanted and old servers, keep the rest alive, refill."""
    config, redis = launcher.config, launcher.redis
    targets = wanted(config, redis)
    retired = started = 0
    for image in redis.smembers(keys.POOL_IMAGES()):
        for raw in redis.smembers(_idle_key(image)):
            entry = json.loads(raw)
            too_old = time.time() - entry["created"] >= config["warm_pool_max_age"]
            if image not in targets or too_old or not _answers(entry, config["launch_host"]):
                retired += retire(launcher, raw, image)
        if image not in targets and not redis.scard(_idle_key(image)):
            redis.srem(keys.POOL_IMAGES(), image)
    room = capacity(config) - idle_count(redis)
    for image, (size, target) in sorted(targets.items()):
        if room <= 0:
            break
        added = fill(launcher, image, target, size, room)
        started += added
        room -= added
    _prune_targets(config, redis)
    return {"retired": retired, "started": started}


def _prune_targets(config: dict[str, Any], redis: Any) -> None:
    """Forget specs that are neither configured nor launched within warm_pool_top_hours."""
    horizon = time.time() - config["warm_pool_top_hours"] * 3600
    for name, raw in redis.hgetall(keys.POOL_TARGETS()).items():
        if name not in config["warm_pool"] and json.loads(raw).get("at", 0) < horizon:
            redis.hdel(keys.POOL_TARGETS(), name)


def retire_all(launcher: Any) -> int:
    """Remove every idle pooled server (the pool switched off, or a test's end)."""
    removed = 0
    for image in launcher.redis.smembers(keys.POOL_IMAGES()):
        for raw in launcher.redis.smembers(_idle_key(image)):
            removed += retire(launcher, raw, image)
    return removed


def summary(config: dict[str, Any], redis: Any) -> dict[str, Any]:
    """What /health shows: idle servers per image and the pool's caps."""
    images = {image: redis.scard(_idle_key(image)) for image in redis.smembers(keys.POOL_IMAGES())}
    return {"pooled": sum(images.values()), "images": images, "capacity": capacity(config),
            "checked": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
