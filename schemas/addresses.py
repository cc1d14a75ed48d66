"""Which addresses kafstash may connect to for callers (the SSRF rules), pure and shared.

The API checks a destination at publish time and the sender checks every address it is about to
connect to at every attempt; both ask :func:`check_address`. Refused by default: loopback,
private (RFC 1918, ULA), link-local (169.254/16 with the cloud metadata address, fe80::/10),
CGNAT 100.64/10, multicast, unspecified, reserved and documentation ranges, and the same
addresses wrapped in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, NAT64). An operator can allow
private addresses altogether (``KAFSTASH_ALLOW_PRIVATE_DESTINATIONS``, dev mode) or only some
networks and host names (``KAFSTASH_DESTINATION_ALLOWLIST``).

Before any of that, :func:`wire_host` decides whether a URL's host is a host at all: an IP
literal or a host name a resolver can look up, internationalised names as their punycode.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import idna

__all__ = ["Address", "Allowlist", "Network", "check_address", "check_host", "wire_host"]

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_CGNAT = IPv4Network("100.64.0.0/10")
_NAT64 = IPv6Network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Networks and host names allowed even when private (the operator's explicit exceptions)."""

    networks: frozenset[Network] = frozenset()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str) -> Allowlist:
        """Comma-separated CIDRs, addresses or host names; raises ValueError on a bad entry."""
        networks: set[Network] = set()
        hosts: set[str] = set()
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            try:
                networks.add(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if "/" in name or not all(p and _is_label(p) for p in name.split(".")):
                raise ValueError(f"not a CIDR, address or host name: {item!r}")
            hosts.add(name)
        return cls(frozenset(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts


def _is_label(label: str) -> bool:
    return len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label)


_MAX_NAME = 253  # RFC 1035: 255 octets on the wire, 253 characters written out
_MAX_LABEL = 63
_LABEL = re.compile(r"[a-z0-9_-]+")  # LDH, plus "_" (compose/k8s service names in dev)
# A last label that is a number makes the whole host an IPv4 address to WHATWG URL parsers and
# to inet_aton ("1.2.3", "0x7f.1" = 127.0.0.1): it must then be the plain dotted-quad form.
_NUMERIC = re.compile(r"[0-9]+|0x[0-9a-f]*")


@lru_cache(maxsize=4096)  # a pure check of a name every publish and attempt repeats
def wire_host(host: str) -> str:
    """The host as a resolver and the HTTP client will see it; ValueError says why it is none.

    ``host`` is a URL's host, lower-cased, IPv6 brackets removed (``urlsplit().hostname``).
    Accepted: an IPv4 dotted quad, an IPv6 address, or a host name of 1-63-character labels of
    letters, digits, ``-`` (not first or last) and ``_``, at most 253 characters, one trailing
    dot allowed. A name with non-ASCII letters is an IDN: it is turned into punycode as
    browsers do (UTS #46, the same conversion aiohttp's URL library applies when it connects),
    and that form is what is checked and resolved. Refused: percent-encoded bytes (also IPv6
    zone ids, which mean nothing off this machine), empty labels, bad characters, over-long
    names and numeric hosts that are not a dotted quad.
    """
    if "%" in host:
        raise ValueError(f"{host!r} is not a valid host: percent-encoded bytes are not allowed")
    if ":" in host:  # only an IPv6 literal has a colon here
        try:
            IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
        return host
    name = host
    if not host.isascii():
        try:
            name = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(
                f"{host!r} is not a valid internationalised host name: {exc}"
            ) from None
    bare = name.removesuffix(".")
    if not bare:
        raise ValueError("the host name is empty")
    if len(bare) > _MAX_NAME:
        raise ValueError(f"the host name is longer than {_MAX_NAME} characters")
    labels = bare.split(".")
    if problem := next(filter(None, map(_label_problem, labels)), None):
        raise ValueError(f"{host!r} is not a valid host name: {problem}")
    if _NUMERIC.fullmatch(labels[-1]):
        try:
            IPv4Address(bare)
        except ValueError:
            raise ValueError(
                f"{host!r} is not a valid host: a host whose last label is a number must be an "
                f"IPv4 address (four decimal numbers 0-255, like 192.0.2.1)"
            ) from None
    return name


def _label_problem(label: str) -> str | None:
    if not label:
        return "it has an empty label"
    if len(label) > _MAX_LABEL:
        return f"a label is longer than {_MAX_LABEL} characters"
    if not _LABEL.fullmatch(label):
        return "only letters, digits, '-' and '_' are allowed"
    if label.startswith("-") or label.endswith("-"):
        return "a label begins or ends with '-'"
    return None


def _as_address(ip: Address | str) -> Address:
    if isinstance(ip, str):
        return ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    return ip


def _embedded_ipv4(addr: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


# The first matching rule names the refusal (order matters: 127.0.0.1 is loopback, not private).
_RULES: tuple[tuple[str, Callable[[Address], bool]], ...] = (
    ("unspecified address", lambda a: a.is_unspecified),
    ("loopback address", lambda a: a.is_loopback),
    ("link-local address", lambda a: a.is_link_local),
    ("multicast address", lambda a: a.is_multicast),
    ("shared (CGNAT) address", lambda a: isinstance(a, IPv4Address) and a in _CGNAT),
    ("site-local address", lambda a: isinstance(a, IPv6Address) and a.is_site_local),
    ("reserved address", lambda a: a.is_reserved),
    ("private address", lambda a: a.is_private),
    ("non-public address", lambda a: not a.is_global),
)


def _kind(addr: Address) -> str | None:
    """Why ``addr`` is not a public unicast address, or None when it is one."""
    return next((name for name, matches in _RULES if matches(addr)), None)


def check_address(
    ip: Address | str, *, allow_private: bool, allowlist: frozenset[Network] = frozenset()
) -> str | None:
    """None when kafstash may connect to ``ip``, else the reason it may not.

    ``allow_private`` turns the rules off; an address inside one of ``allowlist``'s networks is
    allowed whatever its kind. An IPv6 form that embeds an IPv4 address is judged by both.
    """
    try:
        addr = _as_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    if allow_private:
        return None
    candidates: list[Address] = [addr]
    if isinstance(addr, IPv6Address) and (inner := _embedded_ipv4(addr)) is not None:
        # A mapped address *is* its IPv4 address on the wire; other forms must pass as both.
        candidates = [inner] if addr.ipv4_mapped is not None else [addr, inner]
    if any(a in net for a in candidates for net in allowlist if a.version == net.version):
        return None
    for a in candidates:
        if (kind := _kind(a)) is not None:
            shown = str(addr) if a is addr else f"{addr} (IPv4 {a})"
            return f"{kind} {shown}"
    return None


def check_host(
    host: str, addresses: list[str], *, allow_private: bool, allowlist: Allowlist
) -> str | None:
    """None when every address ``host`` resolved to may be used, else the first refusal.

    A host name on the allowlist is allowed whatever it resolves to; one refused address refuses
    the whole destination (a resolver that mixes public and private answers is not trusted).
    """
    if allow_private or allowlist.allows_host(host):
        return None
    if not addresses:
        return f"{host} resolved to no address"
    for ip in addresses:
        reason = check_address(ip, allow_private=False, allowlist=allowlist.networks)
        if reason is not None:
            return reason if ip == host else f"{host} resolves to {reason}"
    return None
