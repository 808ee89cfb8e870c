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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

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


class AddressNotAllowed(OSError):
    pass


class CheckedResolver(AbstractResolver):
    """Resolves a target's name itself and refuses it if any address it resolves to is not
    allowed; the connection then goes to a checked address (TLS still verifies the name)."""

    def __init__(self, rules: TargetRules) -> None:
        self.rules = rules

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await _resolve(host, port)
        if not addresses or not all(self.rules.allows_address(a) for a in addresses):
            raise AddressNotAllowed("the target's address is not allowed")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class CheckedTransport(httpx.AsyncBaseTransport):
    """aiohttp asks no resolver about an address literal: those are checked here."""

    def __init__(self, rules: TargetRules, inner: httpx.AsyncBaseTransport) -> None:
        self.rules = rules
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        literal = _literal_address(request.url.host)
        if literal is not None and not self.rules.allows_address(literal):
            raise httpx.ConnectError("the target's address is not allowed", request=request)
        try:
            return await self.inner.handle_async_request(request)
        except httpx.TransportError as error:
            # Said plainly, not as the DNS failure or timeout aiohttp makes of it.
            cause: BaseException | None = error
            while cause is not None:
                if isinstance(cause, AddressNotAllowed):
                    raise httpx.ConnectError(str(cause), request=request) from None
                cause = cause.__cause__ or cause.__context__
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


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
    """The client webhooks are sent with: checked addresses on every connection (no DNS
    cache), no redirects, no proxies from the environment, a timeout on everything. aiohttp
    underneath, as for the gateway's upstreams (httpcore's pool costs more CPU than the
    request, PERFORMANCE.md)."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            resolver=CheckedResolver(rules),
            use_dns_cache=False,
            limit=limits.max_connections or 100,
            keepalive_timeout=5,
            ssl=httpx.create_ssl_context(),
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    transport = CheckedTransport(rules, AiohttpTransport(client=session, limits=limits))
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
    )
