"""What the review login knows of a request beyond its body: the client's address (for
the failed-login limits) and whether it came over https (for the cookie's Secure flag),
read from X-Forwarded-For / X-Forwarded-Proto only when the peer is a trusted proxy.

The rule for Secure: the cookie is Secure when LOOKOUT_COOKIE_SECURE is true, or the
request reached this service over https, or a trusted proxy (LOOKOUT_REVIEW_TRUSTED_PROXIES)
says in X-Forwarded-Proto that the client used https. Forwarded headers from any other peer
are ignored: a client could otherwise pick the address its failed logins count against.
(uvicorn, which serves this app, already applies X-Forwarded-* from the addresses in its
FORWARDED_ALLOW_IPS, 127.0.0.1 by default; what it rewrote is what this module sees as the
peer and scheme.)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fastapi import Request

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[_Network, ...]:
    nets = []
    for item in text.split(","):
        item = item.strip()
        if item:
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"LOOKOUT_REVIEW_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR") from None
    return tuple(nets)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class Origin:
    address: str
    https: bool


@dataclass(frozen=True)
class Proxies:
    trusted: tuple[_Network, ...] = ()

    def _trusts(self, host: str) -> bool:
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.trusted)

    def origin(self, request: Request) -> Origin:
        peer = request.client.host if request.client else ""
        https = request.url.scheme == "https"
        if not self._trusts(peer):
            return Origin(peer, https)
        # The nearest address a trusted proxy did not add: walk X-Forwarded-For from the right.
        address = peer
        for hop in reversed([h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]):
            address = hop
            if not self._trusts(hop):
                break
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return Origin(address[:64], https or proto == "https")
