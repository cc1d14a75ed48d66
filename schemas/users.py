"""Users: a bearer token maps to one isolated namespace with its own signing keys."""

from msgspec import Struct


class User(Struct, frozen=True, kw_only=True, rename="camel"):
    user_id: str
    token: str
    current_signing_key: str
    next_signing_key: str


# The fixed users of Upstash's `qstash dev` server (qstash-api.md §10), so local setups and the JS
# SDK's QSTASH_DEV mode work unchanged against `kafstash dev`. Never use them outside dev.
DEV_USERS: tuple[User, ...] = (
    User(
        user_id="defaultUser",
        token="eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0=",
        current_signing_key="sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
        next_signing_key="sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",
    ),
    User(
        user_id="testUser1",
        token="eyJVc2VySUQiOiJ0ZXN0VXNlcjEiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9",
        current_signing_key="sig_7GVPjvuwsfqF65iC8fSrs1dfYruM",
        next_signing_key="sig_5NoELc3EFnZn4DVS5bDs2Nk4b7Ua",
    ),
    User(
        user_id="testUser2",
        token="eyJVc2VySUQiOiJ0ZXN0VXNlcjIiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9",
        current_signing_key="sig_6jWGaWRxHsw4vMSPJprXadyvrybF",
        next_signing_key="sig_7qHbvhmahe5GwfePDiS5Lg3pi6Qx",
    ),
    User(
        user_id="testUser3",
        token="eyJVc2VySUQiOiJ0ZXN0VXNlcjMiLCJQYXNzd29yZCI6InRlc3RQYXNzd29yZCJ9",
        current_signing_key="sig_5T8FcSsynBjn9mMLBsXhpacRovJf",
        next_signing_key="sig_7GFR4YaDshFcqsxWRZpRB161jguD",
    ),
)
