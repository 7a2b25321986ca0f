"""Peer connections of the relay: no STUN by default, announced host addresses."""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection

_installed: tuple[str, ...] | None = None


def announce_addresses(addresses: Sequence[str]) -> None:
    """The host addresses ICE gathers (aioice leaves out 127.0.0.1 unless told)."""
    global _installed
    chosen = tuple(addresses)
    if _installed == chosen:
        return
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(chosen)
    _installed = chosen


def create_peer_connection(ice_servers: Sequence[str] = ()) -> RTCPeerConnection:
    """A peer connection with an explicit ICE server list (empty: closed court networks).

    Always max-bundle: with aiortc's "balanced" policy a second transceiver of the same kind
    (two parties' audio, or camera + evidence video) stays on a transport that BUNDLE then
    discards, and its media never flows.
    """
    servers = [RTCIceServer(urls=url) for url in ice_servers]
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
