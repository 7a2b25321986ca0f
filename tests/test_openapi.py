"""The OpenAPI document is valid and describes every API route."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from web.routes import PATH_PARAM, _dumps, api, json_body, to_json
from web.scheduling_schemas import FreeSlotOut
from web.schemas import Ok


async def test_openapi_describes_every_route(client: TestClient) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    validate(doc)
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for resource in client.app.router.resources():
        canonical = resource.canonical
        if not canonical.startswith("/api/v1/") or canonical.endswith("openapi.json"):
            continue
        for route in resource:
            if route.method != "HEAD":
                served.add((route.method, PATH_PARAM.sub(r"{\1}", canonical)))
    assert served and served == documented
    assert len(documented) == len(api.routes)
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == [] and "429" in login["responses"]
    create = doc["paths"]["/api/v1/courts"]["post"]
    assert create["x-roles"] == ["admin"]
    assert {"201", "401", "403", "409", "422"} <= set(create["responses"])
    schema = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema.rsplit("/", 1)[-1] in doc["components"]["schemas"]


def test_answers_are_written_as_the_same_json_by_pydantic_and_by_to_json() -> None:
    """A model, and a list of models of one class, are written by pydantic itself
    (``json_body``); the JSON is what ``to_json`` gives, Chinese text as UTF-8, not escaped.
    Anything else (a mixed list, a dict) goes through ``to_json``."""
    slot = FreeSlotOut(
        starts_at=datetime(2026, 12, 2, 1, 30, tzinfo=UTC),
        ends_at=datetime(2026, 12, 2, 2, tzinfo=UTC),
        judge_id=7,
        judge_name="张法官",
    )
    other = Ok()
    for value in (slot, [slot, slot], [slot, other], {"a": [slot]}, [], "文字"):
        body = json_body(value)
        assert isinstance(body, bytes)
        assert json.loads(body) == json.loads(_dumps(to_json(value)))
    assert "张法官".encode() in json_body([slot])
