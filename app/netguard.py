"""Which network addresses Bindery may fetch from on a user's (or a setting's) behalf.

A repository URL is user input: without a check, ``git/http%3A%2F%2F169.254.169.254...``
would make the workers fetch from the cloud metadata service, the registry on
loopback or anything else on the private network (server-side request forgery).
Every address a host name resolves to (all of them, after DNS) must be a public
one, unless it lies in the operator's ``allowed_private_networks``.  Cloud
metadata addresses are refused even inside an allowed network unless that entry
names the address alone.

Resolving first and connecting later leaves a window (DNS rebinding); callers
close it where the client allows, e.g. git's ``http.curloptResolve`` (see
:func:`git_pin_config`).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable
from typing import Any

from app.errors import ProviderError, SpecError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Instance metadata services (AWS, ECS, GCP/Azure share 169.254.169.254; Alibaba; Oracle; Azure wire
#: server; AWS IPv6).  Some are public addresses, so they are listed rather than derived.
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "100.100.100.200", "192.0.0.192",
    "168.63.129.16", "fd00:ec2::254",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

SETTING = "allowed_private_networks"


class AddressRefused(SpecError):
    """A host that resolves to an address this Bindery does not fetch from (403, like a banned spec)."""

    status_code = 403


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def kind_of(address: Address) -> str | None:
    """Why an address is not a public one (``"loopback"``, ...), or None when it is."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = kind_of(inner)
        return reason and f"{reason}, as {inner}"
    address = ipaddress.ip_address(str(address).split("%", 1)[0])  # drop an IPv6 zone
    if address in METADATA:
        return "cloud metadata"
    for reason, test in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                         ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                         ("private", address.is_private), ("reserved", address.is_reserved)):
        if test:
            return reason
    return None if address.is_global else "private"  # e.g. 100.64.0.0/10 (shared/CGNAT)


@functools.lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def parse_networks(entries: Iterable[str]) -> list[str]:
    """The setting's entries, checked; raises ValueError naming a bad one."""
    checked = []
    for entry in entries:
        try:
            ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP network such as 127.0.0.0/8 or ::1/128") from None
        checked.append(str(entry).strip())
    return checked


def is_allowed(address: Address, config: dict[str, Any]) -> bool:
    """Public, or inside an allowed network (metadata addresses only when allowed one by one)."""
    if kind_of(address) is None:
        return True
    plain = ipaddress.ip_address(str(address).split("%", 1)[0])
    candidates = [plain] + ([inner] if (inner := embedded_ipv4(plain)) is not None else [])
    metadata = any(candidate in METADATA for candidate in candidates)
    for network in _networks(tuple(config.get(SETTING) or ())):
        if metadata and network.num_addresses != 1:
            continue
        if any(candidate.version == network.version and candidate in network for candidate in candidates):
            return True
    return False


def resolve(host: str, port: int | None) -> list[Address]:
    """Every address ``host`` resolves to (an IP literal is itself); raises ProviderError when none."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port or 0, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ProviderError(f"could not resolve host {host}: {reason}") from None
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ProviderError(f"could not resolve host {host}: no addresses")
    return addresses


def literal_address(host: str) -> Address | None:
    """``host`` as an IP address when it is written as one (``[::1]`` too), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def refusal(host: str, address: Address, what: str) -> str:
    shown = "" if literal_address(host) == address else f" resolves to {address}, which"
    return (f"{what} host {host}{shown} is not a public address ({kind_of(address)}): this Bindery does not "
            f"fetch from it. Use a public host; an operator who means to allow it adds the network to "
            f"the {SETTING} setting (BINDERY_{SETTING.upper()}).")


def check_literal(host: str, config: dict[str, Any], what: str) -> None:
    """Refuse a host written as a non-public IP address, without any DNS (cheap: for the web)."""
    address = literal_address(host)
    if address is not None and not is_allowed(address, config):
        raise AddressRefused(refusal(host, address, what))


def check_host(host: str, port: int | None, config: dict[str, Any], what: str) -> list[Address]:
    """Resolve ``host`` and refuse it if any address is not allowed; returns the addresses to connect to."""
    addresses = resolve(host, port)
    for address in addresses:
        if not is_allowed(address, config):
            raise AddressRefused(refusal(host, address, what))
    return addresses


def check_url_host(url: str, config: dict[str, Any], what: str) -> list[Address]:
    """:func:`check_host` for the host of an http(s)/git/ssh URL (default ports filled in)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise AddressRefused(f"{what} names no host")
    default = {"http": 80, "https": 443, "git": 9418, "ssh": 22}.get(parts.scheme.lower())
    return check_host(parts.hostname, parts.port or default, config, what)


def git_pin_config(url: str, addresses: list[Address]) -> list[tuple[str, str]]:
    """git settings that make git connect only to the checked addresses, and not follow redirects.

    ``http.curloptResolve`` (git >= 2.37) pins ``host:port`` for http(s), so a
    second DNS answer (rebinding) is never used; redirects could lead anywhere,
    so they are not followed.  A git:// URL is rewritten to the checked address
    with ``url.<address>.insteadOf`` (git daemon has no TLS or name to keep).
    ssh:// resolves on its own (its host keys are checked by name): not pinned.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "git" and addresses and literal_address(host) is None:
        address = addresses[0]
        where = f"[{address}]" if address.version == 6 else str(address)
        suffix = f":{parts.port}" if parts.port else ""
        return [(f"url.git://{where}{suffix}/.insteadOf", f"{parts.scheme}://{parts.netloc}/")]
    if scheme not in ("http", "https"):
        return []
    pairs = [("http.followRedirects", "false")]
    if literal_address(host) is None and addresses:
        port = parts.port or (443 if scheme == "https" else 80)
        listed = ",".join(f"[{a}]" if a.version == 6 else str(a) for a in addresses)
        pairs.append(("http.curloptResolve", f"{host}:{port}:{listed}"))
    return pairs


def git_config_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``pairs`` as git's ``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n`` environment (git >= 2.31), for git
    run by someone else (repo2docker).  One list for all: the variables are numbered from 0."""
    if not pairs:
        return {}
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def config_error(value: str, setting: str, config: dict[str, Any]) -> str | None:
    """Why the URL setting ``setting`` names a refused host, or None (a host that does not resolve
    now is not judged: starting offline must work, and nothing can be fetched from it anyway)."""
    try:
        check_url_host(value, config, setting)
    except AddressRefused as exc:
        return exc.message
    except (ProviderError, ValueError):
        return None
    return None
