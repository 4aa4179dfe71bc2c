"""Who a request comes from, for the per-client request rate (GEO_ASSETS_MAP_RATE).

Behind the sign-in proxy (oauth2-proxy, deploy/helm/oauth2-proxy-map.yaml) every request's peer is
the proxy, so keying by the peer would make one limit for everybody. oauth2-proxy names the
signed-in user in `X-Forwarded-User` (its `pass_user_headers`; it drops any value the browser sent).
That header is believed only from a peer listed in GEO_ASSETS_MAP_TRUSTED_PROXIES: addresses or
networks, comma-separated, or `*` for every peer where the network admits nothing but the proxy
(the cluster's NetworkPolicy). By default no peer is trusted and the header is ignored, so a client
cannot choose its own key by sending it. The peer is the TCP peer: the server ignores
X-Forwarded-For (uvicorn's proxy_headers off), which would otherwise let a client pose as the proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from geo_assets.settings import by_name

TRUSTED_PROXIES_ENV = "GEO_ASSETS_MAP_TRUSTED_PROXIES"
USER_HEADER = "X-Forwarded-User"
MAX_USER = 256  # characters of a user name kept in a key: a bound on what one header can cost


class Clients:
    """The rate limit's key of a request: its signed-in user through a trusted proxy, else its peer."""

    def __init__(self, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None) -> None:
        self.trusted = trusted  # None: every peer is the proxy

    def trusts(self, peer: str | None) -> bool:
        if self.trusted is None:
            return peer is not None
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:  # no address (a Unix socket): not a proxy
            return False
        return any(address in network for network in self.trusted)

    def key(self, peer: str | None, headers: Mapping[str, str]) -> str:
        user = (headers.get(USER_HEADER) or "").strip()
        if user and self.trusts(peer):
            return "user:" + user[:MAX_USER]
        return "peer:" + (peer or "-")


def from_env() -> Clients:
    raw = by_name(TRUSTED_PROXIES_ENV).raw() or ""  # declared in geo_assets/settings.py
    if raw == "*":
        return Clients(None)
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{TRUSTED_PROXIES_ENV}={raw!r}: {item!r} is not an address or a network; expected "
                "the sign-in proxy's addresses or networks, comma-separated (10.0.0.5, 10.8.0.0/14), "
                "or * for every peer"
            ) from None
    return Clients(tuple(networks))
