"""The checked-in OpenAPI document describes exactly the routes the API serves."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import schemathesis
from starlette.routing import Mount, Route

from kafstash.producers.api import console, filter_fields, openapi
from kafstash.producers.api.app import create_app
from kafstash.producers.api.context import ApiConfig
from kafstash.producers.api.publish import PublishLimits
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS

_PARAM = re.compile(r"\{[^}]+\}")


def _served() -> set[tuple[str, str]]:
    config = ApiConfig(
        bootstrap="127.0.0.1:1",
        topics=Topics("t"),
        users=DEV_USERS,
        limits=PublishLimits(),
        allow_private_destinations=True,
    )
    app = create_app(config)
    out: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount) and route.path == console.PREFIX:
            continue  # the web console's static files, not the v2 API (tests/unit/test_console.py)
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET route
                out.add((_PARAM.sub("{}", route.path), method.lower()))
    return out


def _documented() -> set[tuple[str, str]]:
    doc = openapi.document()
    return {
        (_PARAM.sub("{}", path), method)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_route_is_documented_and_every_documented_route_served() -> None:
    served, documented = _served(), _documented()
    assert served - documented == set(), "routes missing from producers/api/openapi.yaml"
    assert documented - served == set(), "documented routes the API does not serve"


def test_document_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_dict(openapi.document())
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == len(_documented())


def test_json_form_is_the_yaml_document() -> None:
    assert json.loads(openapi.document_json()) == openapi.document()


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, section, name = node["$ref"].removeprefix("#/").split("/")
        node = doc["components"][section][name]
    return node


@pytest.mark.parametrize(("method", "path"), sorted(filter_fields.SPECS))
def test_filtering_endpoints_document_exactly_their_fields(method: str, path: str) -> None:
    """The document lists every accepted query field (and only those), and a JSON body that
    refuses other keys, so schemathesis generates what the server takes and probes the rest."""
    spec = filter_fields.SPECS[(method, path)]
    doc = openapi.document()
    item = doc["paths"][path]
    op = item[method]
    params = [_resolve(doc, p) for p in item.get("parameters", []) + op.get("parameters", [])]
    query = {p["name"] for p in params if p["in"] == "query"}
    assert query == spec.accepted - filter_fields.AUTH_FIELDS
    body = op.get("requestBody")
    if spec.body_ids is None or method == "get":
        assert body is None
        return
    schema = _resolve(doc, body)["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {spec.body_ids}


def test_url_group_endpoint_bodies_refuse_unknown_keys() -> None:
    doc = openapi.document()
    schema = doc["components"]["requestBodies"]["Endpoints"]["content"]["application/json"]
    assert schema["schema"]["additionalProperties"] is False
    assert schema["schema"]["properties"]["endpoints"]["items"]["additionalProperties"] is False
