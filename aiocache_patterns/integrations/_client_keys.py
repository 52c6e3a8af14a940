"""Whom to count: key functions that name the client of an HTTP request.

Re-exported by ``aiocache_patterns.integrations.asgi``; see
docs/rate-limiting.md and docs/security.md. Three rules:

* **Only what a trusted peer added is trusted.** A forwarding header
  (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) is read only when the
  connection's peer is one of your proxies; a client that connects directly
  and sends one is keyed by its own address.
* **IPv6 clients are grouped by prefix** (/64 by default): every IPv6 client
  controls at least a /64, so keying on the full address gives each client
  2**64 fresh quotas.
* **Bounded work.** A forwarding header is read from the right, one entry at
  a time, only as far as needed and never more than ``MAX_CHAIN``
  entries: a 64 KB header costs what a short one does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeAlias

from .._validate import positive_int

__all__ = [
    "DEFAULT_TRUSTED_PROXIES",
    "MAX_CHAIN",
    "UNKNOWN_CLIENT",
    "ForwardingHeader",
    "client_ip",
    "forwarded_ip",
    "peer_in",
    "peer_ip",
]

#: The key of every request whose client address is unknown (no ``scope["client"]``,
#: e.g. a Unix socket, or a forwarding entry that is not an address): they share
#: one quota rather than escape the limit.
UNKNOWN_CLIENT: Final = "unknown"

#: Whose forwarding headers ``forwarded_ip`` reads when you name no proxies:
#: loopback and private networks (a reverse proxy on the same host or network).
#: A peer without an address (a Unix socket) counts as one of them.
DEFAULT_TRUSTED_PROXIES: Final = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)

#: Forwarding entries read at most, from the right (and the largest ``trusted_hops``).
MAX_CHAIN: Final = 32

#: The forwarding headers ``forwarded_ip`` can read.
ForwardingHeader = Literal["x-forwarded-for", "forwarded", "x-real-ip"]

_HEADERS: Final[tuple[ForwardingHeader, ...]] = ("x-forwarded-for", "forwarded", "x-real-ip")
#: A forwarding entry that is not an address but may still name a client (an RFC 7239
#: obfuscated identifier such as ``_hidden``); anything else is UNKNOWN_CLIENT.
_TOKEN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")

_Network: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
_Address: TypeAlias = "ipaddress.IPv4Address | ipaddress.IPv6Address"
KeyFunction: TypeAlias = Callable[[Mapping[str, Any]], str]


# -- the peer ------------------------------------------------------------------------


def client_ip(scope: Mapping[str, Any]) -> str:
    """The connection's peer address, IPv6 grouped by /64: the default key.

    Reads ``scope["client"]`` only, never a header, so a client cannot pick its
    own key by sending ``X-Forwarded-For``. Behind a reverse proxy every request
    comes from the proxy: use
    [`forwarded_ip`][aiocache_patterns.integrations.asgi.forwarded_ip] there.
    Accepts an ASGI scope or a Starlette ``Request`` (a mapping over its scope).

    An IPv4 address is keyed as itself (``::ffff:10.0.0.1`` is ``10.0.0.1``); an
    IPv6 address by its /64 network (``2001:db8:1:2::/64``), since one client
    owns at least that much. Other prefix lengths:
    [`peer_ip`][aiocache_patterns.integrations.asgi.peer_ip]. Without a peer
    address, the key is
    `UNKNOWN_CLIENT`.
    """
    return _peer_key(scope, 32, 64)


def peer_ip(*, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> KeyFunction:
    """A key function like [`client_ip`][aiocache_patterns.integrations.asgi.client_ip],
    grouping addresses by other prefixes (``peer_ip(ipv6_prefix=56)``: one
    quota per /56)."""
    v4, v6 = _prefixes(ipv4_prefix, ipv6_prefix)

    def peer(scope: Mapping[str, Any]) -> str:
        return _peer_key(scope, v4, v6)

    return peer


def peer_in(networks: Iterable[str]) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate of a request: whether the connection's peer is in ``networks``.

    For ``skip=`` (internal callers, the load balancer's health checks): it
    reads the socket's peer address (``scope["client"]``) only, never a
    header, so a client cannot claim to be inside by sending
    ``X-Forwarded-For``. A peer without an address (a Unix socket) is outside.

    >>> RateLimitMiddleware(app, limiter, skip=peer_in(["10.0.0.0/8"]))  # doctest: +SKIP
    """
    inside = _networks(networks, "networks")

    def peer_is_inside(scope: Mapping[str, Any]) -> bool:
        peer = _peer(scope)
        return peer is not None and _inside(_address(peer), inside)

    return peer_is_inside


def _peer(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    if not client or not client[0]:
        return None
    return str(client[0])


def _peer_key(scope: Mapping[str, Any], v4: int, v6: int) -> str:
    peer = _peer(scope)
    if peer is None:
        return UNKNOWN_CLIENT
    address = _address(peer)
    return _grouped(address, v4, v6) if address is not None else peer.strip() or UNKNOWN_CLIENT


# -- behind proxies ----------------------------------------------------------------------


def forwarded_ip(
    trusted_hops: int | None = None,
    *,
    trusted_proxies: Iterable[str] | None = None,
    header: ForwardingHeader = "x-forwarded-for",
    ipv4_prefix: int = 32,
    ipv6_prefix: int = 64,
) -> KeyFunction:
    """A key function for an app behind reverse proxies: the client as your proxies saw it.

    A forwarding header is read only if the connection's peer is one of your
    proxies (in ``trusted_proxies``; by default
    `DEFAULT_TRUSTED_PROXIES`,
    loopback and private networks, and a Unix socket); any other peer connected
    directly and is the client, whatever it sends. Of the header, only what your
    proxies appended is trusted. Every proxy *appends* the address it received the
    request from, so the right-hand end was written by your proxies and the rest is
    whatever the client sent:

    ``trusted_hops=N`` (default 1)
        N reverse proxies stand in front of the app, each appending. Of the chain
        header + peer, the peer and the N - 1 entries before it are proxies; the
        entry before those is the client (the left-most entry when the chain is
        shorter: the address your first proxy saw).
    ``trusted_proxies=[...]`` alone
        Walk the chain from the peer leftwards, skipping addresses inside these
        networks; the first one outside is the client. If every entry is inside
        them, the client is the address the peer saw (the right-most entry): the
        entries further left may have been written by a client inside your networks.

    ``header``: ``"x-forwarded-for"`` (the default), ``"forwarded"`` (RFC 7239,
    its ``for=`` parameters) or ``"x-real-ip"`` (one address, set by your proxy;
    only the peer is checked). Read the one your proxy writes, and make it
    overwrite or append to what the client sent. At most
    `MAX_CHAIN` entries are
    read, from the right. The address found is grouped like
    [`peer_ip`][aiocache_patterns.integrations.asgi.peer_ip]'s.
    """
    if header not in _HEADERS:
        raise ValueError(f"header must be one of {', '.join(_HEADERS)}; got {header!r}")
    hops = None
    if trusted_hops is not None or trusted_proxies is None:
        hops = positive_int(1 if trusted_hops is None else trusted_hops, "trusted_hops")
        if hops > MAX_CHAIN:
            raise ValueError(f"trusted_hops must be at most {MAX_CHAIN}, got {hops}")
    networks = _networks(DEFAULT_TRUSTED_PROXIES if trusted_proxies is None else trusted_proxies)
    name = header.encode()
    v4, v6 = _prefixes(ipv4_prefix, ipv6_prefix)

    def by_forwarding(scope: Mapping[str, Any]) -> str:
        peer = _peer(scope)
        if peer is not None and not _inside(_address(peer), networks):
            return _peer_key(scope, v4, v6)  # not a proxy of ours: it is the client
        found = _client_of(scope, name, networks, hops)
        if found is None:
            return _peer_key(scope, v4, v6)  # no header: the peer itself sent it
        address = _address(found)
        if address is None:
            return found if _TOKEN.fullmatch(found) else UNKNOWN_CLIENT
        return _grouped(address, v4, v6)

    return by_forwarding


def _client_of(
    scope: Mapping[str, Any], name: bytes, networks: tuple[_Network, ...], hops: int | None
) -> str | None:
    """The client's entry in the forwarding header (text), or None without one."""
    entries = _from_right(scope, name)
    if name == b"x-real-ip":
        return next(entries, None)
    rightmost = seen = None
    for passed, entry in enumerate(entries, start=1):
        rightmost = rightmost or entry
        seen = entry
        if hops is not None:
            if passed == hops:  # the peer is proxy N: this entry was written by proxy 1
                return entry
        elif not _inside(_address(entry), networks):
            return entry  # the first address none of our proxies accounts for
    # The chain ended first. By hops: a shorter chain, its left-most entry is what our
    # first proxy saw. By networks: every entry is ours; the ones left of the
    # right-most may have been written by a client inside our networks.
    return seen if hops is not None else rightmost


def _from_right(scope: Mapping[str, Any], name: bytes) -> Iterator[str]:
    """The header's entries, right to left, each parsed only when asked for."""
    lines = [value for key, value in scope.get("headers") or () if bytes(key).lower() == name]
    taken = 0
    for raw in reversed(lines):
        text = bytes(raw).decode("latin-1")
        if name == b"x-real-ip":
            if text.strip():
                yield text.strip()
            return
        end = len(text)
        while end > 0 and taken < MAX_CHAIN:
            start = text.rfind(",", 0, end)
            part = text[start + 1 : end]
            end = max(start, 0)
            if name == b"forwarded":
                part = _forwarded_for(part)
            part = part.strip()
            if part:
                taken += 1
                yield part
        if taken >= MAX_CHAIN:
            return


def _forwarded_for(element: str) -> str:
    """The ``for=`` value of one RFC 7239 ``Forwarded`` element (``""`` if none)."""
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == "for":
            return value.strip().strip('"')
    return ""


# -- addresses ---------------------------------------------------------------------------


def _address(text: str) -> _Address | None:
    """An address however it is spelt (``[v6]:port``, ``v4:port``, v4-mapped v6), or None."""
    host = text.strip()
    if host.startswith("["):  # "[2001:db8::1]:443"
        end = host.find("]")
        host = host[1:end] if end > 0 else host
    elif host.count(":") == 1:  # "203.0.113.7:51234"
        host = host.split(":", 1)[0]
    if len(host) > 45:  # longer than any address: do not hand it to the parser
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _grouped(ip: _Address, v4: int, v6: int) -> str:
    """The key of ``ip``: itself at a full prefix, else its network (``2001:db8::/64``)."""
    prefix = v4 if ip.version == 4 else v6
    if prefix == ip.max_prefixlen:
        return str(ip)
    return str(ipaddress.ip_network((ip, prefix), strict=False))


def _prefixes(ipv4_prefix: object, ipv6_prefix: object) -> tuple[int, int]:
    v4 = positive_int(ipv4_prefix, "ipv4_prefix")
    v6 = positive_int(ipv6_prefix, "ipv6_prefix")
    if v4 > 32:
        raise ValueError(f"ipv4_prefix must be at most 32, got {v4}")
    if v6 > 128:
        raise ValueError(f"ipv6_prefix must be at most 128, got {v6}")
    return v4, v6


def _networks(trusted: object, argname: str = "trusted_proxies") -> tuple[_Network, ...]:
    if isinstance(trusted, (str, bytes)) or not isinstance(trusted, Iterable):
        raise TypeError(f"{argname} must be a list of addresses or networks, e.g. ['10.0.0.0/8']")
    networks: list[_Network] = []
    for entry in trusted:
        if not isinstance(entry, str):
            raise TypeError(f"{argname} must contain str, not {type(entry).__name__}")
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{argname}: {entry!r} is not an IP address or network") from None
    if not networks:
        raise ValueError(f"{argname} must not be empty")
    return tuple(networks)


def _inside(ip: _Address | None, networks: tuple[_Network, ...]) -> bool:
    if ip is None:
        return False  # "unknown", garbage: not one of ours
    return any(ip in network for network in networks)
