"""The security settings: destination allowlist and rate limit, read from the environment."""

from __future__ import annotations

import ipaddress

import pytest

from kafstash.config import ConfigError, Settings
from kafstash.schemas.addresses import Allowlist


def _settings(**env: str) -> Settings:
    return Settings.from_env({"KAFSTASH_DEV": "true", **env})


def test_defaults_are_closed_outside_dev_and_unlimited() -> None:
    prod = Settings.from_env({"KAFSTASH_USERS": "[]"})

    assert prod.allow_private_destinations is False
    assert prod.destination_allowlist == Allowlist()
    assert prod.rate_limit == 0
    assert _settings().allow_private_destinations is True


def test_allowlist_is_parsed() -> None:
    s = _settings(KAFSTASH_DESTINATION_ALLOWLIST="10.0.0.0/8,hooks.internal")

    assert s.destination_allowlist.networks == frozenset({ipaddress.ip_network("10.0.0.0/8")})
    assert s.destination_allowlist.hosts == frozenset({"hooks.internal"})


def test_bad_allowlist_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KAFSTASH_DESTINATION_ALLOWLIST"):
        _settings(KAFSTASH_DESTINATION_ALLOWLIST="10.0.0.0/40")


def test_rate_and_burst() -> None:
    assert (_settings(KAFSTASH_RATE_LIMIT="2.5").rate_burst, _settings().rate_burst) == (3, 1)
    s = _settings(KAFSTASH_RATE_LIMIT="10", KAFSTASH_RATE_BURST="50")
    assert (s.rate_limit, s.rate_burst) == (10.0, 50)


@pytest.mark.parametrize(
    "env",
    [
        {"KAFSTASH_RATE_LIMIT": "fast"},
        {"KAFSTASH_RATE_LIMIT": "-1"},
        {"KAFSTASH_RATE_LIMIT": "nan"},
        {"KAFSTASH_RATE_LIMIT": "inf"},
        {"KAFSTASH_RATE_LIMIT": "5", "KAFSTASH_RATE_BURST": "0"},
    ],
)
def test_bad_rate_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="KAFSTASH_RATE"):
        _settings(**env)
