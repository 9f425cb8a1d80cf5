"""Every Redis key Bindery uses, with who writes it, its type and how long it lives.

This list is the Redis layout of the operator's documentation (docs/architecture.md is
checked against it), and the only place a key name is spelt: modules build keys by
calling these entries, so a key that is not here does not exist.  Web and workers
share it; it imports nothing of Bindery's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_PART = re.compile(r"{(\w+)}")


def digest(text: str, length: int = 32) -> str:
    """A fixed-length name for arbitrary text (URLs, image names) inside a key."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Key:
    """One key (or family of keys): ``KEY(part, ...)`` fills the ``{parts}`` of its pattern in order."""

    pattern: str
    type: str
    owner: str
    lifetime: str
    purpose: str
    parts: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(_PART.findall(self.pattern)))

    def __call__(self, *values: object) -> str:
        if len(values) != len(self.parts):
            raise TypeError(f"{self.pattern} takes {len(self.parts)} parts, got {len(values)}")
        return self.pattern.format(**dict(zip(self.parts, map(str, values), strict=True)))

    @property
    def glob(self) -> str:
        """A SCAN/PSUBSCRIBE pattern matching every key of this family."""
        return _PART.sub("*", self.pattern)


# --- a launch ------------------------------------------------------------------------------------

EVENTS = Key("bindery:events:{channel}", "stream", "app/sse.py", "event_ttl after its last event",
             "The events of one channel (a launch id, or build:<build id>), replayed from Last-Event-ID.")
NOTIFY = Key("bindery:notify:{channel}", "pub/sub channel", "app/sse.py", "none (nothing is stored)",
             "Wakes the event streams waiting on a channel when an event is added.")
READER = Key("bindery:reader:{channel}", "string", "app/sse.py", "abandon_timeout + keepalive_interval",
             "When a client last read the channel; launches nobody reads are cancelled.")
LAUNCH_REQUEST = Key("bindery:launch:{launch_id}", "string", "tasks/launch_record.py", "event_ttl",
                     "provider/spec of a launch, so a reconnecting client resumes only its own launch.")
LAUNCHES_ACTIVE = Key("bindery:launches:active", "sorted set", "tasks/launch_record.py",
                      "members pruned after event_ttl",
                      "Launches that may still run, scored by when they were last known to be watched.")
LAUNCH_PAYLOAD = Key("bindery:launch:{launch_id}:payload", "string (JSON)", "tasks/launch_record.py", "event_ttl",
                     "The launch as the web queued it, so a launch whose message was lost can be queued again.")
LAUNCHES_PENDING = Key("bindery:launches:pending", "sorted set", "tasks/launch_record.py",
                       "a member leaves when a worker picks the launch up",
                       "Launches queued but not yet picked up by a launch worker, scored by when they were queued.")
LAUNCH_PICKED = Key("bindery:picked:{launch_id}", "string", "tasks/worker_lease.py", "event_ttl",
                    "That a worker picked the launch up: a second copy of its message does nothing.")
LAUNCH_END = Key("bindery:end:{launch_id}", "string", "tasks/launch_record.py", "event_ttl",
                 "How a launch ended (ready, failed, cancelled): taken once, by SET NX.")
REDELIVERED = Key("bindery:redelivered:{launch_id}", "string (counter)", "tasks/worker_lease.py", "event_ttl",
                  "How often a launch was delivered again after its worker died.")
LAUNCH_EVENTS = Key("bindery:launch-events", "stream", "app/launch_events.py", "capped at about 1,000,000 entries",
                    "Launch events for operators (BinderHub's launch event log), when configured.")

# --- builds and images ---------------------------------------------------------------------------

BUILD_LOCK = Key("bindery:lock:build:{image_digest}", "string", "tasks/lock.py",
                 "build_lock_ttl, renewed by the build's heartbeat",
                 "The id of the build making an image: one build per image across all workers.")
BUILD_LOG = Key("bindery:buildlog:{path_digest}", "string", "app/build_log_store.py", "build_log_retention",
                "A build's full log, capped at build_log_max_bytes.")
BUILD_LOG_META = Key("bindery:buildlog:{path_digest}:meta", "hash", "app/build_log_store.py",
                     "build_log_retention", "Repository, ref, image, status and times of a build log.")
LAST_GOOD = Key("bindery:lastgood:{repo_digest}", "hash", "tasks/last_good.py", "none (one per repository)",
                "The last image of a repository that built: launched when a newer commit fails to build.")
TIMINGS_REPO = Key("bindery:timings:{kind}:repo:{repo_digest}", "list", "tasks/timings.py", "7 days",
                   "Recent build or launch durations of one repository (the loading page's estimate).")
TIMINGS_ALL = Key("bindery:timings:{kind}:all", "list", "tasks/timings.py", "none (capped list)",
                  "Recent build or launch durations of all repositories.")

# --- launched servers ----------------------------------------------------------------------------

PORT = Key("bindery:port:{port}", "string", "tasks/backends/docker_launcher.py", "launch_max_age",
           "Which launch holds a port of the docker launcher's range.")

START_LINE = Key("bindery:start:{line}:line", "sorted set", "tasks/lock.py (StartLine)",
                 "members leave when admitted or gone; the key 60 s after the last look",
                 "Launches waiting to start a server, scored by when they were asked for (first come, first "
                 "served); line start: the docker launcher, hub: launches a JupyterHub turned away (429).")
START_PLACES = Key("bindery:start:{line}:places", "sorted set", "tasks/lock.py (StartLine)",
                   "a member 15 s after its waiter last looked",
                   "Leases of the places in that line: a waiter whose worker died leaves it.")
START_SLOTS = Key("bindery:start:{line}:slots", "sorted set", "tasks/lock.py (StartLine)",
                  "a member 15 s after its holder last renewed it",
                  "Launches starting a server now (at most launch_start_concurrency), scored by their lease's end.")
PROXY_ROUTES = Key("bindery:proxy:routes", "hash", "tasks/backends/proxy_routes.py",
                   "a field per running server, removed with the server",
                   "configurable-http-proxy's /user/<id> routes (id -> target URL), so its table is rebuilt after "
                   "CHP restarts.")

POOL_IDLE = Key("bindery:pool:idle:{image_digest}", "set", "tasks/backends/warm_pool.py",
                "until claimed (SPOP) or retired (warm_pool_max_age)",
                "Started, unclaimed servers of one image (JSON: container, port, token, start time); SPOP hands "
                "one to exactly one launch.")
POOL_IMAGES = Key("bindery:pool:images", "set", "tasks/backends/warm_pool.py", "none (pruned by the beat task)",
                  "Images that may have pooled servers, so the beat task finds every idle set.")
POOL_TARGETS = Key("bindery:pool:targets", "hash", "tasks/backends/warm_pool.py", "none (one field per pooled spec)",
                   "The image a pooled spec's servers run: that of the spec's latest launch (a new one retires "
                   "the old pool).")
POOL_FILLING = Key("bindery:pool:filling:{image_digest}", "string", "tasks/backends/warm_pool.py",
                   "launch_timeout + 30 s", "One refill of an image's pool at a time, across workers.")
POOL_STARTING = Key("bindery:pool:starting", "sorted set", "tasks/backends/warm_pool.py",
                    "members leave when their server answers, or after launch_timeout",
                    "Launches that missed the pool and are starting a server: refills wait for them, so the "
                    "pool never slows a real launch.")
POOL_CLAIMED = Key("bindery:pool:claimed:{launch_id}", "string", "tasks/backends/warm_pool.py",
                   "launch_max_age + 120 s", "The pooled container a launch took, so stopping the launch finds it.")
POOL_OWNER = Key("bindery:pool:owner:{container_id}", "string", "tasks/backends/warm_pool.py",
                 "launch_max_age + 120 s", "When a pooled container was claimed: its age (launch_max_age) counts "
                 "from then.")
ENVIRONMENT = Key("bindery:environment:{repo_digest}:{env_hash}", "hash", "tasks/backends/environment.py",
                  "30 days, renewed on use",
                  "The image built from a repository's environment (hash of its environment files): a commit "
                  "that changes only content reuses it.")

# --- front door and operations -------------------------------------------------------------------

RATE_LIMIT = Key("bindery:ratelimit:{client}:{window}", "string (counter)", "app/rate_limit.py",
                 "rate_limit_period + 1 s", "Launches of one client address (or pushes of one repository, "
                 "push-<sha256(repository URL)[:32]>, for webhook_rate_limit_period) in one window.")
HOOK_DELIVERY = Key("bindery:hook:delivery:{source}:{delivery_digest}", "string", "app/hooks.py",
                    "webhook_delivery_ttl",
                    "A webhook delivery already acted on (SET NX): the same delivery again builds nothing.")
STREAMS = Key("bindery:streams:{client}", "sorted set", "app/stream_limit.py", "one stream lease",
              "Open event streams of one client address (max_streams_per_ip), as leases.")
BUILD_TOKEN_KEY = Key("bindery:build-token-key", "string", "app/build_tokens.py", "none",
                      "The signing key of build tokens when build_token_secret is not set.")
WORKERS = Key("bindery:workers:{queue}", "sorted set", "tasks/worker_heartbeat.py",
              "members pruned 10 heartbeat ages after their last beat",
              "Live Celery workers of a queue (build, launch), scored by their last heartbeat; read by /health.")
OUTAGE = Key("bindery:outage:{provider}", "string", "app/outages.py", "1 hour, or until /health sees it back",
             "A provider API that failed: /health probes it until it answers.")

# --- Celery's own (kombu's Redis transport) ------------------------------------------------------

QUEUE = Key("{queue}", "list", "kombu", "until consumed", "A Celery queue: launch (gevent) or build (prefork).")
UNACKED = Key("unacked", "hash", "kombu", "until acked", "Delivered, unacked messages of the build worker.")
UNACKED_INDEX = Key("unacked_index", "sorted set", "kombu", "until acked",
                    "Delivery times of those messages; redelivered after visibility_timeout.")
UNACKED_MUTEX = Key("unacked_mutex", "string", "kombu", "seconds", "Guards the redelivery of expired messages.")
LAUNCH_UNACKED = Key("unacked:launch", "hash", "tasks/worker_lease.py (through kombu)", "until acked",
                     "Delivered, unacked messages of launch-only workers.")
LAUNCH_UNACKED_INDEX = Key("unacked_index:launch", "sorted set", "tasks/worker_lease.py (through kombu)",
                           "until acked", "Leases of those messages, renewed by the live worker.")
LAUNCH_UNACKED_MUTEX = Key("unacked_mutex:launch", "string", "tasks/worker_lease.py (through kombu)", "seconds",
                           "Guards the redelivery of a dead launch worker's messages.")
KOMBU_BINDINGS = Key("_kombu.binding.{exchange}", "set", "kombu", "none", "Queue bindings of an exchange.")

KEYS: tuple[Key, ...] = tuple(value for value in globals().values() if isinstance(value, Key))


def build_channel(build_id: str) -> str:
    """The event channel of one build, read from its start by every launch that waits on it."""
    return f"build:{build_id}"
