"""Outages of other people's services, remembered so ``/health`` looks into them (and only then)."""

from __future__ import annotations

from app import keys
from app.extensions import redis_client

#: A mark outlives its cause by at most this long, even if ``/health`` is never asked.
OUTAGE_SECONDS = 3600


def mark_outage(provider: str) -> None:
    """Remember that a provider's API failed, so ``/health`` checks it until it answers again."""
    redis_client.client.set(keys.OUTAGE(provider), "1", ex=OUTAGE_SECONDS)


def has_outage(provider: str) -> bool:
    return bool(redis_client.client.exists(keys.OUTAGE(provider)))


def clear_outage(provider: str) -> None:
    redis_client.client.delete(keys.OUTAGE(provider))
