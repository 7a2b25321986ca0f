"""The day view's query (scheduler.visits.list_visits), built once per combination of
filters: for every combination and every kind of caller it answers what a plain filter
over all visits answers."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from config.db import Database
from config.settings import Settings
from scheduler import visits as vs
from scheduler.models import Role, Visit, VisitState
from scheduler.scope import Actor
from tests.helpers import Booking

DAY = datetime(2026, 3, 2, tzinfo=UTC).date()


async def test_every_combination_of_filters_answers_what_a_plain_filter_answers(
    booking: Booking, migrated: Settings
) -> None:
    w, rnd = booking.world, random.Random(5)
    courts = [w.courts["basic_a"], w.courts["basic_b"]]
    receiving = [w.courts["mid_a"], w.courts["high"]]
    judges = [w.users["judge_a"], booking.judge_high, None]
    rooms = [w.rooms["basic_a"], w.rooms["basic_b"], None]
    petition = booking.petitions["a0"]
    tz = migrated.tz
    midnight = datetime.combine(DAY, datetime.min.time(), tzinfo=tz)
    db = Database(migrated)
    try:
        async with db.writer() as session:
            for n in range(60):
                starts = midnight + timedelta(hours=rnd.randrange(-30, 80), minutes=30 * (n % 2))
                session.add(
                    Visit(
                        petition_id=petition,
                        court_id=rnd.choice(courts),
                        receiving_court_id=rnd.choice(receiving),
                        judge_id=rnd.choice(judges),
                        room_id=rnd.choice(rooms),
                        state=rnd.choice(list(VisitState)),
                        starts_at=starts,
                        ends_at=starts + timedelta(minutes=30),
                    )
                )
        async with db.reader() as session:
            every = list((await session.scalars(select(Visit))).all())
            at = {v.id: v.starts_at for v in every if v.starts_at is not None}
            assert len(at) == len(every)
            actors = {
                "admin": Actor(user_id=None, username="a", role=Role.admin, court_id=None),
                "operator": Actor(user_id=1, username="o", role=Role.operator, court_id=courts[0]),
                "judge": Actor(user_id=2, username="j", role=Role.judge, court_id=receiving[0]),
                "archivist": Actor(
                    user_id=3, username="r", role=Role.archivist, court_id=w.courts["mid_a"]
                ),
            }
            in_mid_a = {w.courts["mid_a"], courts[0]}
            seen: dict[str, set[str]] = {
                "admin": {v.id for v in every},
                "operator": {v.id for v in every if v.court_id == courts[0]},
                "judge": {v.id for v in every if v.receiving_court_id == receiving[0]},
                "archivist": {v.id for v in every if {v.court_id, v.receiving_court_id} & in_mid_a},
            }
            checked = 0
            for who, actor in actors.items():
                for day, days, before, court, judge, room, states in itertools.product(
                    (None, DAY),
                    (1, 3),
                    (None, midnight + timedelta(hours=20)),
                    (None, courts[1], receiving[1]),
                    (None, judges[0]),
                    (None, rooms[0]),
                    ((), (VisitState.scheduled, VisitState.ended)),
                ):
                    if day is None and days > 1:
                        continue
                    got = await vs.list_visits(
                        session, actor, migrated, day=day, days=days, court_id=court,
                        judge_id=judge, room_id=room, states=states, before=before,
                    )  # fmt: skip
                    want = sorted(
                        (
                            v
                            for v in every
                            if v.id in seen[who]
                            and (day is None or midnight <= at[v.id] < midnight + timedelta(days))
                            and (before is None or at[v.id] < before)
                            and (court is None or court in (v.court_id, v.receiving_court_id))
                            and (judge is None or v.judge_id == judge)
                            and (room is None or v.room_id == room)
                            and (not states or v.state in states)
                        ),
                        key=lambda v: (at[v.id], v.id),
                    )
                    assert [v.id for v in got] == [v.id for v in want], (who, day, days, court)
                    checked += bool(want)
            assert checked > 100  # most combinations hold visits: the comparison means something
            limited = await vs.list_visits(session, actors["admin"], migrated, day=None, limit=7)
            assert len(limited) == 7
    finally:
        await db.dispose()
