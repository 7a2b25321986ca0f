"""Peer connections of the relay: no STUN by default, announced host addresses, and an
optional UDP port range (aioice 0.13 has no option for either; see docs/relay-design.md §4)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Sequence
from typing import Any

from aioice import Candidate, Connection
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection

from config.turn import IceServer
from media import seams
from media.errors import MediaError

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


def use_port_range(ports: tuple[int, int] | None) -> None:
    """Bind host candidates inside ``ports`` (first, last), for a court firewall; None: any."""
    global _port_range
    _port_range = ports
    seams.set_component_candidates(None if ports is None else _ranged_candidates)


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
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
