"""Where a webhook may send: public addresses only, unless the operator allows others.

A webhook URL is chosen by a tenant's admin, and assetd POSTs to it from inside the
deployment. Left open, that lets a tenant reach what only the server can: the loopback
interface (assetd's own database, Redis), the private network, a cloud metadata service on
169.254.169.254. So a URL whose host is a non-public IP is refused when it is saved, and a
hostname is resolved at each delivery, refused if any of its addresses is non-public, and the
POST goes to the address that was checked (so a second lookup cannot answer differently).
`ASSETD_WEBHOOK_ALLOW_PRIVATE_TARGETS=true` lifts all of this, for closed networks and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from assetd.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The webhook's host is, or resolves to, an address it may not be sent to."""


def is_public(address: IPAddress) -> bool:
    """Routable on the internet: not loopback, private, link-local, shared, reserved, …"""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not address.is_multicast


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_saved_url(url: str, *, allow_private: bool) -> None:
    """Refuse (400) a URL whose host is a non-public IP address; names are checked later."""
    host = urlsplit(url).hostname or ""
    address = _literal(host)
    if allow_private or address is None:
        return
    if not is_public(address):
        raise InvalidInput(
            f"url points at {address}, which is not a public address: webhooks are sent "
            "to public addresses only (ASSETD_WEBHOOK_ALLOW_PRIVATE_TARGETS lifts this)"
        )


@dataclass(frozen=True)
class Target:
    """Where to send: the URL with the checked address as its host, and what to tell the
    server (Host header) and TLS (SNI, certificate name) about the name it was given."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The address to send `url` to, once every address of its host is public."""
    if allow_private:
        return Target(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        if not is_public(literal):
            raise TargetRefused(f"{literal} is not a public address")
        return Target(url)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"{host} does not resolve: {exc.strerror}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    refused = [str(a) for a in addresses if not is_public(a)]
    if refused or not addresses:
        raise TargetRefused(
            f"{host} resolves to {', '.join(refused) or 'nothing'}, not a public address"
        )
    chosen = addresses[0]
    netloc = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    return Target(pinned, host_header=host_header, sni_hostname=host)
