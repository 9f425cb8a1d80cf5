"""The client address every limit and ban uses, and ``ban_networks``, on the factory's app.

Requests go through Flask's test client with a chosen peer address (REMOTE_ADDR)
and X-Forwarded-For headers; Redis is a real embedded one.  The same paths over
real gunicorn are in tests/app/test_front_door.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.client_address import client_key, forwarded_client, parse_address
from app.config import load_config
from app.errors import ConfigError
from app.network_bans import banned_label
from app.redis_server import EmbeddedRedis


@pytest.mark.parametrize(("peer", "forwarded", "hops", "expected"), [
    ("10.0.0.5", [], 0, "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.7"], 0, "10.0.0.5"),                    # header ignored without trust
    ("10.0.0.5", ["198.51.100.7"], 1, "198.51.100.7"),
    ("10.0.0.5", ["6.6.6.6, 198.51.100.7"], 1, "198.51.100.7"),       # a spoofed entry on the left
    ("10.0.0.5", ["6.6.6.6", "198.51.100.7, 10.0.0.4"], 2, "198.51.100.7"),  # two headers, two proxies
    ("10.0.0.5", ["198.51.100.7"], 2, "10.0.0.5"),                    # fewer entries than proxies
    ("10.0.0.5", ["not-an-address"], 1, "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.7:4711"], 1, "198.51.100.7"),
    ("10.0.0.5", ["[2001:db8::1]:443"], 1, "2001:db8::1"),
    ("::ffff:192.0.2.1", [], 0, "192.0.2.1"),                         # dual-stack socket, IPv4 client
    ("10.0.0.5", [""], 1, "10.0.0.5"),
])
def test_forwarded_client_trusts_only_the_configured_hops(
        peer: str, forwarded: list[str], hops: int, expected: str) -> None:
    assert forwarded_client(peer, forwarded, hops) == expected


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert parse_address("fe80::1%eth0") is not None


BANS = {"203.0.113.0/24": "Example Lab", "203.0.113.128/25": "Example Lab's guest Wi-Fi",
        "2001:db8:dead::/48": "the test net"}


def test_most_specific_banned_network_names_the_client() -> None:
    bans = load_config({"ban_networks": BANS}, environ={})["ban_networks"]
    assert banned_label("203.0.113.7", bans) == "Example Lab"
    assert banned_label("203.0.113.200", bans) == "Example Lab's guest Wi-Fi"
    assert banned_label("2001:db8:dead:1::5", bans) == "the test net"
    assert banned_label("198.51.100.1", bans) is None
    assert banned_label("garbage", bans) is None


@pytest.mark.parametrize(("value", "says"), [
    ({"203.0.113.1/24": "x"}, "has host bits set"),
    ({"not-a-net": "x"}, "not a network in CIDR form"),
    ({"203.0.113.0/24": ""}, "label must be a non-empty string"),
    ('["203.0.113.0/24"]', "expected a mapping of CIDR to label"),
])
def test_bad_ban_networks_stop_the_start(value: Any, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"ban_networks": value}, environ={})
    assert "ban_networks" in str(info.value) and says in str(info.value)


def test_ban_networks_from_the_environment_as_json() -> None:
    config = load_config(environ={"BINDERY_BAN_NETWORKS": json.dumps({" 192.0.2.0/24 ": " Corp "})})
    assert config["ban_networks"] == {"192.0.2.0/24": "Corp"}


@pytest.fixture
def app(redis_server: EmbeddedRedis) -> Flask:
    return create_app({"redis_url": redis_server.url, "launcher": "bench", "ban_networks": BANS,
                       "trusted_proxy_hops": 1})


def _events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in response.get_data(as_text=True).splitlines()
            if line.startswith("data:")]


def test_a_banned_network_gets_a_failed_event_and_an_error_page(client: Any) -> None:
    banned = {"X-Forwarded-For": "203.0.113.200"}
    response = client.get("/build/gh/org/repo/HEAD", headers={"Accept": "text/event-stream", **banned})
    assert response.status_code == 200
    failed = _events(response)[-1]
    assert failed["phase"] == "failed" and failed["status_code"] == 403
    assert "Example Lab's guest Wi-Fi" in failed["message"]
    page = client.get("/v2/gh/org/repo/HEAD", headers={"Accept": "text/html", **banned})
    assert page.status_code == 403 and "text/html" in page.content_type
    assert "Example Lab&#39;s guest Wi-Fi" in page.get_data(as_text=True)
    assert client.get("/versions", headers=banned).status_code == 200, "only launches are refused"


def test_a_spoofed_forwarded_entry_does_not_escape_a_ban(client: Any) -> None:
    """The client prepends an address; the entry our one proxy appended still names it."""
    headers = {"Accept": "text/html", "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    assert client.get("/v2/gh/org/repo/HEAD", headers=headers).status_code == 403
    assert client.get("/v2/gh/org/repo/HEAD", headers={"Accept": "text/html",
                                                        "X-Forwarded-For": "203.0.113.9, 198.51.100.1"}
                      ).status_code == 200


def test_without_trusted_hops_the_peer_is_the_client(redis_server: EmbeddedRedis) -> None:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "ban_networks": BANS})
    client = app.test_client()
    assert client.get("/v2/gh/org/repo/HEAD", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
    assert client.get("/v2/gh/org/repo/HEAD", environ_overrides={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
