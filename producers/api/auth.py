"""Bearer-token authentication with a constant-time comparison against every known token."""

import hmac

from kafstash.producers.api.errors import Unauthorized
from kafstash.schemas.users import User


class Authenticator:
    def __init__(self, users: tuple[User, ...]) -> None:
        self._users = [(u.token.encode(), u) for u in users]

    def user_for(self, authorization: str | None, query_token: str | None = None) -> User:
        token: str | None = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
        if token is None:
            token = query_token
        if not token:
            raise Unauthorized("missing bearer token: send Authorization: Bearer <QSTASH_TOKEN>")
        given = token.encode()
        found: User | None = None
        # Compare against every token so the time taken says nothing about which one nearly matched.
        for known, user in self._users:
            if hmac.compare_digest(known, given):
                found = user
        if found is None:
            raise Unauthorized("invalid token")
        return found
