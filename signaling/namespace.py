"""``/visit``: join, lobby, admit/refuse, invite, media state, leave, end, watch.

Room membership lives in this process (one Room per Visit, ``room_id == visit_id``); the
socket.io room ``visit:<id>`` holds the admitted participants and ``visit:<id>:staff`` the
staff, who see the lobby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import socketio

from config.vocabulary import CloseReason
from media.errors import MediaError
from media.room import Relay, Stream
from media.room import Room as MediaRoom
from signaling.gateway import Identity, RejoinTokens, Staff, VisitGateway
from signaling.placement import LocalPlacement, RoomPlacement
from signaling.protocol import (
    GUEST_ROLES,
    PROTOCOL_VERSION,
    Admit,
    ErrorCode,
    Invite,
    Join,
    MediaState,
    Message,
    Note,
    ParticipantRole,
    ProtocolError,
    Publish,
    Refuse,
    Subscribe,
    SubscribeAnswer,
    Unpublish,
    View,
    parse,
)
from signaling.server import REFUSED_EVENT, session_room, user_room

log = logging.getLogger("vreception.signaling")


@dataclass
class Participant:
    """One connection in a Room; a rejoin keeps the identity and gets a new id."""

    id: str
    sid: str
    identity: Identity
    staff: Staff | None
    admitted: bool
    joined_at: float = field(default_factory=time.time)
    audio: bool = True
    video: bool = True
    evidence: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "participant_id": self.id,
            "role": self.identity.role.value,
            "name": self.identity.name,
            "admitted": self.admitted,
            "audio": self.audio,
            "video": self.video,
            "evidence": self.evidence,
            "court": self.identity.court,
        }


@dataclass
class Room:
    """The participants of one visit on this node."""

    visit_id: str
    participants: dict[str, Participant] = field(default_factory=dict)
    admitted_keys: set[str] = field(default_factory=set)
    recording: bool = False
    # the recorder cannot write now: what the pages show (None: it writes)
    recording_problem: str | None = None
    host_absent_since: float | None = None  # the call goes on without its host since

    def host_present(self) -> bool:
        """Whether someone holding the call is in it (the judge; an on-site reception's
        operator: ``Identity.host``)."""
        return any(p.admitted and p.identity.host for p in self.participants.values())

    def by_key(self, key: str) -> Participant | None:
        return next((p for p in self.participants.values() if p.identity.key == key), None)

    def lobby(self) -> list[dict[str, Any]]:
        return [p.public() for p in self.participants.values() if not p.admitted]

    def members(self) -> list[dict[str, Any]]:
        return [p.public() for p in self.participants.values() if p.admitted]


class TokenBucket:
    """Per-connection rate limit: ``rate`` messages a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self.refused = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        return False


Handler = Callable[[str, Any], Awaitable[Any]]


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# how often a node looks for its rooms of visits ended elsewhere (close_ended_rooms)
ENDED_ROOMS_CHECK_S = 5.0


def _sends(sdp: str) -> bool:
    """Whether an SDP would send media: a media section (not rejected with port 0) whose
    direction, its own or else the session's (default ``sendrecv``), is ``sendrecv`` or
    ``sendonly``."""
    session = "sendrecv"
    sections: list[tuple[bool, str | None]] = []  # (open, direction) of each m= section
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            fields = line.split()
            sections.append((len(fields) > 1 and fields[1] != "0", None))
        elif line.startswith("a=") and line[2:] in _DIRECTIONS:
            if sections:
                sections[-1] = (sections[-1][0], line[2:])
            else:
                session = line[2:]
    return any(
        live and (direction or session) in ("sendrecv", "sendonly") for live, direction in sections
    )


MEDIA_FAILED = "音视频连接建立失败，请稍后重试；如多次失败，请联系法院技术人员"


def _media_refusal(exc: Exception) -> ProtocolError:
    """A relay failure as the client sees it: ``invalid_sdp`` for an SDP the relay refused
    before setting anything up (its reason is the relay's own Chinese), ``media_failed``
    otherwise, in words for the person (the cause, in English and naming the server's
    addresses or ports, goes to the log only)."""
    if isinstance(exc, MediaError) and exc.code == "invalid_sdp":
        return ProtocolError(ErrorCode.invalid_sdp, exc.message[:200])
    log.warning("media negotiation failed: %s", exc)
    return ProtocolError(ErrorCode.media_failed, MEDIA_FAILED)


class VisitNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """The signaling namespace of live visits (protocol version 1, docs/protocol.md)."""

    def __init__(
        self,
        gateway: VisitGateway,
        tokens: RejoinTokens,
        relay: Relay | None = None,
        *,
        placement: RoomPlacement | None = None,
        clock: Callable[[], float] = time.time,
        rate: float = 20.0,
        burst: int = 40,
        flood_limit: int = 200,
    ) -> None:
        super().__init__("/visit")
        self.gateway = gateway
        self.tokens = tokens
        self.relay = relay
        self.placement = placement or LocalPlacement()
        self.rooms: dict[str, Room] = {}
        self.clock = clock
        self._where: dict[str, tuple[str, str]] = {}  # sid → (visit id, participant id)
        self._staff: dict[str, Staff | None] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._rate, self._burst, self._flood = rate, burst, flood_limit
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: set[str] = set()
        self._joining: set[str] = set()  # sockets whose join is under way
        self._handlers: dict[str, Callable[[str, Any], Awaitable[Any]]] = {
            "join": self._join,
            "admit": self._admit,
            "refuse": self._refuse,
            "invite": self._invite,
            "media_state": self._media_state,
            "leave": self._leave,
            "end": self._end,
            "publish": self._publish,
            "unpublish": self._unpublish,
            "note": self._note,
            "subscribe": self._subscribe,
            "subscribe_answer": self._subscribe_answer,
            "view": self._view,
        }

    @property
    def placement(self) -> RoomPlacement:
        """Where rooms live; it tells :meth:`lease_lost` when one held here moved away."""
        return self._placement

    @placement.setter
    def placement(self, placement: RoomPlacement) -> None:
        self._placement = placement
        placement.on_lost = self.lease_lost

    # ------------------------------------------------------------ plumbing

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self._buckets[sid] = TokenBucket(self._rate, self._burst)
        staff = await self.gateway.staff(environ)
        self._staff[sid] = staff
        if staff is not None:  # so that logout or an account change closes it on any node
            await self.enter_room(sid, user_room(staff.user_id))
            await self.enter_room(sid, session_room(staff.session_id))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        # engine.io's reason (ping timeout, transport close, client disconnect…) goes to the
        # log only, for IT staff telling a starved or unreachable browser from a closed page
        await self._remove(sid, CloseReason.disconnected, cause=str(reason or ""))
        self._staff.pop(sid, None)
        self._buckets.pop(sid, None)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Every inbound event passes here: rate limit, validation, the staff identity checked
        again, errors as ``error``. ``connect`` and ``disconnect`` come only from the server
        itself: a client emitting them (or any reserved or non-string name) arrives as
        REFUSED_EVENT (signaling/server.py)."""
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        data = args[1] if len(args) > 1 else None
        handler = self._handlers.get(event)
        try:
            bucket = self._buckets.get(sid)
            if bucket is not None and not bucket.take():
                if bucket.refused > self._flood:
                    log.warning("disconnecting %s: message flood", sid)
                    await self.disconnect(sid)
                raise ProtocolError(ErrorCode.rate_limited, "消息过于频繁，请稍后再试")
            if event == REFUSED_EVENT:
                raise ProtocolError(ErrorCode.invalid_message, "事件名无效：保留名或非字符串")
            if handler is None:
                raise ProtocolError(ErrorCode.invalid_message, f"未知事件 {event!r}"[:80])
            message = parse(event, data)
            await self._recheck_staff(sid)
            result = await handler(sid, message)
            return {"ok": True, **(result or {})}
        except ProtocolError as exc:
            payload = exc.payload(event if handler else "?")
            await self.emit("error", payload, to=sid)
            self._close_after_answer(sid)
            return {"ok": False, "error": {k: v for k, v in payload.items() if k != "event"}}
        except Exception:
            log.exception("signaling: %s failed", event)
            error = ProtocolError(ErrorCode.internal_error, "服务器内部错误，已记录")
            await self.emit("error", error.payload(event), to=sid)
            return {"ok": False, "error": {"code": error.code.value, "message": error.message}}

    async def identity_revoked(self, sid: str) -> None:
        """The staff login behind ``sid`` ended (logout, account disabled, role changed; see
        signaling/server.py StaffSockets): it leaves the room saying so; the socket closes."""
        self._staff[sid] = None
        await self._remove(sid, CloseReason.identity_revoked)

    def bucket(self, sid: str) -> TokenBucket | None:
        """The rate limit of one connection."""
        return self._buckets.get(sid)

    async def _recheck_staff(self, sid: str) -> None:
        """A staff connection acts only while its login still holds (session, account, role);
        otherwise it is refused and closed."""
        staff = self._staff.get(sid)
        if staff is None:
            return
        if await self.gateway.current(staff) is not None:
            return
        log.info("closing %s: the staff login of user %s no longer holds", sid, staff.user_id)
        await self.identity_revoked(sid)
        self._closing.add(sid)  # closed once the refusal is acknowledged
        raise ProtocolError(ErrorCode.unauthenticated, "登录已失效，请重新登录")

    def _close_after_answer(self, sid: str) -> None:
        """Disconnect ``sid`` after the acknowledgement being returned has been queued (the
        server queues it before this task yields again)."""
        if sid in self._closing:
            self._closing.discard(sid)
            asyncio.get_running_loop().call_soon(self._soon, self.disconnect(sid))

    def _soon(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _participant(self, sid: str) -> tuple[Room, Participant]:
        where = self._where.get(sid)
        if where is None:
            raise ProtocolError(ErrorCode.not_joined, "请先加入接访")
        room = self.rooms.get(where[0])
        me = room.participants.get(where[1]) if room is not None else None
        if room is None or me is None:  # removed meanwhile (replaced, refused, ended)
            raise ProtocolError(ErrorCode.not_joined, "请先加入接访")
        return room, me

    def _sender(self, sid: str) -> tuple[Room, Participant]:
        """The participant, who may send media (an observer never does)."""
        room, me = self._participant(sid)
        if me.identity.role is ParticipantRole.observer:
            raise ProtocolError(ErrorCode.forbidden, "监看人员不能发送音视频")
        return room, me

    def _judge(self, sid: str) -> tuple[Room, Participant, Staff]:
        room, me = self._participant(sid)
        if me.identity.role not in (ParticipantRole.judge, ParticipantRole.host) or not me.staff:
            raise ProtocolError(ErrorCode.forbidden, "只有接访法官或约谈主持人可以这样做")
        return room, me, me.staff

    async def _host(self, sid: str) -> tuple[Room, Participant, Staff]:
        """The judge (or host), checked against the visit as it stands now."""
        room, me, staff = self._judge(sid)
        await self.gateway.may_host(room.visit_id, staff)
        self._still_in(room, me)
        return room, me, staff

    @staticmethod
    def call_room(visit_id: str) -> str:
        return f"visit:{visit_id}"

    @staticmethod
    def staff_room(visit_id: str) -> str:
        return f"visit:{visit_id}:staff"

    def _note_host_presence(self, room: Room) -> None:
        """Keep when the call lost its host (housekeeping ends it after a while)."""
        if not room.recording or room.host_present():
            room.host_absent_since = None
        elif room.host_absent_since is None:
            room.host_absent_since = self.clock()

    def host_absent(self, since: float) -> list[str]:
        """The visits whose call on this node has had no host since ``since`` or longer."""
        return [
            r.visit_id
            for r in self.rooms.values()
            if r.host_absent_since is not None and r.host_absent_since <= since
        ]

    async def _lobby_changed(self, room: Room) -> None:
        await self.emit("lobby", {"waiting": room.lobby()}, room=self.staff_room(room.visit_id))

    # ------------------------------------------------------------ events

    async def _join(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Join)
        if sid in self._where or sid in self._joining:
            raise ProtocolError(ErrorCode.already_joined, "已在接访中")
        self._joining.add(sid)
        try:
            return await self._join_now(sid, message)
        finally:
            self._joining.discard(sid)

    async def _join_now(self, sid: str, message: Join) -> dict[str, Any]:
        visit_id = message.visit_id
        # first of all (before a code is spent): is the visit's room on this node?
        owner = await self.placement.claim(visit_id)
        if owner != self.placement.node_url:
            raise ProtocolError(
                ErrorCode.wrong_node, "本次接访由另一台服务器承载，正在转接", {"node": owner}
            )
        # an unknown or closed visit is told before a code is spent
        if not await self.gateway.is_open(visit_id):
            raise ProtocolError(ErrorCode.visit_closed, "该接访已结束或不存在")
        staff: Staff | None = None
        admitted_before = False
        if message.watch and (message.code or message.rejoin):
            raise ProtocolError(ErrorCode.invalid_message, "监看须以工作人员身份登录")
        if message.code:
            identity = await self.gateway.redeem(visit_id, message.code)
            try:
                return await self._seat(sid, message, identity, None, False)
            except Exception:
                # the code was spent, but the join did not complete (the socket went, the
                # visit ended meanwhile): the guest would need a new code for the next try
                with contextlib.suppress(Exception):
                    await self.gateway.release(visit_id, identity)
                raise
        elif message.rejoin:
            identity, admitted_before = self.tokens.verify(visit_id, message.rejoin)
            if identity.role not in GUEST_ROLES:  # a token issued before observers had none
                raise ProtocolError(ErrorCode.unauthenticated, "请先登录")
        else:
            staff = self._staff.get(sid)
            if staff is None:
                raise ProtocolError(ErrorCode.unauthenticated, "请先登录，或使用接访码加入")
            identity = await self.gateway.entitle(visit_id, staff, watch=message.watch)
        return await self._seat(sid, message, identity, staff, admitted_before)

    async def _seat(
        self,
        sid: str,
        message: Join,
        identity: Identity,
        staff: Staff | None,
        admitted_before: bool,
    ) -> dict[str, Any]:
        """The participant whose identity was checked enters the room (or its lobby)."""
        visit_id = message.visit_id
        if sid not in self._buckets:  # the socket went away while this join waited
            raise ProtocolError(ErrorCode.not_joined, "连接已断开")
        room = self.rooms.setdefault(visit_id, Room(visit_id))
        self.placement.hold(visit_id)  # keep the room pinned here while it lives
        previous = room.by_key(identity.key)
        admitted = (
            identity.role not in GUEST_ROLES
            or admitted_before
            or identity.key in room.admitted_keys
        )
        me = Participant(
            id=secrets.token_hex(8), sid=sid, identity=identity, staff=staff, admitted=admitted
        )
        room.participants[me.id] = me
        self._where[sid] = (visit_id, me.id)
        if previous is not None:
            # replaced once its successor is in: the room never empties meanwhile, so it
            # stays open (and its recording goes on) even when that was its last connection
            await self._remove(previous.sid, CloseReason.replaced)
            await self.disconnect(previous.sid)
        observer = identity.role is ParticipantRole.observer
        if staff is not None and not observer:  # observers see no lobby and no notes
            await self.enter_room(sid, self.staff_room(visit_id))
        if admitted:
            await self._enter_call(room, me)
        else:
            if identity.role is ParticipantRole.petitioner:
                await self.gateway.lobby(visit_id, identity)
            await self._lobby_changed(room)
        log.info(
            "visit %s: %s joined as %s (%s)",
            visit_id,
            me.id,
            identity.role.value,
            "in call" if admitted else "lobby",
        )
        answer: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "participant_id": me.id,
            "role": identity.role.value,
            "admitted": admitted,
            "participants": room.members() if admitted else [],
            "recording": room.recording,
            # how the recording stands (a write failure's warning is not to be cleared)
            "recording_ok": room.recording_problem is None,
            "recording_message": room.recording_problem,
            "host": identity.host,
            # RTCConfiguration.iceServers, TURN credentials issued to this participant
            "ice_servers": [s.public() for s in self.relay.ice_servers.issue(identity.key)]
            if self.relay is not None
            else [],
        }
        if staff is not None and not observer:
            answer["lobby"] = room.lobby()
        if identity.role in GUEST_ROLES:
            # guests only: an observer is staff, who comes back with their login (a token
            # would let anyone holding it watch without one, past a logout or a transfer)
            answer["rejoin"] = self.tokens.issue(visit_id, identity, admitted)
        return answer

    def _still_in(self, room: Room, me: Participant) -> None:
        """After an await: the room is still this node's and ``me`` still in it (the visit
        may have ended, the socket gone or been replaced meanwhile)."""
        if self.rooms.get(room.visit_id) is not room:
            raise ProtocolError(ErrorCode.visit_closed, "该接访已结束或不存在")
        if room.participants.get(me.id) is not me:
            raise ProtocolError(ErrorCode.not_joined, "请先加入接访")

    async def _enter_call(self, room: Room, me: Participant) -> None:
        room.admitted_keys.add(me.identity.key)
        await self.gateway.room_event(room.visit_id, "joined", me.identity)
        self._still_in(room, me)
        # in the call room first: the recording notice below reaches the newcomer too
        await self.enter_room(me.sid, self.call_room(room.visit_id))
        self._still_in(room, me)
        if self.relay is not None:
            self.relay.room(room.visit_id).describe(me.id, me.identity.role.value, me.identity.name)
            if not room.recording:
                await self._start_recording(room, me)
                self._still_in(room, me)  # (gone while the recording started: not announced)
                if not room.recording and not await self.gateway.is_open(room.visit_id):
                    # the visit ended while this join was under way (its room was closed and
                    # this one opened after): no call without its record
                    await self._remove(me.sid, CloseReason.ended, announce=False)
                    raise ProtocolError(ErrorCode.visit_closed, "该接访已结束")
            else:
                # recorded already: the newcomer learns how it stands (a write failure's
                # warning stays on everyone's page until the recorder writes again)
                problem = room.recording_problem
                state = {"recording": True, "ok": problem is None}
                await self.emit(
                    "recording_state",
                    state if problem is None else {**state, "message": problem},
                    to=me.sid,
                )
        self._note_host_presence(room)
        await self.emit(
            "participant_joined", me.public(), room=self.call_room(room.visit_id), skip_sid=me.sid
        )
        if self.relay is not None and self.rooms.get(room.visit_id) is room:
            # whose network is poor already, for the newcomer
            for participant_id in self.relay.room(room.visit_id).poor_networks():
                await self.emit("network", _network(participant_id, True), to=me.sid)

    async def _start_recording(self, room: Room, me: Participant) -> None:
        """Start the visit's recording if ``me`` entering the call starts it
        (scheduler/lifecycle.py ``starts_recording``)."""
        if not await self.gateway.starts_recording(room.visit_id, me.identity):
            return
        if room.recording or self.rooms.get(room.visit_id) is not room or self.relay is None:
            return  # another join started it meanwhile, or the visit ended
        # 一案一录: recorded from this moment on
        self.relay.room(room.visit_id).start_recording()
        room.recording = True
        await self.gateway.recording_started(room.visit_id)
        await self.emit(
            "recording_state", {"recording": True, "ok": True}, room=self.call_room(room.visit_id)
        )

    async def _admit(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Admit)
        room, host, judge = await self._host(sid)
        guest = room.participants.get(message.participant_id)
        if guest is None or guest.admitted:
            raise ProtocolError(ErrorCode.unknown_participant, "候场名单中没有该参与人")
        await self.gateway.admitted(room.visit_id, judge, guest.identity)
        try:
            self._still_in(room, guest)
            guest.admitted = True
            await self._enter_call(room, guest)
        except ProtocolError:
            await self._admitted_gone(room, host)
            raise
        await self.emit(
            "admitted",
            {
                "participants": room.members(),
                "rejoin": self.tokens.issue(room.visit_id, guest.identity, True),
                "recording": room.recording,
                "recording_ok": room.recording_problem is None,
                "recording_message": room.recording_problem,
            },
            to=guest.sid,
        )
        await self._lobby_changed(room)
        return {"participant_id": guest.id}

    async def _admitted_gone(self, room: Room, host: Participant) -> None:
        """The guest left while being admitted: the visit is in progress all the same, so
        its recording starts (with the host in the call) and the lobby is told."""
        if self.rooms.get(room.visit_id) is not room:
            raise ProtocolError(ErrorCode.visit_closed, "该接访已结束或不存在")
        if not room.recording and room.participants.get(host.id) is host:
            await self._start_recording(room, host)
        await self._lobby_changed(room)
        raise ProtocolError(ErrorCode.unknown_participant, "该参与人已离开")

    async def _refuse(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Refuse)
        room, _, judge = await self._host(sid)
        guest = room.participants.get(message.participant_id)
        if guest is None or guest.admitted:
            raise ProtocolError(ErrorCode.unknown_participant, "候场名单中没有该参与人")
        await self.gateway.refused(room.visit_id, judge, guest.identity, message.reason)
        await self.emit("refused", {"reason": message.reason}, to=guest.sid)
        await self._remove(guest.sid, CloseReason.refused)
        return {"participant_id": guest.id}

    async def _invite(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Invite)
        room, _, judge = await self._host(sid)
        invitation = await self.gateway.invite(
            room.visit_id, judge, ParticipantRole(message.role), message.label
        )
        return {
            "code": invitation.code,
            "role": invitation.role.value,
            "expires_at": invitation.expires_at.isoformat(),
        }

    async def _note(self, sid: str, message: Message) -> dict[str, Any]:
        """The judge's time-stamped note: on the visit's timeline, in the transcript."""
        assert isinstance(message, Note)
        room, me, _ = await self._host(sid)
        at = time.time()
        try:
            await self.gateway.note(room.visit_id, me.identity, message.text)
        except Exception:
            # not on the timeline, so in neither the minutes nor the transcript: the page
            # keeps the text and says so, instead of showing it as noted
            log.exception("visit %s: a note could not be kept", room.visit_id)
            raise ProtocolError(ErrorCode.internal_error, "备注未能保存，请重试") from None
        note = {"at": at, "author": me.identity.name, "text": message.text}
        await self.emit("note", note, room=self.staff_room(room.visit_id))
        return note

    async def _media_state(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, MediaState)
        room, me = self._sender(sid)
        # whether it shows evidence is the relay's to say (publish, unpublish, a failed
        # connection), not the page's: a page's stale flag would hide evidence_stopped
        me.audio, me.video = message.audio, message.video
        if me.admitted:
            await self.emit(
                "media_state", me.public(), room=self.call_room(room.visit_id), skip_sid=sid
            )
        return {}

    def _media_room(self, sid: str) -> tuple[Room, Participant, MediaRoom]:
        room, me = self._participant(sid)
        if not me.admitted:
            raise ProtocolError(ErrorCode.not_admitted, "请等待法官准许进入")
        if self.relay is None:
            raise ProtocolError(ErrorCode.media_failed, "本节点未启用媒体中继")
        return room, me, self.relay.room(room.visit_id)

    async def _publish(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Publish)
        self._sender(sid)
        room, me, media = self._media_room(sid)
        stream = Stream(message.stream)
        try:
            answer = await media.publish(me.id, message.sdp, stream)
        except (MediaError, ValueError) as exc:
            raise _media_refusal(exc) from None
        if stream is Stream.evidence:
            me.evidence = True
            await self.gateway.room_event(room.visit_id, "evidence_shown", me.identity)
        await self._tracks_changed(room, me, sid)
        return {"type": "answer", "sdp": answer}

    async def _unpublish(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Unpublish)
        self._sender(sid)
        room, me, media = self._media_room(sid)
        stream = Stream(message.stream)
        if await media.unpublish(me.id, stream) and stream is Stream.evidence:
            await self._evidence_stopped(room.visit_id, me)
        await self._tracks_changed(room, me, sid)
        return {}

    async def _evidence_stopped(self, visit_id: str, me: Participant) -> None:
        """``me`` no longer shows evidence (stopped, or its connection failed): on the
        pages and on the visit's record."""
        me.evidence = False
        await self.gateway.room_event(visit_id, "evidence_stopped", me.identity)

    async def _tracks_changed(self, room: Room, me: Participant, sid: str) -> None:
        await self.emit(
            "tracks_changed",
            {"participant_id": me.id, "participant": me.public()},
            room=self.call_room(room.visit_id),
            skip_sid=sid,
        )

    async def _subscribe(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, Subscribe)
        room, me, media = self._media_room(sid)
        try:
            offer = await media.subscribe(me.id, restart=message.restart)
        except (MediaError, ValueError) as exc:
            raise _media_refusal(exc) from None
        if offer is None:  # nothing published yet: wait for tracks_changed
            return {"type": "offer", "sdp": None, "tracks": [], "renegotiation": False}
        tracks = []
        for t in offer.tracks:
            owner = room.participants.get(t.participant_id)
            tracks.append(
                {
                    "mid": t.mid,
                    "track_id": t.track_id,
                    "participant_id": t.participant_id,
                    "kind": t.kind,
                    "source": t.source.value,
                    "role": owner.identity.role.value if owner else None,
                    "name": owner.identity.name if owner else "",
                }
            )
        return {
            "type": "offer",
            "sdp": offer.sdp,
            "tracks": tracks,
            "renegotiation": offer.renegotiation,
        }

    async def _subscribe_answer(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, SubscribeAnswer)
        _, me, media = self._media_room(sid)
        if me.identity.role is ParticipantRole.observer and _sends(message.sdp):
            raise ProtocolError(ErrorCode.forbidden, "监看人员不能发送音视频")
        try:
            await media.answer(me.id, message.sdp)
        except (MediaError, ValueError) as exc:
            raise _media_refusal(exc) from None
        return {}

    async def _view(self, sid: str, message: Message) -> dict[str, Any]:
        assert isinstance(message, View)
        _, me, media = self._media_room(sid)
        await media.view(me.id, message.heights)
        return {}

    async def _leave(self, sid: str, message: Message) -> dict[str, Any]:
        self._participant(sid)
        await self._remove(sid, CloseReason.left)
        return {}

    async def _end(self, sid: str, message: Message) -> dict[str, Any]:
        room, me = self._participant(sid)
        if not me.identity.host or me.staff is None:
            raise ProtocolError(ErrorCode.forbidden, "只有接访法官（现场接待为操作员）可以结束")
        await self.gateway.ended(room.visit_id, me.staff)
        await self.close_visit(room.visit_id)
        log.info("visit %s ended by %s", room.visit_id, me.staff.user_id)
        return {}

    async def watch_networks(self, interval: float = 1.0) -> None:
        """Every ``interval`` seconds, tell each call room whose downlink became too thin for
        video (网络较差) or good again (``network``, docs/protocol.md; media/quality.py), and
        close the publishing connections that failed (``tracks_changed`` to the others, whose
        subscriptions then drop those tracks); every ENDED_ROOMS_CHECK_S, close the rooms of
        visits that ended elsewhere (:meth:`close_ended_rooms`)."""
        checked = time.monotonic()
        while self.relay is not None:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if now - checked >= ENDED_ROOMS_CHECK_S:
                checked = now
                try:
                    await self.close_ended_rooms()
                except Exception:
                    log.exception("closing the rooms of ended visits failed; will retry")
            for visit_id, media in list(self.relay.rooms.items()):
                try:
                    for participant_id, stream in await media.close_failed_publishers():
                        log.info(
                            "visit %s: participant %s's %s connection failed; closed",
                            visit_id,
                            participant_id,
                            stream.value,
                        )
                        room = self.rooms.get(visit_id)
                        owner = room.participants.get(participant_id) if room else None
                        if owner is not None and stream is Stream.evidence and owner.evidence:
                            await self._evidence_stopped(visit_id, owner)
                        await self.emit(
                            "tracks_changed",
                            {
                                "participant_id": participant_id,
                                "participant": owner.public() if owner else None,
                            },
                            room=self.call_room(visit_id),
                        )
                    for participant_id, poor in media.network_changes(now):
                        log.info(
                            "visit %s: participant %s network poor=%s",
                            visit_id,
                            participant_id,
                            poor,
                        )
                        await self.emit(
                            "network", _network(participant_id, poor), room=self.call_room(visit_id)
                        )
                except Exception:  # one room's trouble does not stop the others' notices
                    log.exception("visit %s: network notice failed", visit_id)

    async def close_ended_rooms(self) -> list[str]:
        """Close this node's rooms of visits that have ended (on another node, or through
        the API served by another node, which can only tell the pages): everyone still
        connected here is told, and the recording stops and closes its files well within
        the 60 s the pipeline started elsewhere waits for them, so it never finalizes, and
        signs, a recording still being written. Returns the visits whose rooms closed."""
        held = list(self.rooms)
        if not held:
            return []
        still_open = await self.gateway.open_visits(held)
        closed = []
        for visit_id in held:
            if visit_id not in still_open and visit_id in self.rooms:
                log.warning("visit %s ended elsewhere; closing its room here", visit_id)
                try:
                    await self.close_visit(visit_id)
                except Exception:  # the others still close; this one is tried again
                    log.exception("visit %s: closing its room failed", visit_id)
                    continue
                closed.append(visit_id)
            elif visit_id in self.rooms:
                try:
                    await self._drop_unentitled(self.rooms[visit_id])
                except Exception:
                    log.exception("visit %s: checking its staff's places failed", visit_id)
        return closed

    async def _drop_unentitled(self, room: Room) -> None:
        """Staff whose place in the room is gone or changed since they joined (the visit given
        to another judge, an invitation withdrawn) leave it: they would go on seeing the
        lobby, receiving the call and holding it as its host. Observers' watch is theirs."""
        present = [
            p
            for p in room.participants.values()
            if p.staff is not None and p.identity.role is not ParticipantRole.observer
        ]
        if not present:
            return
        roles = await self.gateway.room_roles(room.visit_id, [p.staff for p in present if p.staff])
        for p in present:
            assert p.staff is not None
            if roles.get(p.staff.user_id) != p.identity.role.value:
                log.warning(
                    "visit %s: %s's place changed (%s → %s); removed",
                    room.visit_id,
                    p.staff.user_id,
                    p.identity.role.value,
                    roles.get(p.staff.user_id),
                )
                await self.emit(
                    "error",
                    ProtocolError(ErrorCode.not_entitled, "您已不再是本次接访的参与人").payload(
                        "join"
                    ),
                    to=p.sid,
                )
                await self._remove(p.sid, CloseReason.identity_revoked)
                await self.disconnect(p.sid)

    async def close_visit(self, visit_id: str, reason: str = "ended") -> None:
        """The visit has ended (here, or through the API) for ``reason`` (an EndReason):
        everyone is told, the room and its media close, and its recording stops."""
        told = {"visit_id": visit_id, "reason": reason}
        await self.emit("ended", told, room=self.call_room(visit_id))
        room = self.rooms.get(visit_id)
        if room is None:
            return
        for p in list(room.participants.values()):
            if not p.admitted:
                await self.emit("ended", told, to=p.sid)
            await self._remove(p.sid, CloseReason.ended, announce=False)
        await self._close_room(visit_id)

    async def lease_lost(self, visit_id: str) -> None:
        """Another node holds the visit's room now (this one was cut off from Redis for
        longer than a lease, and a participant reached that node meanwhile): the room here
        closes, as at a shutdown: everyone in it is told (``server_closing``) and removed
        (``server_stopped``), the room and its media close, its recording stops (its files
        closed, recording.json keeping what the other node records), and their connections
        are closed at the engine.io level, so the pages reconnect, rejoin and are sent to
        that node (``wrong_node``). The visit stays open."""
        room = self.rooms.get(visit_id)
        if room is None:
            return
        log.error("visit %s: its room is held by another node now; closing it here", visit_id)
        sids = [p.sid for p in room.participants.values()]
        for sid in sids:
            with contextlib.suppress(Exception):
                await self.emit("server_closing", {}, to=sid)
        for sid in sids:
            try:
                await self._remove(sid, CloseReason.server_stopped, announce=False)
            except Exception:  # the others are still removed; the room still closes
                log.exception("visit %s: removing %s failed", visit_id, sid)
        if self.rooms.get(visit_id) is room:
            await self._close_room(visit_id)
        for sid in sids:
            await self._reconnect(sid)

    async def _reconnect(self, sid: str) -> None:
        """Close ``sid``'s connection at the engine.io level (as at shutdown): the page
        reconnects by itself and joins again (a socket.io-level disconnect would stop it
        from trying)."""
        server = getattr(self, "server", None)
        if server is None:
            return
        try:
            eio_sid = server.manager.eio_sid_from_sid(sid, self.namespace)
            connection = server.eio.sockets.get(eio_sid) if eio_sid else None
            if connection is None:
                return
            await server.eio.disconnect(eio_sid)
            # wake engine.io's writer, which then closes the websocket at once
            connection.queue.put_nowait(None)
        except Exception:
            log.exception("closing the connection %s failed", sid)

    async def shutdown(self) -> None:
        """This node stops: every page connected here is told (it reconnects and rejoins by
        itself once a node serves again), every room closes and its recording's files are
        closed (nothing left to repair); the visits themselves stay open."""
        for sid in list(self._staff):  # every connection of this node, joined or not
            await self.emit("server_closing", {}, to=sid)
        for room in list(self.rooms.values()):
            for p in list(room.participants.values()):
                await self._remove(p.sid, CloseReason.server_stopped, announce=False)
            if room.visit_id in self.rooms:
                await self._close_room(room.visit_id)

    async def _remove(
        self, sid: str, reason: CloseReason, announce: bool = True, cause: str = ""
    ) -> None:
        where = self._where.pop(sid, None)
        if where is None:
            return
        room = self.rooms.get(where[0])
        if room is None:
            return
        me = room.participants.pop(where[1], None)
        if me is None:
            return
        await self.leave_room(sid, self.call_room(room.visit_id))
        await self.leave_room(sid, self.staff_room(room.visit_id))
        log.info(
            "visit %s: %s (%s) left: %s%s",
            room.visit_id,
            me.id,
            me.identity.role.value,
            reason.value,
            f" ({cause})" if cause else "",
        )
        if me.admitted:
            await self.gateway.room_event(room.visit_id, "left", me.identity, reason=reason.value)
            if me.identity.role is ParticipantRole.observer:
                await self.gateway.watch_stopped(room.visit_id, me.identity, reason.value)
            self._note_host_presence(room)
        published = False
        if self.relay is not None and room.visit_id in self.relay.rooms:
            published = await self.relay.rooms[room.visit_id].leave(me.id)
        if me.evidence:  # its evidence went with it: on the visit's timeline as stopped
            await self._evidence_stopped(room.visit_id, me)
        if announce:
            if me.admitted:
                await self.emit(
                    "participant_left",
                    {
                        "participant_id": me.id,
                        "reason": reason.value,
                        "role": me.identity.role.value,
                        "name": me.identity.name,
                    },
                    room=self.call_room(room.visit_id),
                )
            else:
                await self._lobby_changed(room)
            if published:  # the others' subscriptions still carry its tracks
                await self.emit(
                    "tracks_changed",
                    {"participant_id": me.id, "participant": me.public()},
                    room=self.call_room(room.visit_id),
                )
        if not room.participants and self.rooms.get(room.visit_id) is room:
            await self._close_room(room.visit_id)

    async def recording_failed(self, visit_id: str, message: str) -> None:
        """The recorder cannot write: every page of the visit shows it at once."""
        room = self.rooms.get(visit_id)
        if room is not None:
            room.recording_problem = message
        await self.emit(
            "recording_state",
            {"recording": True, "ok": False, "message": message},
            room=self.call_room(visit_id),
        )

    async def recording_recovered(self, visit_id: str, message: str) -> None:
        """The recorder writes again: the warning clears; ``message`` names the span missed."""
        room = self.rooms.get(visit_id)
        if room is not None:
            room.recording_problem = None
        await self.emit(
            "recording_state",
            {"recording": True, "ok": True, "message": message},
            room=self.call_room(visit_id),
        )

    async def _close_room(self, visit_id: str) -> None:
        self.rooms.pop(visit_id, None)
        if self.relay is not None:
            await self.relay.close_room(visit_id)
        if visit_id not in self.rooms:  # nobody joined again while it was closing
            await self.placement.release(visit_id)


def _network(participant_id: str, poor: bool) -> dict[str, Any]:
    return {"participant_id": participant_id, "poor": poor}
