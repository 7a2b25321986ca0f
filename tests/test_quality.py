"""The relay's verdict on a subscriber's downlink (media/quality.py): 网络较差 only after the
estimate stayed below the floor, good again only after it stayed above."""

from __future__ import annotations

from media.quality import LinkQuality

FLOOR = 150_000


def test_a_link_is_poor_only_after_staying_below_the_floor_for_two_seconds() -> None:
    link = LinkQuality(FLOOR)
    assert link.observe(90_000, 0.0) is None
    assert link.observe(90_000, 1.0) is None
    assert link.observe(90_000, 2.0) is True
    assert link.poor is True
    assert link.observe(80_000, 3.0) is None  # told once


def test_a_short_dip_below_the_floor_says_nothing() -> None:
    link = LinkQuality(FLOOR)
    assert link.observe(90_000, 0.0) is None
    assert link.observe(90_000, 1.5) is None
    assert link.observe(400_000, 1.9) is None  # back above before 2 s: the dip is forgotten
    assert link.observe(90_000, 2.5) is None
    assert link.observe(90_000, 4.0) is None
    assert link.poor is False
    assert link.observe(90_000, 4.5) is True


def test_a_poor_link_is_good_again_only_after_staying_above_for_three_seconds() -> None:
    link = LinkQuality(FLOOR)
    link.observe(50_000, 0.0)
    assert link.observe(50_000, 2.0) is True
    assert link.observe(200_000, 3.0) is None
    assert link.observe(100_000, 4.0) is None  # fell back: the wait starts again
    assert link.observe(200_000, 5.0) is None
    assert link.observe(200_000, 7.9) is None
    assert link.observe(FLOOR, 8.0) is False  # the floor itself is enough
    assert link.poor is False


def test_without_a_recent_estimate_the_verdict_stays_and_the_wait_restarts() -> None:
    link = LinkQuality(FLOOR)
    link.observe(50_000, 0.0)
    assert link.observe(None, 1.0) is None
    assert link.observe(50_000, 2.5) is None  # below since 2.5 only, not since 0
    assert link.observe(50_000, 4.5) is True
    assert link.observe(None, 10.0) is None
    assert link.poor is True
