"""``Receiver``: verifies the ``Upstash-Signature`` of a delivery (qstash-api.md §7.2).

It checks exactly what the official SDKs check: an HS256 JWT (no other algorithm, never
``none``) signed with the UTF-8 bytes of the current or the next signing key, ``iss`` =
``"Upstash"``, the claims ``iss``, ``sub``, ``exp`` and ``nbf`` present (``nbf`` may be 0),
``sub`` equal to the URL that was called (when given), and the ``body`` claim equal to
base64url(SHA-256(body)) with ``=`` padding ignored. Unlike qstash 3.4.0, whose Receiver passes
its tolerance where PyJWT ignores it, ``clock_tolerance`` really widens ``exp``/``nbf``/``iat``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

import jwt

from kafstash.producers.client._errors import SignatureError

__all__ = ["Receiver"]

ISSUER: Final = "Upstash"
_ALGORITHMS: Final = ["HS256"]
_REQUIRED: Final = ["iss", "sub", "exp", "nbf"]


class _Failed(Exception):
    """One key's verdict; ``signed`` tells whether the key itself matched the signature."""

    def __init__(self, reason: str, *, signed: bool) -> None:
        super().__init__(reason)
        self.signed = signed


def _body_hash(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")


def _verify_with(
    key: str, signature: str, body: bytes, url: str | None, clock_tolerance: float
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            signature,
            key,
            algorithms=_ALGORITHMS,
            issuer=ISSUER,
            leeway=clock_tolerance,
            options={"require": _REQUIRED},
        )
    except jwt.InvalidSignatureError as exc:
        raise _Failed(f"invalid signature: {exc}", signed=False) from exc
    except jwt.ExpiredSignatureError as exc:
        raise _Failed("signature has expired", signed=True) from exc
    except jwt.PyJWTError as exc:
        # Claims are checked only after the signature matched; a bad header or algorithm
        # gets the same verdict from every key. Either way this reason is worth reporting.
        raise _Failed(f"invalid token: {exc}", signed=True) from exc
    if url is not None and claims.get("sub") != url:
        raise _Failed(f"invalid subject {claims.get('sub')!r}, want {url!r}", signed=True)
    claimed = claims.get("body")
    if not isinstance(claimed, str) or claimed.rstrip("=") != _body_hash(body):
        raise _Failed(f"invalid body hash {claimed!r}, want {_body_hash(body)!r}", signed=True)
    return claims


class Receiver:
    """``Receiver(current_signing_key=..., next_signing_key=...).verify(...)``."""

    def __init__(self, *, current_signing_key: str, next_signing_key: str) -> None:
        self._keys = (current_signing_key, next_signing_key)

    def verify(
        self,
        *,
        signature: str,
        body: bytes | str,
        url: str | None = None,
        clock_tolerance: float = 0,
    ) -> dict[str, Any]:
        """Return the verified claims, or raise ``SignatureError``.

        ``body`` is the raw request body (a ``str`` is encoded as UTF-8); ``url`` is the URL
        the request was sent to, query string included (``None`` skips the check);
        ``clock_tolerance`` is in seconds. The next key is tried when the current one fails
        for any reason, so deliveries keep verifying across a key rotation.
        """
        raw = body.encode() if isinstance(body, str) else bytes(body)
        failures: list[_Failed] = []
        for key in self._keys:
            try:
                return _verify_with(key, signature, raw, url, clock_tolerance)
            except _Failed as failed:
                failures.append(failed)
        # Report the reason from the key that did sign the token, if either did.
        reason = next((f for f in failures if f.signed), failures[0])
        raise SignatureError(str(reason)) from reason
