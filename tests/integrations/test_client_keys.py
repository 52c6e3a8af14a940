"""Rate limits that are hard to evade: whom the ASGI key functions count.

* IPv6 clients are grouped by /64 (each controls at least that many addresses);
* forwarding headers are read only from a peer that is one of your proxies, and
  only as far as your proxies wrote them (``X-Forwarded-For``, ``Forwarded``,
  ``X-Real-IP``);
* a huge forwarding header costs a bounded amount of work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from aiocache_patterns import RateLimiter
from aiocache_patterns.integrations import _client_keys
from aiocache_patterns.integrations.asgi import (
    MAX_CHAIN,
    UNKNOWN_CLIENT,
    ASGIApp,
    RateLimitMiddleware,
    Receive,
    Scope,
    Send,
    client_ip,
    forwarded_ip,
    peer_ip,
)

PROXY = ("10.0.0.1", 40000)  # a private address: one of ours by default
PUBLIC = ("203.0.113.50", 40000)


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _client(app: ASGIApp, peer: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _scope(peer: tuple[str, int] | None, *headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "client": peer, "headers": list(headers)}


def _xff(value: bytes) -> tuple[bytes, bytes]:
    return (b"x-forwarded-for", value)


# -- IPv6: one quota per /64 ----------------------------------------------------------------


async def test_twenty_addresses_of_one_ipv6_64_share_one_quota(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=5, window=60)
    app = RateLimitMiddleware(_ok, limiter)
    statuses = []
    for i in range(20):  # what any IPv6 client can do: a new address per request
        async with _client(app, (f"2001:db8:1:2::{i + 1:x}", 40000)) as client:
            statuses.append((await client.get("/")).status_code)
    assert statuses.count(200) == 5
    async with _client(app, ("2001:db8:1:3::1", 40000)) as neighbour:  # another /64
        assert (await neighbour.get("/")).status_code == 200


def test_prefixes_are_configurable() -> None:
    a, b = _scope(("2001:db8:1:2::1", 1)), _scope(("2001:db8:1:ff::1", 1))
    assert client_ip(a) == "2001:db8:1:2::/64"
    assert client_ip(a) != client_ip(b)
    by_56 = peer_ip(ipv6_prefix=56)
    assert by_56(a) == by_56(b) == "2001:db8:1::/56"
    exact = peer_ip(ipv6_prefix=128)
    assert exact(a) == "2001:db8:1:2::1"
    v4 = peer_ip(ipv4_prefix=24)
    assert v4(_scope(("198.51.100.7", 1))) == "198.51.100.0/24"
    assert client_ip(_scope(("::ffff:198.51.100.7", 1))) == "198.51.100.7"
    assert forwarded_ip(ipv6_prefix=48)(_scope(PROXY, _xff(b"2001:db8:1:2::1"))) == (
        "2001:db8:1::/48"
    )


# -- forwarding headers: only what our proxies wrote -------------------------------------------


async def test_a_client_connecting_directly_cannot_pick_its_key(redis: Any) -> None:
    limiter = RateLimiter(redis, limit=1, window=60)
    app = RateLimitMiddleware(_ok, limiter, key=forwarded_ip(trusted_hops=1))
    async with _client(app, PUBLIC) as direct:
        first = await direct.get("/", headers={"x-forwarded-for": "6.6.6.6"})
        second = await direct.get("/", headers={"x-forwarded-for": "7.7.7.7"})
    assert [first.status_code, second.status_code] == [200, 429]  # keyed by its own address
    key = forwarded_ip(trusted_hops=1)
    assert key(_scope(PUBLIC, _xff(b"6.6.6.6"))) == PUBLIC[0]
    assert key(_scope(PROXY, _xff(b"6.6.6.6"))) == "6.6.6.6"  # from our proxy: trusted


def test_named_proxies_replace_the_default_networks() -> None:
    key = forwarded_ip(trusted_hops=1, trusted_proxies=["192.0.2.10"])
    assert key(_scope(("192.0.2.10", 1), _xff(b"6.6.6.6"))) == "6.6.6.6"
    assert key(_scope(PROXY, _xff(b"6.6.6.6"))) == PROXY[0]  # not named: not trusted
    # a Unix socket (no peer address) is only reachable from the host: one of ours
    assert forwarded_ip()(_scope(None, _xff(b"6.6.6.6"))) == "6.6.6.6"
    assert forwarded_ip()(_scope(None)) == UNKNOWN_CLIENT


def test_an_all_trusted_chain_is_keyed_by_what_the_peer_saw() -> None:
    key = forwarded_ip(trusted_proxies=["10.0.0.0/8"])
    # a client inside the trusted network writes a header of trusted-looking
    # addresses: the left-most entry is the client's own writing
    forged = _scope(PROXY, _xff(b"10.9.9.9, 10.5.5.5"))
    assert key(forged) == "10.5.5.5"
    for fake in (b"10.1.1.1", b"10.2.2.2"):
        assert key(_scope(PROXY, _xff(fake + b", 10.5.5.5"))) == "10.5.5.5"


def test_the_rfc_7239_forwarded_header() -> None:
    key = forwarded_ip(header="forwarded")
    header = b'for="_gazonk", For="[2001:db8:cafe::17]:4711", for=192.0.2.60;proto=http;by=x'
    assert key(_scope(PROXY, (b"forwarded", header))) == "192.0.2.60"
    two = forwarded_ip(2, header="forwarded")
    assert two(_scope(PROXY, (b"forwarded", header))) == "2001:db8:cafe::/64"
    three = forwarded_ip(3, header="forwarded")
    assert three(_scope(PROXY, (b"forwarded", header))) == "_gazonk"
    # what the client wrote cannot swallow what our proxy appended (an unclosed quote)
    forged = (b"forwarded", b'for="6.6.6.6, for=198.51.100.1')
    appended = (b"forwarded", b"for=198.51.100.1")
    assert key(_scope(PROXY, forged, appended)) == "198.51.100.1"
    assert key(_scope(PUBLIC, appended)) == PUBLIC[0]  # not from our proxy: ignored
    assert key(_scope(PROXY, _xff(b"6.6.6.6"))) == PROXY[0]  # the other header is not read


def test_x_real_ip_only_from_a_proxy() -> None:
    key = forwarded_ip(header="x-real-ip")
    assert key(_scope(PROXY, (b"x-real-ip", b" 198.51.100.7 "))) == "198.51.100.7"
    assert key(_scope(PUBLIC, (b"x-real-ip", b"198.51.100.7"))) == PUBLIC[0]
    assert key(_scope(PROXY)) == PROXY[0]
    assert key(_scope(PROXY, (b"x-real-ip", b"not an address at all"))) == UNKNOWN_CLIENT


# -- bounded work ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "header"),
    [
        (lambda: forwarded_ip(trusted_hops=1), b"x-forwarded-for"),
        (lambda: forwarded_ip(trusted_proxies=["10.0.0.0/8"]), b"x-forwarded-for"),
        (lambda: forwarded_ip(header="forwarded"), b"forwarded"),
    ],
    ids=["hops", "proxies", "forwarded"],
)
def test_a_huge_forwarding_header_is_read_only_as_far_as_needed(
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[], Callable[[Mapping[str, Any]], str]],
    header: bytes,
) -> None:
    parsed: list[str] = []
    original = _client_keys._address

    def counting(text: str) -> Any:
        parsed.append(text)
        return original(text)

    monkeypatch.setattr(_client_keys, "_address", counting)
    entry = b"for=10.0.0.7" if header == b"forwarded" else b"10.0.0.7"
    big = b", ".join([entry] * 6_000)  # ~64 KB, every entry trusted-looking
    key = make()
    assert key(_scope(PROXY, (header, big))) == "10.0.0.7"
    assert len(parsed) <= MAX_CHAIN + 2  # the peer, at most MAX_CHAIN entries, the result
    parsed.clear()
    assert key(_scope(PROXY, (header, big + b", " + entry.replace(b"10.0.0.7", b"6.6.6.6")))) in (
        "6.6.6.6",
    )
    assert len(parsed) <= 3
