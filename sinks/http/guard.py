"""The SSRF guard at every delivery attempt: aiohttp connects only to addresses we checked.

:class:`GuardedResolver` wraps aiohttp's default resolver. It resolves the destination's host,
runs every address through :func:`kafstash.schemas.addresses.check_address` and hands aiohttp only
those checked addresses, so the connection goes to exactly what was checked (no second lookup,
no DNS-rebinding window). aiohttp skips resolvers for IP-literal hosts, so the sender checks
those itself with :func:`refusal_for_url` before the request. A refusal surfaces as
:class:`DestinationRefused` (an ``OSError``, which aiohttp wraps in ``ClientConnectorError``);
:func:`refusal_of` finds it again.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from kafstash.schemas.addresses import Allowlist, check_address, check_host

__all__ = [
    "DestinationRefused",
    "GuardedResolver",
    "check_address",
    "refusal_for_url",
    "refusal_of",
]


class DestinationRefused(OSError):
    """The destination resolves to an address kafstash may not connect to."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuardedResolver(AbstractResolver):
    def __init__(
        self,
        *,
        allow_private: bool,
        allowlist: Allowlist,
        inner: AbstractResolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._allowlist = allowlist
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        reason = check_host(
            host,
            [r["host"] for r in results],
            allow_private=self._allow_private,
            allowlist=self._allowlist,
        )
        if reason is not None:
            raise DestinationRefused(reason)
        return results

    async def close(self) -> None:
        await self._inner.close()


# The answer depends on nothing but the arguments, and a sender asks it at every attempt for the
# few destinations it delivers to: parsing the URL and the address was 5% of its CPU.
@functools.lru_cache(maxsize=4096)
def refusal_for_url(url: str, *, allow_private: bool, allowlist: Allowlist) -> str | None:
    """The refusal for an IP-literal destination (which never reaches a resolver), else None."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None  # aiohttp refuses the URL itself
    if not host:
        return None
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # a name: GuardedResolver checks what it resolves to
    return check_address(host, allow_private=allow_private, allowlist=allowlist.networks)


def refusal_of(exc: BaseException) -> str | None:
    """The guard's reason if ``exc`` (or what it wraps) is a refusal, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DestinationRefused):
            return seen.reason
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(
            seen.os_error, DestinationRefused
        ):
            return seen.os_error.reason
        seen = seen.__cause__
    return None
