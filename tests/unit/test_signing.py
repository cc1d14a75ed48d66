"""The Upstash-Signature JWT, checked with PyJWT and with the official Python Receiver."""

import base64
import hashlib
import time

import jwt
import pytest
from qstash import Receiver
from qstash.errors import SignatureError

from kafstash.schemas import ids
from kafstash.schemas.defaults import SIGNATURE_TTL_S
from kafstash.sinks.http.signing import body_hash, sign

# The QStash dev server's published keys: 32 bytes, the length PyJWT asks for.
CURRENT_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
NEXT_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
OTHER_KEY = "sig_3sbd8ajJ6uVW6zMeXGyGD1hBxT2m"

URL = "https://example.com/api/hook/?x=1&y=%20z"
BODY = '{"hello":"wörld","n":1}'.encode()
EMPTY_BODY_HASH = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="
NOW_S = 1_700_000_000


def _claims(token: str, key: str = CURRENT_KEY) -> dict[str, object]:
    return jwt.decode(
        token,
        key,
        algorithms=["HS256"],
        issuer="Upstash",
        options={"verify_exp": False, "verify_iat": False},
    )


def test_header_is_hs256_jwt() -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S)
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    raw_header = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert raw_header == b'{"alg":"HS256","typ":"JWT"}'


def test_claims() -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S)
    claims = _claims(token)
    assert set(claims) == {"iss", "sub", "iat", "exp", "nbf", "jti", "body"}
    assert claims["iss"] == "Upstash"
    assert claims["sub"] == URL
    assert claims["iat"] == NOW_S
    assert claims["exp"] == NOW_S + SIGNATURE_TTL_S == NOW_S + 300
    assert claims["nbf"] == 0
    jti = claims["jti"]
    assert isinstance(jti, str)
    assert jti.startswith("jwt_")
    expected = base64.urlsafe_b64encode(hashlib.sha256(BODY).digest()).decode()
    assert claims["body"] == expected
    assert expected.endswith("=")


def test_body_hash_is_padded_base64url() -> None:
    assert body_hash(b"") == EMPTY_BODY_HASH
    token = sign(signing_key=CURRENT_KEY, url=URL, body=b"", now_s=NOW_S)
    assert _claims(token)["body"] == EMPTY_BODY_HASH
    # A body whose digest has '+' and '/' in standard base64 uses '-' and '_' here.
    digests = [body_hash(str(i).encode()) for i in range(50)]
    assert any("-" in d or "_" in d for d in digests)
    assert not any("+" in d or "/" in d for d in digests)


def test_each_token_has_a_fresh_jti() -> None:
    first = _claims(sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S))
    second = _claims(sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S))
    assert first["jti"] != second["jti"]


def test_key_is_the_utf8_string_including_prefix() -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S)
    with pytest.raises(jwt.InvalidSignatureError):
        _claims(token, key=CURRENT_KEY.removeprefix("sig_") + "pad_")
    assert _claims(token, key=CURRENT_KEY)["sub"] == URL


def test_token_is_byte_for_byte_what_pyjwt_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    # sign() builds the JWS itself (one HMAC); PyJWT, the library it replaced, is the reference.
    monkeypatch.setattr(ids, "jwt_id", lambda: "jwt_fixed")
    claims = {
        "iss": "Upstash",
        "sub": URL,
        "iat": NOW_S,
        "exp": NOW_S + SIGNATURE_TTL_S,
        "nbf": 0,
        "jti": "jwt_fixed",
        "body": body_hash(BODY),
    }
    expected = jwt.encode(claims, CURRENT_KEY, algorithm="HS256", headers={"typ": "JWT"})
    assert sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S) == expected


def test_sign_does_not_read_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock() -> float:
        raise AssertionError("sign() read the clock")

    monkeypatch.setattr(time, "time", no_clock)
    monkeypatch.setattr(time, "time_ns", no_clock)
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=NOW_S)
    assert token.count(".") == 2


# --- the official Receiver ----------------------------------------------------------
# It checks exp/nbf/iat against the real clock, so these tokens are signed "now".

RECEIVERS = {
    "as current key": Receiver(current_signing_key=CURRENT_KEY, next_signing_key=OTHER_KEY),
    "as next key": Receiver(current_signing_key=OTHER_KEY, next_signing_key=CURRENT_KEY),
}
BODIES = {"bytes": BODY, "empty": b""}


@pytest.mark.parametrize("receiver", RECEIVERS.values(), ids=RECEIVERS.keys())
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_official_receiver_accepts(receiver: Receiver, body: bytes) -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=body, now_s=int(time.time()))
    # The Receiver takes the body as str and hashes body.encode() (UTF-8).
    receiver.verify(signature=token, body=body.decode(), url=URL)
    receiver.verify(signature=token, body=body.decode())  # framework helpers omit url


# With the key in both slots, the error the Receiver re-raises names the failed check.
STRICT = Receiver(current_signing_key=CURRENT_KEY, next_signing_key=CURRENT_KEY)


@pytest.mark.parametrize("receiver", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_official_receiver_rejects_wrong_url(receiver: Receiver) -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=int(time.time()))
    for wrong in (URL.rstrip("z"), "https://example.com/api/hook", URL.replace("https", "http")):
        with pytest.raises(SignatureError):
            receiver.verify(signature=token, body=BODY.decode(), url=wrong)
        with pytest.raises(SignatureError, match="Invalid subject"):
            STRICT.verify(signature=token, body=BODY.decode(), url=wrong)


@pytest.mark.parametrize("receiver", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_official_receiver_rejects_tampered_body(receiver: Receiver) -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=int(time.time()))
    for tampered in (BODY.decode().replace("1", "2"), BODY.decode() + " ", ""):
        with pytest.raises(SignatureError):
            receiver.verify(signature=token, body=tampered, url=URL)
        with pytest.raises(SignatureError, match="Invalid body hash"):
            STRICT.verify(signature=token, body=tampered, url=URL)


def test_official_receiver_rejects_unknown_key() -> None:
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=int(time.time()))
    receiver = Receiver(current_signing_key=OTHER_KEY, next_signing_key=NEXT_KEY)
    with pytest.raises(SignatureError, match="Signature verification failed"):
        receiver.verify(signature=token, body=BODY.decode(), url=URL)


def test_official_receiver_rejects_expired_token() -> None:
    stale = int(time.time()) - SIGNATURE_TTL_S - 5
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=stale)
    with pytest.raises(SignatureError, match="expired"):
        STRICT.verify(signature=token, body=BODY.decode(), url=URL)


def test_official_receiver_rejects_iat_ahead_of_its_clock() -> None:
    # The hazard behind "keep iat not in the future" (qstash-api.md section 7.3): PyJWT
    # rejects an iat ahead of the receiver's clock, and Receiver 3.4.0 puts
    # clock_tolerance into pyjwt's options dict, where it is ignored, so no tolerance helps.
    token = sign(signing_key=CURRENT_KEY, url=URL, body=BODY, now_s=int(time.time()) + 30)
    with pytest.raises(SignatureError, match=r"not yet valid \(iat\)"):
        STRICT.verify(signature=token, body=BODY.decode(), url=URL, clock_tolerance=60)
