"""Which page a launched server opens when the link names none (the ``default_url`` setting).

The setting's default, ``/lab``, is what repo2docker images serve; an image without
JupyterLab gets the notebook UI (``/tree``), and one with neither the server's root.
What the image has is learnt from the started server itself, with the launch's token,
after it answers: ``GET <url>lab`` is 200 where JupyterLab is installed and 404 where it
is not (about 30-70 ms, and it warms the page the browser loads next), so a usual launch
pays one request and a fallback two or three.  The alternatives cost more: image labels
do not say it for images built elsewhere, ``jupyter server extension list`` or
``pip show`` in the image need a container of their own (seconds), and the server's
``/api`` lists no extensions.  Where the answer is not the setting (a fallback, or no
interface at all) it travels in a ``launching`` event (``default_url``), so the ``ready``
event stays BinderHub's: its ``url`` is the server's base URL, which thebe and BinderHub's
client use as is, and the loading page adds the path.  Where it is the setting, no event
is sent: the server's root redirects there (``ServerApp.default_url``, the spawner's
``default_url``), as on BinderHub.

Each launch process remembers the answer per image: an image's tag names one commit's
build, so a cached launch of an image seen before pays no request here (the probe was 13 %
of a launch worker's CPU in a cached-launch profile, and 30-70 ms before ``ready``).  A
prebuilt image under a moving tag that drops an interface is probed again after the
worker restarts; until then its page says what it was.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import requests

log = logging.getLogger(__name__)

#: (image, default_url) -> the page found, most recent last; bounded, per process.
_FOUND: OrderedDict[tuple[str, str], str] = OrderedDict()
FOUND_MAX = 4096

# The interfaces a default_url falls back to, in order, and how the page names them.
FALLBACKS = ("/lab", "/tree")
NAMES = {"/lab": "JupyterLab", "/tree": "the notebook interface"}


def candidates(default_url: str) -> list[str]:
    """The pages to try, in order: the setting, then JupyterLab, then the notebook UI.

    ``/`` is the root on purpose: nothing to try."""
    if default_url == "/":
        return []
    return list(dict.fromkeys([default_url, *FALLBACKS]))


def find_default_url(session: requests.Session, server_url: str, token: str, default_url: str,
                     timeout: tuple[float, float] = (3, 10), image: str = "") -> str:
    """The first candidate the server serves (any answer but 404), else ``/``.

    ``image``: the server's image, whose answer is remembered (none: always probe).
    A request that fails says nothing about the image: the setting is kept, nothing is
    remembered, and the launch goes on (the server already answered its API)."""
    known = _FOUND.get((image, default_url)) if image else None
    if known is not None:
        _FOUND.move_to_end((image, default_url))
        return known
    found = _probe(session, server_url, token, default_url, timeout)
    if image and found is not None:
        _FOUND[(image, default_url)] = found
        while len(_FOUND) > FOUND_MAX:
            _FOUND.popitem(last=False)
    return default_url if found is None else found


def _probe(session: requests.Session, server_url: str, token: str, default_url: str,
           timeout: tuple[float, float]) -> str | None:
    """What the server serves; None when a request failed (nothing learnt)."""
    base = server_url if server_url.endswith("/") else f"{server_url}/"
    for path in candidates(default_url):
        try:
            response = session.get(base + path.lstrip("/"), headers={"Authorization": f"token {token}"},
                                   timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            log.info("could not check %s on the new server (%s); keeping %s", path, type(exc).__name__,
                     default_url)
            return None
        if response.status_code != 404:
            return path
    return "/"


def default_url_event(default_url: str, found: str) -> dict[str, Any] | None:
    """The ``launching`` event that tells the loading page to open ``found``, or None when the
    server's own root already leads to the setting (no event: the stream stays as it was).

    ``no_interface`` marks a server that has none of the interfaces looked for: the page
    says so before it opens the bare root."""
    if found == default_url:
        return None
    event: dict[str, Any] = {"phase": "launching", "default_url": found}
    if found == "/":
        event["no_interface"] = True
        event["message"] = ("This image has neither JupyterLab nor the notebook interface: you get the "
                            "Jupyter server's own page, which only says that it runs. A link with "
                            "?urlpath= opens what the image serves instead.\n")
    else:
        missing = f"This image has no {NAMES[default_url]}" if default_url in NAMES \
            else f"The server has no page at {default_url}"
        event["message"] = f"{missing}: opening {NAMES.get(found, found)} ({found}) instead.\n"
    return event
