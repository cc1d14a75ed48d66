"""The public surface is pinned (httpx's tests/test_exported_members.py): adding or removing a
name is a deliberate change to this file, the CHANGELOG and the README."""

import pytest

import kafstash
import kafstash.producers.client


def test_client_package_exports_exactly_its_public_names() -> None:
    exported = kafstash.producers.client.__all__
    public = [name for name in vars(kafstash.producers.client) if not name.startswith("_")]
    # Submodules imported by the package (receiver) are not part of the API.
    public = [name for name in public if name != "receiver"]
    assert exported == sorted(public, key=str.casefold)


def test_kafstash_re_exports() -> None:
    assert kafstash.__all__ == [
        "ApiError",
        "AsyncClient",
        "Client",
        "KafstashError",
        "Message",
        "NotFound",
        "PublishResult",
        "RateLimitError",
        "Receiver",
        "Schedule",
        "SignatureError",
        "Unauthorized",
        "__version__",
    ]
    for name in kafstash.__all__:
        assert getattr(kafstash, name) is not None, name
        assert name in dir(kafstash)
    for name in set(kafstash.__all__) - {"__version__"}:
        assert getattr(kafstash, name) is getattr(kafstash.producers.client, name)


def test_from_kafstash_import() -> None:
    from kafstash import AsyncClient, Client, Receiver  # noqa: PLC0415

    assert (Client.__name__, AsyncClient.__name__, Receiver.__name__) == (
        "Client",
        "AsyncClient",
        "Receiver",
    )


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="Nope"):
        kafstash.Nope  # noqa: B018
