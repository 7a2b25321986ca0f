"""Outgoing SMS: one gateway interface, every message kept.

A message is first written to the outbox table (``sms_messages``, state ``queued``) in the
transaction that needs it; after that commits, :func:`deliver` hands it to the configured
gateway. With ``sms_webhook_url`` set, :class:`WebhookGateway` POSTs it to the court's SMS
platform (retried) and the row becomes ``sent`` or ``failed`` with the error. Without one,
:class:`OutboxGateway` leaves it ``queued`` for the operators' 短信发件箱 panel, where they
relay it and mark it sent. No message is lost silently: every row has a state.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import Database, utcnow
from config.errors import ConflictError, NotFoundError
from config.settings import Settings
from scheduler.portal.models import SmsMessage, SmsState


class SmsError(Exception):
    """The gateway could not deliver a message; the text is kept on the row."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class SmsGateway(Protocol):
    """Delivers one message or raises :class:`SmsError`."""

    async def send(self, message_id: int, phone: str, text: str) -> int:
        """How many attempts handing it over took (the row becomes ``sent``); 0: nothing
        was handed over, it stays ``queued`` in the outbox."""
        ...


class OutboxGateway:
    """The default: messages wait in the outbox for an operator to relay them."""

    async def send(self, message_id: int, phone: str, text: str) -> int:
        return 0


class WebhookGateway:
    """POSTs ``{"id", "phone", "text"}`` to the court's SMS platform, signed with
    ``X-Signature: sha256=<hex HMAC of the body>``; any 2xx answer is a delivery. Retried
    ``attempts`` times with a short back-off."""

    def __init__(self, url: str, secret: bytes, attempts: int = 3, backoff: float = 0.5) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.backoff = backoff

    async def send(self, message_id: int, phone: str, text: str) -> int:
        body = json.dumps({"id": message_id, "phone": phone, "text": text}, ensure_ascii=False)
        raw = body.encode()
        signature = "sha256=" + hmac.new(self.secret, raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Signature": signature}
        errors: list[str] = []
        timeout = aiohttp.ClientTimeout(total=10)
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.backoff * attempt)
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as http,
                    http.post(self.url, data=raw, headers=headers) as answer,
                ):
                    if 200 <= answer.status < 300:
                        return attempt + 1
                    errors.append(f"HTTP {answer.status}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
        raise SmsError(f"短信平台 {self.attempts} 次均未接收：" + "；".join(errors), self.attempts)


def gateway_for(settings: Settings) -> SmsGateway:
    """The gateway this deployment is configured for."""
    if settings.sms_webhook_url:
        secret = settings.sms_webhook_secret
        return WebhookGateway(
            settings.sms_webhook_url,
            secret.get_secret_value().encode() if secret else b"",
            attempts=settings.sms_webhook_attempts,
        )
    return OutboxGateway()


# What a petitioner is told by SMS when staff book, move or cancel their visit (a visit
# booked from their own online request is told by scheduler/portal/service.py).
VISIT_TEXTS = {
    "visit_booked": (
        "【人民法院】您的视频接访已预约：{when}，地点：{place}。请携带身份证件按时到达。"
    ),
    "visit_rescheduled": "【人民法院】您的视频接访已改期至：{when}，地点：{place}。",
    "visit_cancelled": "【人民法院】您原定 {when} 的视频接访已取消。如有疑问，请联系{court}。",
}


async def tell_petitioner(
    db: AsyncSession, visit: Any, purpose: str, settings: Settings, when: datetime | None = None
) -> SmsMessage | None:
    """Queue the SMS of ``purpose`` (:data:`VISIT_TEXTS`) to the petitioner of ``visit`` at
    the phone on file; None when there is none. ``when``: the time to name (a cancelled
    visit's, a moved one's new start by default)."""
    from scheduler.models import Court, Petition, Petitioner, ReceptionRoom
    from scheduler.visits import local_text

    person = await db.scalar(
        select(Petitioner)
        .join(Petition, Petition.petitioner_id == Petitioner.id)
        .where(Petition.id == visit.petition_id)
    )
    if person is None or not person.phone or visit.starts_at is None:
        return None
    court = await db.get(Court, visit.court_id)
    room = await db.get(ReceptionRoom, visit.room_id) if visit.room_id else None
    place = (court.name if court else "") + (room.name if room else "")
    text = VISIT_TEXTS[purpose].format(
        when=local_text(when or visit.starts_at, settings),
        place=place,
        court=court.name if court else "法院",
    )
    message = queue_sms(db, person.phone, text, purpose=purpose, court_id=visit.court_id)
    await db.flush()
    return message


def queue_sms(
    db: AsyncSession, phone: str, text: str, *, purpose: str, court_id: int | None = None
) -> SmsMessage:
    """Write a message to the outbox (committed with the caller's change)."""
    message = SmsMessage(phone=phone, text=text, purpose=purpose, court_id=court_id)
    db.add(message)
    return message


async def deliver(database: Database, gateway: SmsGateway, message_ids: Sequence[int]) -> None:
    """Hand committed outbox messages to the gateway and record what happened to each."""
    if isinstance(gateway, OutboxGateway):
        return  # they wait, queued, for an operator to relay them: nothing to record
    for message_id in message_ids:
        async with database.reader() as db:
            message = await db.get(SmsMessage, message_id)
            if message is None or message.state is not SmsState.queued:
                continue
            phone, text = message.phone, message.text
        state, error, sent_at = SmsState.queued, "", None
        try:
            attempts = await gateway.send(message_id, phone, text)
            if attempts:
                state, sent_at = SmsState.sent, utcnow()
        except SmsError as exc:
            state, error, attempts = SmsState.failed, str(exc), exc.attempts
        async with database.writer() as db:
            await db.execute(
                update(SmsMessage)
                .where(SmsMessage.id == message_id)
                .values(
                    state=state,
                    error=error,
                    sent_at=sent_at,
                    attempts=SmsMessage.attempts + attempts,
                )
            )


async def outbox(db: AsyncSession, court_id: int | None, limit: int = 100) -> Sequence[SmsMessage]:
    """The newest messages operators see (portal login codes go to every court's operators:
    a petitioner has no court before they choose one)."""
    query = select(SmsMessage).order_by(SmsMessage.id.desc()).limit(limit)
    if court_id is not None:
        query = query.where((SmsMessage.court_id == court_id) | SmsMessage.court_id.is_(None))
    return (await db.scalars(query)).all()


async def mark_sent(db: AsyncSession, message_id: int, now: datetime | None = None) -> SmsMessage:
    """An operator relayed a queued (or failed) message by hand."""
    message = await db.get(SmsMessage, message_id)
    if message is None:
        raise NotFoundError("短信不存在")
    if message.state is SmsState.sent:
        raise ConflictError("该短信已标记为已发送", code="sms_sent")
    message.state = SmsState.sent
    message.sent_at = now or utcnow()
    message.error = ""
    await db.flush()
    return message
