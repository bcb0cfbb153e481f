"""Trusted proxies: which ``X-Forwarded-For`` to believe, and the client address it gives.

Anyone can send ``X-Forwarded-For``; only a proxy we run appends to it
honestly. So the header counts only when the socket peer is a trusted proxy,
and it is read from the right (the hop nearest to us) leftwards, skipping
trusted proxies: the first address that is not one is the client. Entries
further left were written by the client or by proxies we do not know.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from wirehub.exceptions import ConfigError

__all__ = ["TrustedProxies", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> IPAddress | None:
    """An address from a socket or a header entry (``[v6]:port`` and ``v4:port`` allowed)."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:192.0.2.1 from a dual-stack socket
    return address


class TrustedProxies:
    """Addresses and networks (``"10.0.0.0/8"``, ``"127.0.0.1"``, ``"::1"``) of our proxies."""

    def __init__(self, proxies: Iterable[str]) -> None:
        if isinstance(proxies, str):
            proxies = [proxies]
        self.networks: list[IPNetwork] = []
        for proxy in proxies:
            try:
                self.networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"not an IP address or network: {proxy!r}") from None

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"

    def __contains__(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client_ip(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The client's address, given the socket peer and the ``X-Forwarded-For`` values.

        ``forwarded_for`` holds the header's values in the order received
        (several header lines are one comma-separated list). Returns the peer
        itself unless it is trusted; never an address that is not valid.
        """
        nearest = parse_ip(peer) if peer is not None else None
        if nearest is None or nearest not in self:
            return str(nearest) if nearest is not None else None
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = parse_ip(hop)
            if address is None:  # garbage: stop at the last hop we could vouch for
                break
            nearest = address
            if address not in self:
                break
        return str(nearest)
