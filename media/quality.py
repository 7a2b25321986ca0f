"""Whether a participant's downlink is too thin for video (网络较差), as the relay sees it.

Each subscriber's browser tells the relay what it can receive (its REMB, kept per connection
on the subscriber's copies of the tracks, media/bandwidth.py). Below ``floor_bps`` even the
least video the publishers' browsers send no longer gets through without freezing; the pages
then say so, to the participant and to everyone who sees that participant, instead of
freezing silently. :class:`LinkQuality` turns the estimates into that verdict with
hysteresis: poor once the estimate has stayed below the floor for ``enter_s``, good again
once it has stayed at or above it for ``leave_s``. Without a recent estimate nothing
changes (no video received, or the browser sends no REMB: nothing is known).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENTER_S = 2.0
LEAVE_S = 3.0


@dataclass
class LinkQuality:
    """The verdict on one subscriber's downlink (good until shown otherwise)."""

    floor_bps: int
    enter_s: float = ENTER_S
    leave_s: float = LEAVE_S
    poor: bool = False
    _since: float | None = field(default=None, repr=False)  # the other side of the floor since

    def observe(self, bps: int | None, now: float) -> bool | None:
        """A new look at the link (``bps``: the latest recent estimate, None when there is
        none). Returns the new verdict when it changes, else None."""
        if bps is None:
            self._since = None
            return None
        below = bps < self.floor_bps
        if below == self.poor:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self._since >= (self.enter_s if below else self.leave_s):
            self.poor, self._since = below, None
            return below
        return None
