"""Identifier shapes used by QStash (``msg_`` + base58), made from random bytes."""

import hashlib
import secrets

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


# Two digits per division: half the big-int divisions of a digit at a time (two ids per publish
# were 4% of the API's samples).
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _base58(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    if not n:
        return _ALPHABET[0]
    out = []
    while n:
        n, r = divmod(n, 3364)
        out.append(_PAIRS[r])
    digits = "".join(reversed(out))
    return digits[1:] if digits[0] == _ALPHABET[0] else digits  # the top pair's leading zero


def message_id() -> str:
    return "msg_" + _base58(secrets.token_bytes(18))


def request_id() -> str:
    return "req_" + _base58(secrets.token_bytes(12))


def jwt_id() -> str:
    return "jwt_" + _base58(secrets.token_bytes(21))[:28]


def derived_message_id(*parts: str) -> str:
    """A message id fixed by ``parts``: a replayed producer makes the same id (idempotence)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return "msg_" + _base58(digest[:18])


def signing_key() -> str:
    """A fresh signing key: ``sig_`` + 28 base58 characters (32 in all, QStash's shape)."""
    return "sig_" + _base58(secrets.token_bytes(24))[:28]


def schedule_id() -> str:
    return "scd_" + _base58(secrets.token_bytes(18))
