"""URL groups (qstash-api.md §3.7, §8.6): upsert and removal rules, names, and the fan-out."""

import pytest

from kafstash.producers.api.fanout import Target, for_target
from kafstash.producers.api.groups import group_json
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.schemas import codec
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.groups import (
    Endpoint,
    RemoveSpec,
    UrlGroup,
    group_key,
    remove,
    upsert,
    valid_name,
)
from kafstash.schemas.users import DEV_USERS

A, B, C = "https://a.example/", "https://b.example/", "https://c.example/"


def _group(*endpoints: Endpoint, now: int = 1) -> UrlGroup:
    return upsert(None, user_id="u", name="g", endpoints=list(endpoints), now_ms=now)


def test_first_upsert_creates_the_group() -> None:
    g = _group(Endpoint(url=A, name="a"), Endpoint(url=B))
    assert (g.name, g.user_id, g.created_at, g.updated_at) == ("g", "u", 1, 1)
    assert g.endpoints == [Endpoint(url=A, name="a"), Endpoint(url=B)]
    assert codec.decode(codec.encode(g), UrlGroup) == g


def test_upsert_replaces_by_name_and_ignores_a_known_url() -> None:
    g = _group(Endpoint(url=A, name="a"), Endpoint(url=B))
    g2 = upsert(
        g,
        user_id="u",
        name="g",
        endpoints=[
            Endpoint(url=C, name="a"),  # same name: its url changes
            Endpoint(url=B),  # known url: no-op
            Endpoint(url=B, name="b"),  # the unnamed endpoint with this url gets the name
            Endpoint(url=A),  # a new url (A was renamed away to C)
        ],
        now_ms=5,
    )
    assert g2.endpoints == [Endpoint(url=C, name="a"), Endpoint(url=B, name="b"), Endpoint(url=A)]
    assert (g2.created_at, g2.updated_at) == (1, 5)


def test_remove_by_url_or_name_and_the_last_one_takes_the_group() -> None:
    g = _group(Endpoint(url=A, name="a"), Endpoint(url=B), Endpoint(url=C, name="c"))
    g2 = remove(g, specs=[RemoveSpec(name="a"), RemoveSpec(url=B)], now_ms=9)
    assert g2 is not None
    assert g2.endpoints == [Endpoint(url=C, name="c")]
    assert g2.updated_at == 9
    # Both fields given: both must match; nothing given matches nothing.
    assert remove(g2, specs=[RemoveSpec(url=A, name="c"), RemoveSpec()], now_ms=9) == g2
    assert remove(g2, specs=[RemoveSpec(url=C, name="c")], now_ms=9) is None


@pytest.mark.parametrize(
    ("name", "ok"), [("a.B_c-9", True), ("a b", False), ("a/b", False), ("", False), ("é", False)]
)
def test_names(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


def test_group_key_and_json() -> None:
    assert group_key("u", "g") == "group/u/g"
    assert group_json(_group(Endpoint(url=A, name="a"), Endpoint(url=B))) == {
        "name": "g",
        "createdAt": 1,
        "updatedAt": 1,
        "endpoints": [{"url": A, "name": "a"}, {"url": B}],
    }


def _req(url: str, headers: list[tuple[str, str]]) -> PublishRequest:
    return build_request(
        user=DEV_USERS[0],
        url=url,
        view=HeaderView(headers),
        body=b"x",
        now_ms=1,
        limits=PublishLimits(),
    )


def test_fan_out_marks_each_message_and_keeps_dedup_keys_apart() -> None:
    headers = [("Upstash-Deduplication-Id", "d1")]
    a = for_target(_req(A, headers), Target(url=A, topic_name="g", endpoint_name="a"))
    b = for_target(_req(B, headers), Target(url=B, topic_name="g"))
    assert (a.message.topic_name, a.message.endpoint_name) == ("g", "a")
    assert (b.message.topic_name, b.message.endpoint_name) == ("g", None)
    assert a.dedup_key != b.dedup_key
    assert a.dedup_key is not None
    assert a.dedup_key.startswith(f"{DEV_USERS[0].user_id}:id:d1")
    # The same endpoint with the same id is the same key: a repeated group publish dedups.
    again = for_target(_req(A, headers), Target(url=A, topic_name="g", endpoint_name="a"))
    assert again.dedup_key == a.dedup_key
    # A plain URL target is left as built.
    plain = _req(A, headers)
    assert for_target(plain, Target(url=A)) is plain
    assert for_target(_req(A, []), Target(url=A, topic_name="g")).dedup_key is None
