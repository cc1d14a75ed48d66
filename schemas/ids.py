"""Identifier shapes used by QStash (``msg_`` + base58), made from random bytes."""

import secrets

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)) or _ALPHABET[0]


def message_id() -> str:
    return "msg_" + _base58(secrets.token_bytes(18))


def request_id() -> str:
    return "req_" + _base58(secrets.token_bytes(12))


def jwt_id() -> str:
    return "jwt_" + _base58(secrets.token_bytes(21))[:28]


def schedule_id() -> str:
    return "scd_" + _base58(secrets.token_bytes(18))


def derived_message_id(digest: bytes) -> str:
    """A message id made from ``digest`` (not random): the same input always gives the same id."""
    return "msg_" + _base58(digest[:18])
