"""Masking of ID and phone numbers, in answers and in logs; resident ID check digits."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.privacy import (
    MaskingFilter,
    mask_id_number,
    mask_phone,
    mask_text,
    resident_id_valid,
)

VALID_ID = "11010519491231002X"


def test_masks() -> None:
    assert mask_id_number("110101199003071234") == "1101**********1234"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_id_number("") == "" and mask_phone("") == ""
    assert mask_id_number("E1234") == "***34"


def test_resident_id_check_digit() -> None:
    assert resident_id_valid(VALID_ID)
    assert not resident_id_valid("110105194912310021")
    assert not resident_id_valid("1101051949123100")
    assert not resident_id_valid("11010519491231002x")


@given(st.text(alphabet="0123456789X", min_size=18, max_size=18))
def test_masked_id_never_shows_middle_digits(value: str) -> None:
    masked = mask_id_number(value)
    assert masked[4:14] == "*" * 10 and masked[-4:] == value[-4:]


def test_log_filter_masks_personal_numbers(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("vreception.test.mask")
    logger.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger="vreception.test.mask"):
        logger.info("registered %s phone %s", VALID_ID, "13812345678")
    text = caplog.text
    assert VALID_ID not in text and "13812345678" not in text
    assert "1101**********002X" in text and "138****5678" in text
    assert mask_text("no numbers here") == "no numbers here"


def test_numbers_are_masked_wherever_they_stand_but_inside_a_hex_identifier() -> None:
    """A hex id may hold eleven digits that read as a mobile number; it stays whole. Beside
    letters, Chinese text, punctuation or escapes, a number is masked."""
    visit_id = "22021fb6db16492092814f70fa083c73"
    assert mask_text(visit_id) == visit_id
    assert mask_text(f'{{"visit_id": "{visit_id}"}}') == f'{{"visit_id": "{visit_id}"}}'
    dashed = "22021fb6-db16-4920-9281-13812345678a"  # an id's canonical form
    assert mask_text(dashed) == dashed
    assert mask_text("a110101199003071234bcdef0123456789ab") == (
        "a110101199003071234bcdef0123456789ab"
    )
    assert mask_text("电话13812345678，身份证110101199003071234") == (
        "电话138****5678，身份证1101**********1234"
    )
    for text, masked in [
        ("tel:13812345678", "tel:138****5678"),
        ("Tel13812345678", "Tel138****5678"),
        ("vx13812345678", "vx138****5678"),
        ("\\u7535\\u8bdd\\uff1a13812345678", "\\u7535\\u8bdd\\uff1a138****5678"),
        ("%E6%9C%BA13812345678", "%E6%9C%BA138****5678"),
        ("ID110101199003071234", "ID1101**********1234"),
        ("电话：138 1234 5678", "电话：138******5678"),
        ("138-1234-5678。", "138******5678。"),
        ("13812345678-13912345678", "138****5678-139****5678"),
    ]:
        assert mask_text(text) == masked, text
    assert mask_text("138 1234-5678") == "138 1234-5678"  # not one number's grouping
