"""Identifier shapes: QStash's ``msg_`` + base58 of random bytes, whatever the bytes."""

import secrets

from kafstash.schemas import ids

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _reference_base58(raw: bytes) -> str:
    """A digit per division, most significant first, no leading zeros (Bitcoin's alphabet)."""
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _ALPHABET[r] + out
    return out or _ALPHABET[0]


def test_base58_matches_the_digit_at_a_time_reference() -> None:
    edges = [b"", b"\x00", b"\x01", bytes([57]), bytes([58]), bytes([0, 0, 5]), b"\xff" * 18]
    # 58**k - 1 and 58**k: the top pair with and without its leading zero digit.
    powers = [(58**k + d).to_bytes(20, "big") for k in range(1, 25) for d in (-1, 0)]
    for raw in [*edges, *powers, *(secrets.token_bytes(18) for _ in range(5000))]:
        assert ids._base58(raw) == _reference_base58(raw)


def test_message_ids_have_qstashs_shape() -> None:
    for _ in range(1000):
        mid = ids.message_id()
        assert mid.startswith("msg_")
        assert set(mid[4:]) <= set(_ALPHABET)
        assert 20 <= len(mid) - 4 <= 25  # 18 random bytes
