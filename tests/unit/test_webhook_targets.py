"""events.targets: which addresses a webhook may be sent to, checked without the network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from assetd.errors import InvalidInput
from assetd.events.targets import Target, TargetRefused, check_saved_url, is_public, resolve

pytestmark = pytest.mark.anyio

NOT_PUBLIC = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_recognised(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_a_url_naming_a_non_public_address_is_refused_when_saved(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(InvalidInput, match="not a public address"):
        check_saved_url(f"http://{host}:8080/hook", allow_private=False)
    check_saved_url(f"http://{host}:8080/hook", allow_private=True)


def test_a_hostname_is_left_for_delivery_time() -> None:
    check_saved_url("https://hooks.example.com/x", allow_private=False)


async def test_a_name_that_resolves_to_loopback_is_refused_at_delivery() -> None:
    # /etc/hosts answers "localhost" without the network.
    with pytest.raises(TargetRefused, match="localhost resolves to .*not a public address"):
        await resolve("http://localhost:9/hook", allow_private=False)


async def test_a_literal_non_public_address_is_refused_at_delivery() -> None:
    with pytest.raises(TargetRefused, match="not a public address"):
        await resolve("http://[::1]:9/hook", allow_private=False)


async def test_a_public_literal_is_sent_to_as_it_is() -> None:
    assert await resolve("https://93.184.215.14/hook", allow_private=False) == Target(
        "https://93.184.215.14/hook"
    )


async def test_allowing_private_targets_sends_to_the_url_unchanged() -> None:
    url = "http://localhost:9/hook?x=1"
    assert await resolve(url, allow_private=True) == Target(url)


async def test_a_public_name_is_sent_to_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def answer(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        assert (host, port) == ("hooks.example.com", 8443)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800::1", port, 0, 0))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", answer)

    target = await resolve("https://hooks.example.com:8443/in?a=1", allow_private=False)

    # A second lookup by the HTTP client could answer 127.0.0.1: it never happens.
    assert target == Target(
        "https://[2606:2800::1]:8443/in?a=1",
        host_header="hooks.example.com:8443",
        sni_hostname="hooks.example.com",
    )


async def test_a_name_with_any_non_public_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def answer(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", answer)

    with pytest.raises(TargetRefused, match="10.0.0.7"):
        await resolve("http://rebind.example.com/hook", allow_private=False)
