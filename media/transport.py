"""Peer connections of the relay: no STUN by default, announced host addresses, and an
optional UDP port range (aioice 0.13 has no option for either; see docs/relay-design.md §4);
and the screening of every SDP a client sends before any of it reaches aiortc or aioice."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
from collections.abc import Sequence
from typing import Any

import ifaddr
from aioice import Candidate, Connection
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

from config.turn import IceServer
from media import seams
from media.errors import MediaError

log = logging.getLogger("vreception.media")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# An SDP of a browser has a few media sections (one per track) and a few candidates each.
MAX_MEDIA_SECTIONS = 64
MAX_CANDIDATES = 256
MAX_CANDIDATE_ADDRESSES = 16

_installed: tuple[str, ...] | None = None
_port_range: tuple[int, int] | None = None
_next_port = itertools.count()


def announce_addresses(addresses: Sequence[str]) -> None:
    """The host addresses ICE gathers (aioice leaves out 127.0.0.1 unless told)."""
    global _installed
    chosen = tuple(addresses)
    if _installed == chosen:
        return
    seams.set_host_addresses(chosen)
    _installed = chosen


def announced() -> tuple[str, ...]:
    """The host addresses the relay offers (loopback until configured)."""
    return _installed or ("127.0.0.1",)


def default_allowed_networks(addresses: Sequence[str]) -> list[Network]:
    """Where the relay may send ICE checks by default: the networks of the announced
    addresses as this host's interfaces define them (127.0.0.1 → 127.0.0.0/8, a LAN
    address → its LAN); an address on no interface (e.g. behind NAT) gives its /24 (IPv6:
    its /64)."""
    prefixes: dict[str, int] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            host = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            prefixes[str(ipaddress.ip_address(host.split("%")[0]))] = ip.network_prefix
    networks: list[Network] = []
    for address in addresses:
        parsed = ipaddress.ip_address(address)
        prefix = prefixes.get(str(parsed), 24 if parsed.version == 4 else 64)
        network = ipaddress.ip_network(f"{parsed}/{prefix}", strict=False)
        if network not in networks:
            networks.append(network)
    return networks


def _invalid(message: str) -> MediaError:
    return MediaError("invalid_sdp", "媒体描述（SDP）无效：" + message)


def screen_sdp(sdp: str, allowed: Sequence[Network]) -> str:
    """Check an offer or answer from a client before anything is set up, and drop its ICE
    candidates that the relay must not contact: addresses outside ``allowed``, mDNS
    (``.local``) and other names. Raises MediaError("invalid_sdp") with a message for
    people; never lets aiortc's parser fail later with a traceback."""
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser asserts, indexes and converts freely
        log.info("refused an SDP that does not parse: %r", exc)
        raise _invalid("格式错误，无法解析") from None
    if not parsed.media:
        raise _invalid("没有媒体段")
    if len(parsed.media) > MAX_MEDIA_SECTIONS:
        raise _invalid(f"媒体段过多（{len(parsed.media)} 个，最多 {MAX_MEDIA_SECTIONS} 个）")
    candidates = []
    for number, media in enumerate(parsed.media, start=1):
        if media.kind not in ("audio", "video", "application"):
            raise _invalid(f"第 {number} 个媒体段的类型 {media.kind[:20]!r} 不受支持")
        if not 0 <= media.port <= 65535:
            raise _invalid(f"第 {number} 个媒体段的端口超出范围")
        if media.kind != "application" and not media.fmt:
            raise _invalid(f"第 {number} 个媒体段没有负载类型")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise _invalid(f"第 {number} 个媒体段缺少 ICE 凭据")
        if media.dtls is None or not media.dtls.fingerprints:
            raise _invalid(f"第 {number} 个媒体段缺少 DTLS 参数（fingerprint、setup）")
        for candidate in media.ice_candidates:
            if not 1 <= candidate.port <= 65535:
                raise _invalid(f"第 {number} 个媒体段有端口超出范围的候选地址")
            if candidate.protocol.lower() not in ("udp", "tcp"):
                raise _invalid(f"第 {number} 个媒体段有传输协议无效的候选地址")
            candidates.append(candidate)
    if len(candidates) > MAX_CANDIDATES:
        raise _invalid(f"候选地址过多（{len(candidates)} 个，最多 {MAX_CANDIDATES} 个）")
    if len({c.ip for c in candidates}) > MAX_CANDIDATE_ADDRESSES:
        raise _invalid(f"候选地址所含主机过多（最多 {MAX_CANDIDATE_ADDRESSES} 个）")
    kept, dropped = [], 0
    for line in sdp.splitlines():
        if line.startswith("a=candidate:") and not _reachable(
            candidate_from_sdp(line[len("a=candidate:") :]).ip, allowed
        ):
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        log.info("dropped %d ICE candidates outside media_allowed_networks", dropped)
    return "\r\n".join(kept) + "\r\n"


def opus_inband_fec(sdp: str) -> str:
    """The relay's SDP with Opus in-band FEC asked for (``useinbandfec=1``, RFC 7587): in an
    answer to a publisher it makes the browser's Opus encoder carry each frame's redundancy
    in the next packet, so a lost audio packet is recovered by every subscriber's decoder.
    aiortc puts no format parameters on Opus; the relay forwards packets, so nothing of
    aiortc's depends on them."""
    lines = sdp.split("\r\n")
    rtpmap, fmtp = "a=rtpmap:", "a=fmtp:"
    opus = {
        line[len(rtpmap) :].split(" ", 1)[0]
        for line in lines
        if line.startswith(rtpmap) and " opus/" in line.lower()
    }
    with_params = {line[len(fmtp) :].split(" ", 1)[0] for line in lines if line.startswith(fmtp)}
    out: list[str] = []
    for line in lines:
        if line.startswith(fmtp):
            payload_type, _, params = line[len(fmtp) :].partition(" ")
            if payload_type in opus and "useinbandfec" not in params:
                line = f"{line};useinbandfec=1"
        out.append(line)
        if line.startswith(rtpmap):
            payload_type = line[len(rtpmap) :].split(" ", 1)[0]
            if payload_type in opus and payload_type not in with_params:
                out.append(f"{fmtp}{payload_type} useinbandfec=1")
    return "\r\n".join(out)


def _reachable(host: str, allowed: Sequence[Network]) -> bool:
    """An IP address inside the allowed networks (mDNS ``.local`` and other names: never)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in allowed)


def use_port_range(ports: tuple[int, int] | None) -> None:
    """Bind host candidates inside ``ports`` (first, last), for a court firewall; None: any."""
    global _port_range
    _port_range = ports
    use_draining_sockets()


def use_draining_sockets() -> None:
    """Every ICE connection of this process gathers its candidates as before (aioice's own
    gathering, or :func:`_ranged_candidates` inside a port range), then each of its UDP
    sockets reads all queued datagrams per event-loop wake-up (``seams.drain_datagrams``)."""
    seams.set_component_candidates(_draining_candidates)


async def _draining_candidates(
    self: Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109  (aioice's signature)
) -> list[Candidate]:
    gather = _ranged_candidates if _port_range is not None else _aioice_candidates
    candidates = await gather(self, component, addresses, timeout)
    seams.drain_datagrams(self)
    return candidates


async def _aioice_candidates(
    self: Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109  (aioice's signature)
) -> list[Candidate]:
    return list(await seams.original_component_candidates(self, component, addresses, timeout))


async def _ranged_candidates(
    self: Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109  (aioice's signature)
) -> list[Candidate]:
    """aioice's host-candidate gathering (aioice/ice.py, Connection.get_component_candidates)
    with each socket bound to a free port of the range. TURN still runs after it; STUN
    reflexive candidates are not gathered for ranged sockets (closed networks use none)."""
    assert _port_range is not None
    first, last = _port_range
    loop = asyncio.get_running_loop()
    size = last - first + 1
    candidates = []
    for address in addresses:
        start = next(_next_port)
        for k in range(size):
            port = first + (start + k) % size
            try:
                transport: Any
                transport, protocol = await loop.create_datagram_endpoint(
                    seams.stun_protocol(self), local_addr=(address, port)
                )
            except OSError:
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, seams.UDP_SOCKET_BUFFER_SIZE)
            break
        else:
            raise MediaError("no_port", f"UDP ports {first}-{last} are all in use on {address}")
        host, bound = transport.get_extra_info("sockname")[:2]
        candidates.append(seams.add_host_candidate(self, protocol, component, host, bound))
    return candidates + list(
        await seams.original_component_candidates(self, component, [], timeout)
    )


def create_peer_connection(ice_servers: Sequence[IceServer] = ()) -> RTCPeerConnection:
    """A peer connection with an explicit ICE server list (empty: closed court networks;
    TURN entries carry the credentials config.turn issued; aiortc uses the first TURN URL).

    Always max-bundle: with aiortc's "balanced" policy a second transceiver of the same kind
    (two parties' audio, or camera + evidence video) stays on a transport that BUNDLE then
    discards, and its media never flows.
    """
    servers = [
        RTCIceServer(urls=list(server.urls), username=server.username, credential=server.credential)
        for server in ice_servers
    ]
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )

    @pc.on("connectionstatechange")
    def receive_inline() -> None:
        # once connected, SRTP is handled in the socket's reader (seams.receive_inline)
        if pc.connectionState == "connected":
            for transceiver in pc.getTransceivers():
                seams.receive_inline(transceiver.receiver.transport)

    return pc


def simulcast_rids(sdp: str) -> dict[str, list[str]]:
    """The simulcast layers a publisher's offer sends, per media section's MID: the RIDs of
    its ``a=simulcast:send`` in that order (lowest first, as the pages send them; RFC 8853
    alternatives ``a,b`` and paused ``~`` layers are left out)."""
    found: dict[str, list[str]] = {}
    for section in sdp.split("\r\nm=")[1:]:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        sending = {
            parts[0][6:]
            for line in lines
            if line.startswith("a=rid:") and len(parts := line.split(" ")) > 1
            if parts[1] == "send"
        }
        for line in lines:
            if line.startswith("a=simulcast:send "):
                listed = line.split(" ")[1].split(";")
                rids = [r for r in listed if r in sending and "," not in r]
                if mid is not None and len(rids) > 1:
                    found[mid] = rids
    return found


def accept_simulcast(answer_sdp: str, rids: dict[str, list[str]]) -> str:
    """The relay's answer accepting each section's simulcast layers (aiortc writes no
    ``a=rid`` / ``a=simulcast``; without them a browser sends only its first layer)."""
    sections = answer_sdp.split("\r\nm=")
    out = [sections[0]]
    for section in sections[1:]:
        lines = section.split("\r\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        chosen = rids.get(mid or "")
        if chosen:
            end = len(lines)
            while end > 0 and not lines[end - 1]:
                end -= 1
            lines[end:end] = [
                *(f"a=rid:{rid} recv" for rid in chosen),
                "a=simulcast:recv " + ";".join(chosen),
            ]
        out.append("\r\n".join(lines))
    return "\r\nm=".join(out)
