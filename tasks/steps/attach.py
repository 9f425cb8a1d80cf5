"""Waiting on someone else's build: relay its stream from the first line, then launch.

Runs on the gevent launch queue, so hundreds of waiting launches cost greenlets,
not build workers.  If the build's holder dies (its lock expires with no
``built`` or ``failed``), the launch goes back to the registry check, where one
waiting launch takes the lock and builds.  A launch that ended meanwhile
(cancelled because nobody watched it) stops following at its next check.
Each relayed event carries the build entry it came from, so an attach
delivered again (its worker was killed) carries on where it stopped instead of
relaying the log twice.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from flask import current_app

from app.extensions import events, redis_client
from app.keys import build_channel
from tasks import chain, last_good
from tasks.launch_record import ended
from tasks.lock import BuildLock
from tasks.outcomes import record_launch

#: Seconds between checks whether the launch ended while it followed the build.
END_CHECK_SECONDS = 5.0


@shared_task(name="bindery.attach")
def attach(launch: dict[str, Any]) -> None:
    config = current_app.config["BINDERY"]
    source = build_channel(launch["build_id"])
    lock = BuildLock(redis_client.client, launch["image"])
    relayed_build, _, relayed_entry = (events.last_source(launch["id"]) or "").rpartition("/")
    after = relayed_entry if relayed_build == launch["build_id"] else "0-0"
    quiet_since = time.monotonic()
    checked = time.monotonic()
    while True:
        if time.monotonic() - checked >= END_CHECK_SECONDS:
            checked = time.monotonic()
            if ended(launch["id"]):
                return  # cancelled (its end already told the client): the build goes on without it
        entries = events.read(source, after, block_ms=2000)
        for entry_id, event in entries:
            after = entry_id
            if event.get("phase") == "built":
                events.publish({**event, "message": "Built image, launching...\n"}, channel=launch["id"])
                chain.built(launch)
                return
            if event.get("phase") == "failed":
                if not last_good.offer(launch, chain.last_good_found):
                    events.publish(event, channel=launch["id"])
                    record_launch(launch, "failure")
                return
            events.publish(event, channel=launch["id"], source=f"{launch['build_id']}/{entry_id}")
        if entries:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > config["build_lock_ttl"] / 3 \
                and lock.holder() != launch["build_id"]:
            # The build ended without a word (its worker died): start over from the check.
            events.publish({"phase": "waiting", "message": "The build we were following stopped; "
                            "checking again...\n"}, channel=launch["id"])
            chain.build_stopped(launch)
            return
