"""One-time visit codes: random, unambiguous, hashed, expiring, single use, bound to a visit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, text

from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from scheduler.codes import (
    CODE_ALPHABET,
    VisitCodeError,
    generate_code,
    issue_visit_code,
    verify_visit_code,
)
from scheduler.models import CodeRole, Petition, Petitioner, Visit
from tests.helpers import World

SECRET = b"k" * 32


def test_generated_codes_use_unambiguous_alphabet() -> None:
    codes = {generate_code(10) for _ in range(500)}
    assert len(codes) == 500
    for code in codes:
        assert len(code) == 10 and set(code) <= set(CODE_ALPHABET)
    assert not set("0O1IL") & set(CODE_ALPHABET)
    with pytest.raises(ValueError):
        generate_code(7)


@pytest.fixture
async def db(world: World, migrated: Settings):  # type: ignore[no-untyped-def]
    engine = create_engine(migrated)
    maker = create_sessionmaker(engine)
    async with maker() as session:
        petitioner = Petitioner(
            court_id=world.courts["basic_a"],
            name="张三",
            id_type="resident_id",
            id_number="11010519491231002X",
            phone="",
        )
        session.add(petitioner)
        await session.flush()
        petition = Petition(
            court_id=world.courts["basic_a"],
            petitioner_id=petitioner.id,
            number="P-1",
            category="other",
            summary="s",
        )
        session.add(petition)
        await session.flush()
        for vid in ("v1", "v2"):
            session.add(
                Visit(
                    id=vid,
                    petition_id=petition.id,
                    court_id=world.courts["basic_a"],
                    receiving_court_id=world.courts["mid_a"],
                )
            )
        await session.commit()
        yield session
    await engine.dispose()


async def test_code_lifecycle(db) -> None:  # type: ignore[no-untyped-def]
    issued = await issue_visit_code(
        db, secret=SECRET, visit_id="v1", role=CodeRole.petitioner, ttl=timedelta(hours=1)
    )
    await db.commit()
    raw = await db.scalar(text("SELECT code_hash FROM visit_codes"))
    assert issued.code not in str(raw) and len(raw) == 64  # only a keyed hash is stored
    # wrong visit: refused like an unknown code
    with pytest.raises(VisitCodeError) as err:
        await verify_visit_code(db, secret=SECRET, code=issued.code, visit_id="v2")
    assert err.value.code == "invalid_code"
    # typed in lower case with a dash: still accepted, once
    spaced = issued.code[:4].lower() + "-" + issued.code[4:]
    record = await verify_visit_code(db, secret=SECRET, code=spaced, visit_id="v1")
    assert record.role is CodeRole.petitioner and record.used_at is not None
    await db.commit()
    with pytest.raises(VisitCodeError) as err:
        await verify_visit_code(db, secret=SECRET, code=issued.code)
    assert err.value.code == "used_code"
    # another server secret does not recognise the code
    with pytest.raises(VisitCodeError):
        await verify_visit_code(db, secret=b"x" * 32, code=issued.code, consume=False)


async def test_expired_revoked_and_garbage(db) -> None:  # type: ignore[no-untyped-def]
    past = utcnow() - timedelta(days=2)
    old = await issue_visit_code(
        db, secret=SECRET, visit_id="v1", role=CodeRole.lawyer, ttl=timedelta(hours=1), now=past
    )
    with pytest.raises(VisitCodeError) as err:
        await verify_visit_code(db, secret=SECRET, code=old.code)
    assert err.value.code == "expired_code"
    revoked = await issue_visit_code(
        db, secret=SECRET, visit_id="v1", role=CodeRole.mediator, ttl=timedelta(hours=1)
    )
    revoked.record.revoked_at = utcnow()
    with pytest.raises(VisitCodeError) as err:
        await verify_visit_code(db, secret=SECRET, code=revoked.code)
    assert err.value.code == "revoked_code"
    for garbage in ("", "short", "0000000000", "' OR 1=1 --", "ÄÖÜ" * 4):
        with pytest.raises(VisitCodeError) as err:
            await verify_visit_code(db, secret=SECRET, code=garbage)
        assert err.value.code == "invalid_code"
    assert (await db.scalars(select(Visit.id))).all()


LOOKUP = "/api/v1/visit-codes/lookup"


async def test_lookup_names_the_codes_visit_without_spending_it(
    client: TestClient, visit: dict[str, Any]
) -> None:
    code = visit["codes"]["petitioner"]
    typed = code[:4].lower() + "-" + code[4:].lower()  # as typed from paper
    for sent in (code, typed):  # twice: looking up spends nothing
        r = await client.post(LOOKUP, json={"code": sent})
        assert r.status == 200, await r.text()
        assert await r.json() == {"visit_id": visit["id"]}
    r = await client.post(LOOKUP, json={"code": visit["codes"]["expired"]})
    assert r.status == 401 and (await r.json())["error"]["code"] == "expired_code"
    r = await client.post(LOOKUP, json={"code": "ABCDEFGH23"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_code"
    r = await client.post(LOOKUP, json={"code": "short"})
    assert r.status == 422


async def test_lookup_guesses_are_limited_per_address(
    client: TestClient, visit: dict[str, Any], migrated: Settings
) -> None:
    for _ in range(migrated.login_max_failures_per_address):
        r = await client.post(LOOKUP, json={"code": "ABCDEFGH23"})
        assert r.status == 401
    r = await client.post(LOOKUP, json={"code": visit["codes"]["petitioner"]})
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert "次数过多" in (await r.json())["error"]["message"]
