"""ICE servers for pages and the relay: STUN URLs as configured, and TURN with time-limited
credentials issued per participant (the TURN REST API scheme that coturn checks with
``use-auth-secret`` / ``static-auth-secret``):

    username   = "<expiry, unix time>:<participant key>"
    credential = base64(HMAC-SHA1(shared secret, username))

The shared secret never leaves the server; a credential stops working at its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# RFC 7065 URIs: turn:host[:port][?transport=udp|tcp], turns:host[:port][?transport=tcp]
TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)
STUN_URL = re.compile(r"stuns?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?")


def check_turn_url(url: str) -> str:
    """``url`` if it is a TURN URL a browser and aiortc accept; ValueError otherwise."""
    match = TURN_URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"{url!r} is not a TURN URL (turn:HOST[:PORT][?transport=udp|tcp] or "
            "turns:HOST[:PORT][?transport=tcp])"
        )
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{url!r}: port must be 1-65535")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise ValueError(f"{url!r}: turns: runs over TLS, i.e. TCP (drop ?transport=udp)")
    return url


def check_stun_url(url: str) -> str:
    if STUN_URL.fullmatch(url) is None:
        if url.startswith("turn"):
            raise ValueError(f"{url!r}: TURN servers go in turn_urls (with turn_secret), not here")
        raise ValueError(f"{url!r} is not a STUN URL (stun:HOST[:PORT])")
    return url


def with_transports(urls: Sequence[str]) -> list[str]:
    """Each ``turn:`` URL that names no transport as both UDP and TCP, so that a page whose
    UDP is blocked still reaches the TURN server over TCP; other URLs as they are."""
    out: list[str] = []
    for url in urls:
        match = TURN_URL.fullmatch(url)
        if match is not None and match["scheme"] == "turn" and match["transport"] is None:
            out += [url + "?transport=udp", url + "?transport=tcp"]
        else:
            out.append(url)
    return list(dict.fromkeys(out))


def turn_credentials(secret: str, key: str, expires: int) -> tuple[str, str]:
    """The TURN REST API username and credential of ``key`` valid until ``expires``."""
    username = f"{expires}:{key}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class IceServer:
    """One entry of RTCConfiguration.iceServers."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def public(self) -> dict[str, Any]:
        """As a page's RTCPeerConnection takes it."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
            out["credential"] = self.credential
        return out


class IceServers:
    """The ICE servers of this deployment (the one place that turns settings into them)."""

    def __init__(
        self,
        stun_urls: Sequence[str] = (),
        turn_urls: Sequence[str] = (),
        turn_secret: str | None = None,
        ttl_seconds: int = 6 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if turn_urls and not turn_secret:
            raise ValueError("TURN needs a shared secret")
        self.stun_urls = tuple(stun_urls)
        self.turn_urls = tuple(with_transports(turn_urls))
        self._secret = turn_secret or ""
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def __repr__(self) -> str:  # never show the secret
        return f"IceServers(stun={self.stun_urls!r}, turn={self.turn_urls!r})"

    def issue(self, key: str) -> list[IceServer]:
        """The servers for participant ``key`` (the relay uses "relay"), with TURN credentials
        that expire ``ttl_seconds`` from now."""
        servers = [IceServer((url,)) for url in self.stun_urls]
        if self.turn_urls:
            expires = int(self.clock()) + self.ttl_seconds
            username, credential = turn_credentials(self._secret, key, expires)
            servers.append(IceServer(self.turn_urls, username, credential))
        return servers
