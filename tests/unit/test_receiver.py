"""kafstash's Receiver: accepts what our signer (sinks/http/signing.py) produces with either key,
rejects what the official SDKs reject (qstash-api.md §7.2, §7.3), and honours clock_tolerance."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from qstash import Receiver as OfficialReceiver
from qstash.errors import SignatureError as OfficialSignatureError

from kafstash.producers.client import Receiver, SignatureError
from kafstash.schemas.users import DEV_USERS
from kafstash.sinks.http.signing import body_hash, sign

# 32-byte keys (PyJWT warns below that, and warnings are errors here).
CURRENT_KEY = DEV_USERS[0].current_signing_key
NEXT_KEY = DEV_USERS[0].next_signing_key
OTHER_KEY = DEV_USERS[1].current_signing_key

URL = "https://example.com/api/hook/?x=1&y=%20z"
BODY = '{"hello":"wörld","n":1}'


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(current_signing_key=CURRENT_KEY, next_signing_key=NEXT_KEY)


def _now() -> int:
    return int(time.time())


def _signed(key: str = CURRENT_KEY, *, url: str = URL, body: str | bytes = BODY) -> str:
    raw = body.encode() if isinstance(body, str) else body
    return sign(signing_key=key, url=url, body=raw, now_s=_now())


def _claims(**overrides: Any) -> dict[str, Any]:
    now = _now()
    claims: dict[str, Any] = {
        "iss": "Upstash",
        "sub": URL,
        "iat": now,
        "exp": now + 300,
        "nbf": 0,
        "jti": "jwt_test",
        "body": body_hash(BODY.encode()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims: dict[str, Any], key: str = CURRENT_KEY) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": "JWT"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _forge(header: dict[str, str], claims: dict[str, Any], key: str | None) -> str:
    """A token with any header; the MAC (HMAC-SHA512 when a key is given) uses the real key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = b""
    if key is not None:
        mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha512).digest()
    return f"{signing_input}.{_b64(mac)}"


# -- accepted --------------------------------------------------------------------------------


def test_accepts_our_signer_with_the_current_key(receiver: Receiver) -> None:
    claims = receiver.verify(signature=_signed(), body=BODY, url=URL)
    assert claims["sub"] == URL
    assert claims["nbf"] == 0


def test_accepts_our_signer_with_the_next_key(receiver: Receiver) -> None:
    receiver.verify(signature=_signed(NEXT_KEY), body=BODY, url=URL)


@pytest.mark.parametrize("body", [BODY, BODY.encode()], ids=["str", "bytes"])
def test_body_may_be_str_or_bytes(receiver: Receiver, body: str | bytes) -> None:
    receiver.verify(signature=_signed(body=BODY), body=body, url=URL)


def test_binary_and_empty_bodies(receiver: Receiver) -> None:
    raw = b"\x00\x01\xff raw"
    receiver.verify(signature=_signed(body=raw), body=raw, url=URL)
    receiver.verify(signature=_signed(body=b""), body=b"", url=URL)
    receiver.verify(signature=_signed(body=b""), body="", url=URL)


def test_url_none_skips_the_subject_check(receiver: Receiver) -> None:
    receiver.verify(signature=_signed(url="https://elsewhere.example/"), body=BODY)


def test_unpadded_body_hash_is_accepted(receiver: Receiver) -> None:
    token = _hs256(_claims(body=body_hash(BODY.encode()).rstrip("=")))
    receiver.verify(signature=token, body=BODY, url=URL)


def test_nbf_equal_to_iat_is_accepted(receiver: Receiver) -> None:
    receiver.verify(signature=_hs256(_claims(nbf=_now())), body=BODY, url=URL)


# -- rejected --------------------------------------------------------------------------------


def test_rejects_alg_none(receiver: Receiver) -> None:
    token = _forge({"alg": "none", "typ": "JWT"}, _claims(), key=None)
    with pytest.raises(SignatureError):
        receiver.verify(signature=token, body=BODY, url=URL)


@pytest.mark.parametrize("alg", ["HS512", "RS256", "HS384"])
def test_rejects_other_algorithms_even_with_the_right_key(receiver: Receiver, alg: str) -> None:
    token = _forge({"alg": alg, "typ": "JWT"}, _claims(), key=CURRENT_KEY)
    with pytest.raises(SignatureError, match="alg"):
        receiver.verify(signature=token, body=BODY, url=URL)


def test_rejects_an_unknown_key(receiver: Receiver) -> None:
    with pytest.raises(SignatureError, match="signature"):
        receiver.verify(signature=_signed(OTHER_KEY), body=BODY, url=URL)


def test_rejects_wrong_issuer(receiver: Receiver) -> None:
    with pytest.raises(SignatureError, match="iss"):
        receiver.verify(signature=_hs256(_claims(iss="Downstash")), body=BODY, url=URL)


def test_rejects_wrong_subject_and_says_so(receiver: Receiver) -> None:
    # Signed with the current key: the next key's "invalid signature" must not hide the reason.
    token = _signed(url="https://example.com/other")
    with pytest.raises(SignatureError, match="subject"):
        receiver.verify(signature=token, body=BODY, url=URL)


def test_rejects_wrong_subject_signed_with_the_next_key(receiver: Receiver) -> None:
    token = _signed(NEXT_KEY, url="https://example.com/other")
    with pytest.raises(SignatureError, match="subject"):
        receiver.verify(signature=token, body=BODY, url=URL)


@pytest.mark.parametrize("body", ["tampered", b"tampered", ""])
def test_rejects_body_mismatch(receiver: Receiver, body: str | bytes) -> None:
    with pytest.raises(SignatureError, match="body"):
        receiver.verify(signature=_signed(), body=body, url=URL)


def test_rejects_standard_base64_body_hash(receiver: Receiver) -> None:
    body = b"\xfb\xff" * 7  # pick one whose hash holds '+' or '/' in standard base64
    digest = hashlib.sha256(body).digest()
    standard = base64.b64encode(digest).decode()
    assert standard != base64.urlsafe_b64encode(digest).decode()
    token = _hs256(_claims(body=standard))
    with pytest.raises(SignatureError, match="body"):
        receiver.verify(signature=token, body=body, url=URL)


def test_rejects_a_missing_body_claim(receiver: Receiver) -> None:
    claims = _claims()
    del claims["body"]
    with pytest.raises(SignatureError, match="body"):
        receiver.verify(signature=_hs256(claims), body=BODY, url=URL)


@pytest.mark.parametrize("claim", ["iss", "sub", "exp", "nbf"])
def test_rejects_a_missing_required_claim(receiver: Receiver, claim: str) -> None:
    claims = _claims()
    del claims[claim]
    with pytest.raises(SignatureError, match=claim):
        receiver.verify(signature=_hs256(claims), body=BODY)


def test_rejects_expired(receiver: Receiver) -> None:
    now = _now()
    token = _hs256(_claims(iat=now - 400, exp=now - 100))
    with pytest.raises(SignatureError, match="expired"):
        receiver.verify(signature=token, body=BODY, url=URL)


def test_rejects_nbf_in_the_future(receiver: Receiver) -> None:
    token = _hs256(_claims(nbf=_now() + 600))
    with pytest.raises(SignatureError, match="not yet valid"):
        receiver.verify(signature=token, body=BODY, url=URL)


def test_rejects_garbage(receiver: Receiver) -> None:
    for token in ["", "not-a-jwt", "a.b.c"]:
        with pytest.raises(SignatureError):
            receiver.verify(signature=token, body=BODY, url=URL)


# -- clock tolerance -------------------------------------------------------------------------


def test_clock_tolerance_accepts_a_token_from_a_clock_slightly_ahead(receiver: Receiver) -> None:
    # The signer's clock runs 60 s ahead of ours: iat and nbf lie in our future.
    ahead = _now() + 60
    token = _hs256(_claims(iat=ahead, nbf=ahead, exp=ahead + 300))
    with pytest.raises(SignatureError, match="not yet valid"):
        receiver.verify(signature=token, body=BODY, url=URL)
    receiver.verify(signature=token, body=BODY, url=URL, clock_tolerance=120)


def test_clock_tolerance_accepts_a_recently_expired_token(receiver: Receiver) -> None:
    now = _now()
    token = _hs256(_claims(iat=now - 360, exp=now - 60))
    with pytest.raises(SignatureError, match="expired"):
        receiver.verify(signature=token, body=BODY, url=URL)
    receiver.verify(signature=token, body=BODY, url=URL, clock_tolerance=120)
    with pytest.raises(SignatureError, match="expired"):
        receiver.verify(signature=token, body=BODY, url=URL, clock_tolerance=10)


def test_the_official_receiver_ignores_clock_tolerance() -> None:
    """Why ours exists: qstash 3.4.0 hands the leeway to PyJWT as an ignored option."""
    ahead = _now() + 60
    token = _hs256(_claims(iat=ahead, nbf=ahead, exp=ahead + 300))
    official = OfficialReceiver(current_signing_key=CURRENT_KEY, next_signing_key=NEXT_KEY)
    with pytest.raises(OfficialSignatureError):
        official.verify(signature=token, body=BODY, url=URL, clock_tolerance=120)
