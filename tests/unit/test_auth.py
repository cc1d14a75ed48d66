"""Bearer tokens: compared in constant time against every user, whatever the token looks like."""

from __future__ import annotations

import contextlib
import hmac
from unittest import mock

import pytest

from kafstash.producers.api.auth import Authenticator
from kafstash.producers.api.errors import Unauthorized
from kafstash.schemas.users import DEV_USERS, User

USERS = DEV_USERS


def _same_length_wrong(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize(
    "wrong",
    [
        _same_length_wrong(USERS[0].token),
        USERS[0].token[:-1],  # a prefix: shorter
        USERS[0].token + "x",  # longer
        "x",
        "a" * 4096,
    ],
)
def test_wrong_tokens_are_refused(wrong: str) -> None:
    auth = Authenticator(USERS)

    with pytest.raises(Unauthorized):
        auth.user_for(f"Bearer {wrong}")
    with pytest.raises(Unauthorized):
        auth.user_for(None, wrong)


def test_every_user_is_compared_whichever_matches() -> None:
    auth = Authenticator(USERS)
    for given in [USERS[0].token, USERS[-1].token, _same_length_wrong(USERS[1].token), "short"]:
        with (
            mock.patch.object(hmac, "compare_digest", wraps=hmac.compare_digest) as spy,
            contextlib.suppress(Unauthorized),
        ):
            auth.user_for(f"Bearer {given}")

        # No early exit: the first user matching (or none) costs as many comparisons as the last.
        assert spy.call_count == len(USERS)
        compared = {call.args[0] for call in spy.call_args_list}
        assert compared == {u.token.encode() for u in USERS}


@pytest.mark.parametrize("user", USERS)
def test_each_user_is_found_by_its_token(user: User) -> None:
    auth = Authenticator(USERS)

    assert auth.user_for(f"Bearer {user.token}") == user
    assert auth.user_for(None, user.token) == user


def test_missing_token_and_other_schemes_are_refused() -> None:
    auth = Authenticator(USERS)

    for header in [None, "", "Basic Zm9vOmJhcg==", f"Token {USERS[0].token}", "Bearer "]:
        with pytest.raises(Unauthorized):
            auth.user_for(header)
