"""The address of the client a request comes from: one answer for every limit and ban.

``X-Forwarded-For`` is written by whoever sends the request, so only the entries
our own proxies appended can be believed: with ``trusted_proxy_hops = N`` the
N-th entry from the right is the client (as werkzeug's ProxyFix ``x_for=N``);
with 0 (the default) the header is ignored and the socket's peer is the client.
"""

from __future__ import annotations

import ipaddress

from flask import current_app, g, request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: IPv6 clients are counted by their /64: one host usually holds a whole /64, so
#: counting single addresses would let it take as many turns as it likes.
IPV6_PREFIX = 64


def parse_address(value: str) -> Address | None:
    """An IP address from a socket or header value (``[v6]:port`` and ``v4:port`` accepted), else None."""
    text = value.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # no zone ids
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def forwarded_client(peer: str, forwarded_for: list[str], hops: int) -> str:
    """The client given the socket peer, the ``X-Forwarded-For`` headers and the trusted hop count."""
    peer_address = parse_address(peer)
    fallback = str(peer_address) if peer_address else peer
    if hops <= 0:
        return fallback
    entries = [part.strip() for header in forwarded_for for part in header.split(",") if part.strip()]
    if len(entries) < hops:
        return fallback  # fewer entries than proxies we trust: the chain is not what we expect
    address = parse_address(entries[-hops])
    return str(address) if address else fallback


def client_address() -> str:
    """The requesting client's IP address (normalised text), computed once per request."""
    cached = g.get("bindery_client_address")
    if cached is None:
        hops = current_app.config["BINDERY"]["trusted_proxy_hops"]
        cached = forwarded_client(request.remote_addr or "", request.headers.getlist("X-Forwarded-For"), hops)
        g.bindery_client_address = cached
    return str(cached)


def client_key(address: str | None = None) -> str:
    """What per-client counters are keyed by: the IPv4 address, or the IPv6 address's /64."""
    text = client_address() if address is None else address
    parsed = parse_address(text)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed) if parsed else text[:64]
