"""Bad input gets a clear 4xx JSON error, nothing is half-written, never a 500."""

from __future__ import annotations

import json
import typing
from typing import Any

import annotated_types
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import Court, Petition, Petitioner, ReceptionRoom, User
from tests.helpers import World, login

SQLISH = ["'; DROP TABLE users; --", "1 OR 1=1", 'Robert"); DELETE FROM courts;--', "%_\\"]


async def _counts(settings: Settings) -> dict[str, int]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            return {
                m.__tablename__: int(await db.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Court, User, ReceptionRoom, Petitioner, Petition, AuditEvent)
            }
    finally:
        await engine.dispose()


async def _error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, (resp.status, await resp.text())
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    assert "Traceback" not in json.dumps(body)
    return body


async def test_malformed_and_mistyped_bodies(client: TestClient, migrated: Settings) -> None:
    csrf = await login(client, "admin")
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    before = await _counts(migrated)
    await _error(
        await client.post("/api/v1/courts", data=b"{not json", headers=h), 400, "malformed_json"
    )
    await _error(await client.post("/api/v1/courts", data=b"", headers=h), 400, "malformed_json")
    await _error(
        await client.post(
            "/api/v1/courts",
            data=b"code=x",
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
    )
    for body in (
        [1, 2],
        "text",
        5,
        None,
        {"code": 5, "name": "n", "level": "basic"},
        {"code": "OK", "name": "n", "level": "basic", "parent_id": "3"},
        {"code": "OK", "name": "n", "level": "palace", "parent_id": 3},
        {"code": "OK", "name": "n", "level": "basic", "parent_id": 3, "extra": 1},
        {"code": "OK", "name": "a\x00b", "level": "basic", "parent_id": 3},
        {"code": "OK", "name": "", "level": "basic", "parent_id": 3},
        {"code": "OK", "name": "n", "level": "basic", "parent_id": 2**40},
    ):
        resp = await client.post("/api/v1/courts", data=json.dumps(body).encode(), headers=h)
        err = await _error(resp, 422, "validation_failed")
        assert err["error"]["details"], body
    assert await _counts(migrated) == before


async def test_oversize_body(client: TestClient, migrated: Settings) -> None:
    csrf = await login(client, "op_a")
    big = {"name": "x", "id_number": "1", "phone": "", "pad": "x" * (1024 * 1024 + 10)}
    resp = await client.post("/api/v1/petitioners", json=big, headers={"X-CSRF-Token": csrf})
    await _error(resp, 413, "body_too_large")


async def test_unknown_routes_and_methods(client: TestClient) -> None:
    await _error(await client.get("/api/v1/no-such-thing"), 404, "not_found")
    await _error(await client.delete("/api/v1/courts"), 405, "method_not_allowed")
    await login(client, "admin")
    await _error(await client.get("/api/v1/courts/999999"), 404, "not_found")
    await _error(await client.get("/api/v1/courts/99999999999999999999"), 404, "not_found")
    await _error(await client.get("/api/v1/users?limit=abc"), 422, "validation_failed")
    await _error(await client.get("/api/v1/users?limit=100000"), 422, "validation_failed")


async def test_domain_rules_are_clear_4xx(
    client: TestClient, world: World, migrated: Settings
) -> None:
    csrf = await login(client, "admin")
    h = {"X-CSRF-Token": csrf}
    before = await _counts(migrated)
    cases = [
        ("/api/v1/courts", {"code": "S2", "name": "另一最高院", "level": "supreme"}, 409),
        (
            "/api/v1/courts",
            {"code": "B9", "name": "n", "level": "basic", "parent_id": world.courts["high"]},
            422,
        ),
        (
            "/api/v1/courts",
            {"code": "HIGH", "name": "dup", "level": "basic", "parent_id": world.courts["mid_a"]},
            409,
        ),
        (
            "/api/v1/users",
            {
                "username": "op_a",
                "display_name": "d",
                "role": "operator",
                "court_id": world.courts["basic_a"],
                "password": "Long-enough-1",
            },
            409,
        ),
        (
            "/api/v1/users",
            {
                "username": "newop",
                "display_name": "d",
                "role": "operator",
                "court_id": world.courts["mid_a"],
                "password": "Long-enough-1",
            },
            422,
        ),
        (
            "/api/v1/users",
            {
                "username": "newj",
                "display_name": "d",
                "role": "judge",  # a judge belongs to a court (any level: 判后答疑)
                "court_id": None,
                "password": "Long-enough-1",
            },
            422,
        ),
        (
            "/api/v1/users",
            {
                "username": "weak",
                "display_name": "d",
                "role": "archivist",
                "court_id": world.courts["mid_a"],
                "password": "short",
            },
            422,
        ),
        (
            "/api/v1/users",
            {
                "username": "bad name!",
                "display_name": "d",
                "role": "admin",
                "password": "Long-enough-1",
            },
            422,
        ),
        ("/api/v1/rooms", {"court_id": 999_999, "name": "r"}, 422),  # no such court
        ("/api/v1/rooms", {"court_id": world.courts["basic_a"], "name": "第一接访室"}, 409),
        (
            "/api/v1/petitioners",
            {"name": "x", "id_number": "110105194912310021", "court_id": world.courts["basic_a"]},
            422,
        ),
        ("/api/v1/petitioners", {"name": "x", "id_number": "11010519491231002X"}, 422),
    ]
    for path, body, status in cases:
        resp = await client.post(path, json=body, headers=h)
        assert resp.status == status, (path, body, resp.status, await resp.text())
        assert (await resp.json())["error"]["message"]
    assert await _counts(migrated) == before


async def test_sql_looking_strings_are_stored_verbatim(client: TestClient, world: World) -> None:
    csrf = await login(client, "op_a")
    h = {"X-CSRF-Token": csrf}
    for i, s in enumerate(SQLISH):
        r = await client.post(
            "/api/v1/petitioners",
            json={"name": s, "id_type": "other", "id_number": f"X{i}{s}"[:32], "phone": ""},
            headers=h,
        )
        assert r.status == 201, await r.text()
        p = await r.json()
        assert p["name"] == s
        r = await client.post(
            "/api/v1/cases",
            json={
                "channel": "letter",
                "petitioners": [{"name": s, "id_type": "other", "id_number": f"X{i}{s}"[:32]}],
                "category": "other",
                "summary": s,
                "original_numbers": [f"N{i}{s}"[:64]],
                "original_court": s,
            },
            headers=h,
        )
        assert r.status == 201, await r.text()
        t = await (await client.get(f"/api/v1/petitions/{(await r.json())['case']['id']}")).json()
        assert (t["summary"], t["petitioner_id"]) == (s, p["id"])
        found = await (await client.get("/api/v1/petitioners", params={"q": s})).json()
        assert [x["name"] for x in found["items"]] == [s]
    listed = await (await client.get("/api/v1/petitioners")).json()
    assert listed["total"] == len(SQLISH)
    courts = await (await client.get("/api/v1/courts")).json()
    assert len(courts) == len(world.courts)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
FIELDS = [
    "code",
    "name",
    "level",
    "parent_id",
    "username",
    "display_name",
    "role",
    "court_id",
    "password",
    "location",
    "id_type",
    "id_number",
    "phone",
    "petitioner_id",
    "number",
    "category",
    "summary",
    "judgment_ref",
    "active",
    "channel",
    "petitioners",
    "people_count",
    "original_numbers",
    "original_court",
    "occurred_at",
]
bodies = json_values | st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
CREATE = [
    "/api/v1/courts",
    "/api/v1/users",
    "/api/v1/rooms",
    "/api/v1/petitioners",
    "/api/v1/cases",
]


async def test_random_json_never_causes_500(client: TestClient, world: World) -> None:
    csrf = await login(client, "admin")
    statuses: set[int] = set()

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(path=st.sampled_from(CREATE), body=bodies)
    def run(path: str, body: Any) -> None:
        samples.append((path, body))

    samples: list[tuple[str, Any]] = []
    run()
    for path, body in samples:
        resp = await client.post(
            path,
            data=json.dumps(body),
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
        )
        statuses.add(resp.status)
        assert resp.status < 500, (path, body, await resp.text())
        if resp.status >= 400:
            assert "error" in await resp.json()
    assert statuses and max(statuses) < 500


def _bounded(annotation: Any, metadata: list[Any]) -> bool | None:
    """Whether an integer field has an upper bound (None: not an integer field)."""
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *more = typing.get_args(annotation)
        return _bounded(inner, [*metadata, *more])
    if annotation is int:
        # a Field(...) inside Annotated keeps its constraints in its own metadata
        flat = [c for m in metadata for c in (m, *getattr(m, "metadata", []))]
        return any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in flat)
    found = [_bounded(a, metadata) for a in typing.get_args(annotation)]
    known = [f for f in found if f is not None]
    return all(known) if known else None


def test_every_id_in_a_request_body_has_the_databases_bound() -> None:
    """An id past the database's integer (10**20, say) is refused as invalid input (422),
    never passed on to the database, which answered 500 for it."""
    import web.app  # noqa: F401  (every handler module and its bodies)
    from web.schemas import Body

    def subclasses(cls: type) -> list[type]:
        found: list[type] = []
        children: list[type] = cls.__subclasses__()
        for child in children:
            found += [child, *subclasses(child)]
        return found

    unbounded = [
        f"{cls.__module__}.{cls.__name__}.{name}"
        for cls in set(subclasses(Body))
        for name, field in cls.model_fields.items()  # type: ignore[attr-defined]
        if (name == "id" or name.endswith(("_id", "_ids")))
        and _bounded(field.annotation, list(field.metadata)) is False
    ]
    assert unbounded == []


async def test_days_past_the_calendar_are_refused_as_invalid_not_a_server_error(
    client: TestClient, world: World
) -> None:
    """A day the calendar cannot hold (9999-12-31 plus a week overflowed) is a 422 with a
    message, on every list asked by day."""
    await login(client, "op_a")
    court, room = world.courts["basic_a"], world.rooms["basic_a"]
    for url in (
        f"/api/v1/free-slots?receiving_court_id={world.courts['mid_a']}&room_id={room}"
        "&first=9999-12-31",
        "/api/v1/visits?day=9999-12-31",
        f"/api/v1/court-days?court_id={court}&first=9999-12-31",
        f"/api/v1/duty-periods?court_id={court}&first=9999-12-31",
    ):
        resp = await client.get(url)
        body = await resp.json()
        assert resp.status == 422, (url, body)
        assert body["error"]["details"][0]["message"] == "不能大于 2099-12-31", body


async def test_an_audit_search_from_a_time_without_its_zone_is_refused_not_a_500(
    client: TestClient, world: World
) -> None:
    await login(client, "admin")
    for query in ("since=2024-01-01", "since=2024-01-01T00:00:00", "until=2024-01-01T00:00"):
        resp = await client.get(f"/api/v1/audit?{query}")
        assert resp.status == 422, (query, await resp.text())
    ok = await client.get("/api/v1/audit", params={"since": "2024-01-01T00:00:00+08:00"})
    assert ok.status == 200
