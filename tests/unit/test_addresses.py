"""The SSRF address rules shared by the API (publish time) and the sender (every attempt)."""

from __future__ import annotations

import ipaddress

import pytest

from kafstash.schemas.addresses import Allowlist, check_address, check_host

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.10": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.2.1": "private",  # documentation range
    "198.18.0.1": "private",  # benchmarking range
    "fec0::1": "site-local",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "::ffff:100.64.0.1": "CGNAT",
    "2002:7f00:1::": "loopback",  # 6to4 wrapping 127.0.0.1
    "2002:a9fe:a9fe::1": "link-local",  # 6to4 wrapping 169.254.169.254
    "64:ff9b::7f00:1": "address",  # NAT64 wrapping 127.0.0.1
    "2001:db8::1": "address",  # documentation range
}


@pytest.mark.parametrize(("ip", "kind"), REFUSED.items())
def test_non_public_addresses_are_refused(ip: str, kind: str) -> None:
    reason = check_address(ip, allow_private=False)

    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize(
    "ip", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"]
)
def test_public_addresses_pass(ip: str) -> None:
    assert check_address(ip, allow_private=False) is None
    assert check_address(ipaddress.ip_address(ip), allow_private=False) is None


@pytest.mark.parametrize("ip", list(REFUSED))
def test_allow_private_turns_the_rules_off(ip: str) -> None:
    assert check_address(ip, allow_private=True) is None


def test_the_allowlist_admits_its_networks_only() -> None:
    allow = Allowlist.parse("127.0.0.1/32, 10.0.0.0/8").networks

    assert check_address("127.0.0.1", allow_private=False, allowlist=allow) is None
    assert check_address("10.200.0.1", allow_private=False, allowlist=allow) is None
    assert check_address("::ffff:127.0.0.1", allow_private=False, allowlist=allow) is None
    assert check_address("127.0.0.2", allow_private=False, allowlist=allow) is not None
    assert check_address("169.254.169.254", allow_private=False, allowlist=allow) is not None
    assert check_address("::1", allow_private=False, allowlist=allow) is not None


def test_not_an_address_is_refused() -> None:
    assert check_address("localhost", allow_private=False) is not None


def test_one_refused_address_refuses_the_host() -> None:
    reason = check_host(
        "mixed.example", ["93.184.216.34", "127.0.0.1"], allow_private=False, allowlist=Allowlist()
    )

    assert reason == "mixed.example resolves to loopback address 127.0.0.1"
    assert (
        check_host("pub.example", ["93.184.216.34"], allow_private=False, allowlist=Allowlist())
        is None
    )
    assert check_host("none.example", [], allow_private=False, allowlist=Allowlist()) is not None


def test_allowlisted_host_names_pass_whatever_they_resolve_to() -> None:
    allow = Allowlist.parse("Hooks.Internal., 192.168.0.0/16")

    assert check_host("hooks.internal", ["10.0.0.5"], allow_private=False, allowlist=allow) is None
    assert not check_host("other.internal", ["192.168.3.4"], allow_private=False, allowlist=allow)
    assert check_host("other.internal", ["10.0.0.5"], allow_private=False, allowlist=allow)


def test_allowlist_parsing() -> None:
    parsed = Allowlist.parse(" 10.0.0.0/8 ,, ::1, fd00::/8, svc.local ,")

    assert parsed.networks == frozenset(
        ipaddress.ip_network(n) for n in ["10.0.0.0/8", "::1/128", "fd00::/8"]
    )
    assert parsed.hosts == frozenset({"svc.local"})
    assert Allowlist.parse("") == Allowlist()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "http://x", "a b", "x/y", "exa$mple.com"])
def test_allowlist_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not a CIDR"):
        Allowlist.parse(bad)
