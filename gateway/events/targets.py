"""Where webhooks may go. A target must be `https://` on a public address; the embedded
dev mode also allows loopback over `http://`, and an operator may allow networks of its
own (`BROEN_GATEWAY_WEBHOOK_ALLOWED_NETWORKS`, e.g. a receiver inside the same private
network). The check runs when a subscription is made and again on every connection, on
the address the name resolves to then, so a name re-pointed at an internal address (DNS
rebinding) is refused too. Redirects are never followed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.problems import ValidationProblem

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NAMES = ("localhost",)


class TargetRefused(ValidationProblem):
    type = "webhook-target-refused"
    title = "The webhook target is not allowed"


@dataclass(frozen=True)
class TargetRules:
    allowed_networks: tuple[IPNetwork, ...] = ()
    dev: bool = False

    def allows_address(self, address: IPAddress) -> bool:
        if any(address in network for network in self.allowed_networks):
            return True
        if address.is_loopback:
            return self.dev
        return address.is_global

    def _allows_plain_http(self, address: IPAddress) -> bool:
        """Only where nothing crosses a network the operator does not control."""
        if any(address in network for network in self.allowed_networks):
            return True
        return self.dev and address.is_loopback

    def check_url(self, url: str) -> str:
        """The URL, if a subscription may target it; else a 422 problem saying why."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("https", "http") or not host:
            raise TargetRefused("The URL must be an absolute https:// URL.", errors=_field())
        if parts.username or parts.password:
            raise TargetRefused("The URL must not carry credentials.", errors=_field())
        literal = _literal_address(host)
        if literal is None and (host in LOOPBACK_NAMES or host.endswith(".localhost")):
            literal = ipaddress.ip_address("127.0.0.1")
        if literal is not None and not self.allows_address(literal):
            raise TargetRefused(
                "The URL points at a loopback, private or reserved address; webhooks go to "
                "public addresses only.",
                errors=_field(),
            )
        if parts.scheme == "http" and (literal is None or not self._allows_plain_http(literal)):
            raise TargetRefused("The URL must use https://.", errors=_field())
        return url


def _field() -> list[dict[str, Any]]:
    return [{"field": "url", "location": ["body", "url"], "code": "refused"}]


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """Resolves the name itself, refuses if any address it resolves to is not allowed,
    and connects to the checked address (TLS still verifies the name)."""

    def __init__(self, rules: TargetRules) -> None:
        self.rules = rules
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port)
        if not addresses or not all(self.rules.allows_address(a) for a in addresses):
            raise httpcore.ConnectError("the target's address is not allowed")
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int) -> Sequence[IPAddress]:
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]


def webhook_client(rules: TargetRules, *, timeout_seconds: float) -> httpx.AsyncClient:
    """The client webhooks are sent with: checked addresses, no redirects, no proxies from
    the environment, a timeout on everything."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend; its pool is replaced by one with the checked network.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=CheckedNetwork(rules),
    )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
    )
