"""The API's OpenAPI document (``openapi.yaml`` beside this module), served at ``/openapi.json``."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml

SOURCE = Path(__file__).with_name("openapi.yaml")


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SOURCE.read_text())
    return loaded


@functools.cache
def document_json() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()
