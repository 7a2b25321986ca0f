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


def test_identifiers_with_phone_like_digits_are_not_masked() -> None:
    """A hex id may hold eleven digits that read as a mobile number; it stays whole."""
    visit_id = "22021fb6db16492092814f70fa083c73"
    assert mask_text(visit_id) == visit_id
    assert mask_text(f'{{"visit_id": "{visit_id}"}}') == f'{{"visit_id": "{visit_id}"}}'
    assert mask_text("x110101199003071234y") == "x110101199003071234y"
    # beside Chinese text and punctuation a number is still masked
    assert mask_text("电话13812345678，身份证110101199003071234") == (
        "电话138****5678，身份证1101**********1234"
    )
    assert mask_text("tel:13812345678") == "tel:138****5678"
