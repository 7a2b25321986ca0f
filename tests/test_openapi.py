"""The OpenAPI document is valid and describes every API route."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from web.routes import PATH_PARAM, api


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
