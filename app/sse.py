"""Launch events: published to Redis streams, fanned out to browsers by flask-sse.

flask-sse as shipped publishes over pub/sub only, so a late or reconnecting
reader loses events, and it holds one Redis connection per browser.  Here each
channel is also a Redis stream with a TTL (replay from any id), pub/sub carries
only a wake-up, and one listener per process wakes every waiting stream, so an
idle browser costs a greenlet and no Redis connection.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import redis
from flask import Response, current_app
from flask_sse import Message, ServerSentEventsBlueprint

from app import keys
from app.errors import BinderyError, failed_event

log = logging.getLogger(__name__)

TERMINAL_PHASES = frozenset({"ready", "failed"})
KEEPALIVE = ":keepalive\n\n"
# Seconds after which an idle stream re-reads its channel even without a wake-up.
SAFETY_READ_SECONDS = 30.0
_EVENT_ID = re.compile(r"^([0-9a-f]{32})_(\d{1,20}-\d{1,20})$")





#: SET NX the claim; only if it was free: XADD the event, EXPIRE the stream, PUBLISH the wake-up.
_CLAIM_AND_PUBLISH = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
local id = redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[4], '1')
return id
"""


def _claim_and_publish(client: redis.Redis) -> Any:
    """The registered script (EVALSHA, loaded on first use by redis-py), one per client."""
    script = getattr(client, "_bindery_claim_and_publish", None)
    if script is None:
        script = client.register_script(_CLAIM_AND_PUBLISH)
        client._bindery_claim_and_publish = script  # type: ignore[attr-defined]
    return script


def parse_event_id(value: str | None) -> tuple[str, str] | None:
    """``Last-Event-ID`` → (channel, stream entry id), or None when absent or not ours."""
    match = _EVENT_ID.match(value or "")
    return (match.group(1), match.group(2)) if match else None


class _Notifier:
    """One pub/sub listener per process that wakes the streams waiting on a channel."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._waiters: dict[str, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="bindery-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def register(self, channel: str) -> threading.Event | None:
        """A waiter woken by the channel's events; None once this listener has stopped."""
        waiter = threading.Event()
        with self._lock:
            if self._stopped:
                return None
            self._waiters[channel].add(waiter)
        return waiter

    def unregister(self, channel: str, waiter: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(channel)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[channel]

    def _wake(self, channel: str | None) -> None:
        with self._lock:
            targets = [w for ws in self._waiters.values() for w in ws] if channel is None \
                else list(self._waiters.get(channel, ()))
        for waiter in targets:
            waiter.set()

    def _run(self) -> None:
        prefix = len(keys.NOTIFY.glob) - 1
        delay = 1.0
        while True:
            try:
                pubsub = self._client.pubsub()
                pubsub.psubscribe(keys.NOTIFY.glob)
                for message in pubsub.listen():
                    delay = 1.0
                    if message["type"] == "pmessage":
                        self._wake(message["channel"][prefix:])
                    elif message["type"] == "psubscribe":
                        # (re)subscribed, also after redis-py reconnected by itself when Redis
                        # restarted: anything published while we were away is re-read from the streams
                        self._wake(None)
            except redis.RedisError as exc:
                with self._lock:
                    # nobody to wake: stop rather than knock on a Redis that may be gone for good
                    # (the next stream starts a listener again, EventStream._waiter)
                    self._stopped = not self._waiters
                if self._stopped:
                    log.info("event notifier lost Redis (%s) with no stream open; stopped", type(exc).__name__)
                    return
                log.warning("event notifier lost Redis (%s); reconnecting in %g s", type(exc).__name__, delay)
                self._wake(None)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)  # a Redis gone for long is not asked every second


class EventStream(ServerSentEventsBlueprint):
    """flask-sse's blueprint with persistent, replayable channels and keepalives."""

    _notifier_lock = threading.Lock()

    @property
    def redis(self) -> redis.Redis:  # type: ignore[override]
        return current_app.extensions["bindery.redis"]

    def publish(self, data: Any, type: str | None = None, id: str | None = None,  # noqa: A002
                retry: int | None = None, channel: str = "sse", source: str | None = None) -> str:
        """Append an event to the channel's stream and wake its readers; returns the entry id.

        ``source`` (kept beside the event, never sent to clients) is the id of the
        entry this one was relayed from, so a relay that starts again knows where
        it stopped (:meth:`last_source`).
        """
        ttl = current_app.config["BINDERY"]["event_ttl"]
        key = keys.EVENTS(channel)
        fields: dict[Any, Any] = {"data": json.dumps(data)}
        if source is not None:
            fields["source"] = source
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(key, fields)
        pipe.expire(key, ttl)
        pipe.publish(keys.NOTIFY(channel), "1")
        entry_id, _, _ = pipe.execute()
        return str(entry_id)

    def queue_publish(self, pipe: Any, data: Any, channel: str) -> None:
        """Add :meth:`publish`'s commands to the caller's pipeline, to go with its own in one round trip."""
        key = keys.EVENTS(channel)
        pipe.xadd(key, {"data": json.dumps(data)})
        pipe.expire(key, current_app.config["BINDERY"]["event_ttl"])
        pipe.publish(keys.NOTIFY(channel), "1")

    def publish_if_claimed(self, data: Any, channel: str, claim_key: str, claim_value: str,
                           pipe: Any = None) -> Any:
        """Take ``claim_key`` (SET NX, ``event_ttl``) and publish only if it was ours: one round trip.

        Returns True/False, or, given a pipeline, adds the script to it and returns the pipeline
        (its result is then the entry id, or None when the claim was someone else's).
        """
        ttl = current_app.config["BINDERY"]["event_ttl"]
        script = _claim_and_publish(self.redis)
        args = (claim_value, ttl, json.dumps(data), keys.NOTIFY(channel))
        if pipe is not None:
            return script(keys=[claim_key, keys.EVENTS(channel)], args=args, client=pipe)
        return script(keys=[claim_key, keys.EVENTS(channel)], args=args) is not None

    def exists(self, channel: str) -> bool:
        return bool(self.redis.exists(keys.EVENTS(channel)))

    def read(self, channel: str, after: str = "0-0", count: int = 1000,
             block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Events after the given entry id (exclusive), oldest first; optionally wait for one."""
        key = keys.EVENTS(channel)
        entries: Any
        if block_ms is None:
            entries = self.redis.xrange(key, min=f"({after}", count=count)
        else:
            found: Any = self.redis.xread({key: after}, count=count, block=block_ms)
            entries = found[0][1] if found else []
        return [(entry_id, json.loads(fields["data"])) for entry_id, fields in entries]

    def last_source(self, channel: str, look_back: int = 100) -> str | None:
        """The ``source`` of the newest relayed event among the channel's last ``look_back``."""
        entries: Any = self.redis.xrevrange(keys.EVENTS(channel), count=look_back)
        return next((fields["source"] for _, fields in entries if "source" in fields), None)

    def _open(self, channel: str, after: str) -> tuple[bool, list[tuple[str, dict[str, Any]]] | None]:
        """A stream opens: in one round trip, whether a resumed one already saw the end (the
        channel's last event is the terminal one at ``after``), the reader mark, and the first read.

        Returns (ended, events after ``after``); events are None when the read must be done again.
        """
        settings = current_app.config["BINDERY"]
        key = keys.EVENTS(channel)
        pipe = self.redis.pipeline(transaction=False)
        resumed = after != "0-0"
        if resumed:
            pipe.xrevrange(key, count=1)
        if settings["abandon_timeout"]:
            pipe.set(keys.READER(channel), f"{time.time():.3f}",
                     ex=int(settings["abandon_timeout"] + settings["keepalive_interval"]) + 5)
        pipe.xrange(key, min=f"({after}", count=1000)
        found = pipe.execute(raise_on_error=False)
        if resumed:
            last = found[0]
            if isinstance(last, Exception):
                raise last
            if last and last[0][0] == after and json.loads(last[0][1]["data"]).get("phase") in TERMINAL_PHASES:
                return True, None
        if settings["abandon_timeout"] and isinstance(found[-2], Exception):
            log.warning("could not record a reader of %s (%s)", channel, type(found[-2]).__name__)
        entries = found[-1]
        if isinstance(entries, Exception):
            raise entries
        return False, [(entry_id, json.loads(fields["data"])) for entry_id, fields in entries]

    def _mark_read(self, channel: str) -> None:
        """Someone reads this channel now: one SET per stream per keepalive, best effort."""
        settings = current_app.config["BINDERY"]
        if settings["abandon_timeout"]:
            try:
                self.redis.set(keys.READER(channel), f"{time.time():.3f}",
                               ex=int(settings["abandon_timeout"] + settings["keepalive_interval"]) + 5)
            except redis.RedisError as exc:
                log.warning("could not record a reader of %s (%s)", channel, type(exc).__name__)

    def _waiter(self, channel: str) -> tuple[_Notifier, threading.Event]:
        """The app's listener and a waiter on it; the first stream starts the listener, and the
        first after it stopped starts another (never at import or start-up)."""
        with self._notifier_lock:
            notifier: _Notifier | None = current_app.extensions.get("bindery.notifier")
            waiter = notifier.register(channel) if notifier is not None else None
            if notifier is None or waiter is None:
                notifier = current_app.extensions["bindery.notifier"] = _Notifier(self.redis)
                waiter = notifier.register(channel)
                assert waiter is not None  # registered before it starts, so it cannot have stopped
                notifier.start()
            return notifier, waiter

    def messages(self, channel: str = "sse", after: str = "0-0") -> Iterator[Message | str]:  # type: ignore[override]
        """Replay then follow a channel until a terminal event; keepalive comments in between."""
        settings = current_app.config["BINDERY"]
        interval = settings["keepalive_interval"]
        idle_limit = settings["stream_idle_timeout"]
        # The reader mark need only be fresh well within abandon_timeout, not at every keepalive.
        mark_every = max(interval, settings["abandon_timeout"] / 4)
        notifier, waiter = self._waiter(channel)  # before the first read, so no wake-up falls in between
        try:
            ended, pending = self._open(channel, after)
            if ended:
                return  # a client reconnecting after the last event: nothing more will come
            last_event = last_keepalive = last_read = marked = time.monotonic()
            woken = True
            while True:
                # Read only when woken (or now and then, in case a wake-up was lost): a stream's
                # keepalive then costs no Redis round trip.
                if woken or time.monotonic() - last_read >= SAFETY_READ_SECONDS:
                    if pending is not None:  # the open's read: a wake-up since registering stays set
                        entries, pending = pending, None
                    else:
                        waiter.clear()
                        entries = self.read(channel, after)
                    last_read = time.monotonic()
                    for entry_id, data in entries:
                        after = entry_id
                        last_event = time.monotonic()
                        yield Message(data, id=f"{channel}_{entry_id}")
                        if data.get("phase") in TERMINAL_PHASES:
                            return
                now = time.monotonic()
                if now - last_event > idle_limit:
                    if not self.exists(channel):
                        yield Message(failed_event(BinderyError(
                            "This launch is no longer known; please start it again.", 410)))
                        return
                    last_event = now  # quiet but alive (e.g. queued behind other builds)
                if now - last_keepalive >= interval:
                    last_keepalive = now
                    if now - marked >= mark_every:
                        marked = now
                        self._mark_read(channel)
                    yield KEEPALIVE
                woken = waiter.wait(timeout=max(0.0, last_keepalive + interval - time.monotonic()))
        finally:
            notifier.unregister(channel, waiter)

    def response(self, channel: str, after: str = "0-0") -> Response:
        """The ``text/event-stream`` response for one channel."""

        # The app context only, not the request's (what stream_with_context keeps for the
        # stream's whole life): an open stream needs the config and Redis, nothing of its request.
        app = current_app._get_current_object()  # type: ignore[attr-defined]

        def generate() -> Iterator[str]:
            yield KEEPALIVE  # flush headers at once so the client knows it is connected
            try:
                with app.app_context():
                    for message in self.messages(channel, after):
                        yield str(message)
            except redis.RedisError as exc:
                # Redis stayed away longer than redis_retry_seconds.  The status went out long
                # ago, so end the response: EventSource reconnects with Last-Event-ID and resumes.
                log.warning("stream %s ended: Redis unavailable (%s); the client will reconnect",
                            channel, type(exc).__name__)

        return single_stream(generate())  # type: ignore[call-arg]


def single_stream(body: Iterator[str]) -> Response:
    """Headers every event stream needs, whoever produces the body."""
    return current_app.response_class(
        body, mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
