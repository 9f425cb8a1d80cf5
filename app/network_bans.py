"""``ban_networks``: client networks the operator refuses, each with a label shown to the client.

As BinderHub's ``ban_networks`` (CIDR -> label).  The most specific network that
holds the client's address gives the label.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping

from flask import current_app

from app.client_address import client_address, parse_address
from app.errors import Banned

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ban_networks(value: Mapping[str, str]) -> dict[str, str]:
    """Checked ``{CIDR: label}`` with CIDRs normalised; ValueError names the bad entry."""
    checked: dict[str, str] = {}
    for cidr, label in value.items():
        try:
            network = ipaddress.ip_network(str(cidr).strip(), strict=True)
        except ValueError as exc:
            raise ValueError(f"{str(cidr)[:60]!r} is not a network in CIDR form ({exc})") from None
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            raise ValueError(f"{cidr}: the label must be a non-empty string of at most 200 characters")
        checked[str(network)] = label.strip()
    return checked


@functools.lru_cache(maxsize=8)
def _networks(items: tuple[tuple[str, str], ...]) -> list[tuple[Network, str]]:
    parsed = [(ipaddress.ip_network(cidr), label) for cidr, label in items]
    return sorted(parsed, key=lambda item: item[0].prefixlen, reverse=True)


def banned_label(address: str, ban_networks: Mapping[str, str]) -> str | None:
    """The label of the most specific banned network holding ``address``, or None."""
    if not ban_networks:
        return None
    parsed = parse_address(address)
    if parsed is None:
        return None
    for network, label in _networks(tuple(sorted(ban_networks.items()))):
        if parsed.version == network.version and parsed in network:
            return label
    return None


def check_client_allowed() -> None:
    """Raise :class:`Banned` (403) naming the label when the client's network is banned."""
    label = banned_label(client_address(), current_app.config["BINDERY"]["ban_networks"])
    if label is not None:
        raise Banned(f"Requests from {label} are not allowed to launch on this Bindery. "
                     "If you think this is a mistake, contact its operators.")
