"""New launches per client in a fixed window, counted in Redis so every web process shares it.

One counter per client and window (``INCR`` + ``EXPIRE`` in one transaction):
cheap, exact across processes, and it cleans itself up.  A fixed window lets a
client spend its allowance twice around a boundary; for "launches per ten
minutes" that is an acceptable price for one key and two commands.
"""

from __future__ import annotations

import dataclasses
import time

import redis

from app import keys
from app.errors import RateLimited


@dataclasses.dataclass(frozen=True)
class Window:
    """One client's standing in the current window, after counting this request."""

    limit: int
    period: int
    count: int
    reset: int  #: epoch seconds when the window ends

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def retry_after(self, now: float | None = None) -> int:
        return max(1, int(self.reset - (time.time() if now is None else now) + 0.999))

    def headers(self) -> dict[str, str]:
        """GitHub's and BinderHub's ``x-ratelimit-*`` headers (reset in epoch seconds)."""
        return {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining),
                "x-ratelimit-reset": str(self.reset)}


def hit(client: redis.Redis, key: str, limit: int, period: int, now: float | None = None) -> Window:
    """Count one request of ``key`` in the window that holds ``now``."""
    now = time.time() if now is None else now
    window = int(now // period)
    redis_key = keys.RATE_LIMIT(key, window)
    pipe = client.pipeline(transaction=True)
    pipe.incr(redis_key)
    pipe.expire(redis_key, period + 1)
    count, _ = pipe.execute()
    return Window(limit=limit, period=period, count=int(count), reset=(window + 1) * period)


def refusal(window: Window, now: float | None = None, *, what: str = "new launches from your address",
            whose: str = "one address") -> RateLimited:
    """The 429 for a client (or a repository's pushes) over its limit, saying when it may try again."""
    wait = window.retry_after(now)
    when = time.strftime("%H:%M:%S UTC", time.gmtime(window.reset))
    return RateLimited(
        f"Too many {what}: this Bindery starts at most {window.limit} per "
        f"{_duration(window.period)} for {whose}. Try again in {_duration(wait)} (at {when}).",
        retry_after=wait,
    )


def _duration(seconds: int) -> str:
    minutes, secs = divmod(int(seconds), 60)
    if not minutes:
        return f"{secs} second{'s' if secs != 1 else ''}"
    text = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{text} {secs} second{'s' if secs != 1 else ''}" if secs else text
