"""Masking of ID and phone numbers, in answers and in logs; resident ID check digits."""

from __future__ import annotations

import io
import logging
import sys

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from config.logs import TEXT_FORMAT, MaskingFormatter, setup_logging
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
    # grouped unevenly (as a transcript may write it): still eleven digits of a mobile
    assert mask_text("138 1234-5678") == "138 ****-5678"


def test_phone_numbers_with_the_country_code_are_masked() -> None:
    for text, masked in [
        ("+8613812345678", "+86138****5678"),
        ("0086 13812345678", "0086 138****5678"),
        ("0086-13812345678", "0086-138****5678"),
        ("+86 138-1234-5678", "+86 138******5678"),
        ("+86 138 1234 5678。", "+86 138******5678。"),
        (
            "电话：+8613812345678，备用0086 13912345678",
            "电话：+86138****5678，备用0086 139****5678",
        ),
        ('{"phone": "+8613812345678"}', '{"phone": "+86138****5678"}'),
        ("tel:+86-13812345678", "tel:+86-138****5678"),
        ("abcdef0123456789+8613812345678", "abcdef0123456789+86138****5678"),
    ]:
        assert mask_text(text) == masked, text
    for kept in [
        "00861381234567800000",  # a 20-digit number, not a phone
        "12345008613812345678",  # 0086 inside a longer run of digits
        "8613812345678",  # 86 without + or 00: not taken for a country code
        "case 1000861381234567 ok",  # order-number-like run: digit before and after
        "deadbeef008613812345678a",  # inside a hexadecimal identifier
        "+86 138 1234-5678",  # not one number's grouping
        "(2025)京0108执99号 20250108000000012345",
    ]:
        assert mask_text(kept) == kept, kept


def _sqlalchemy_error_with_parameters() -> BaseException:
    """A real database error: SQLAlchemy puts the statement's parameters in its text."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as db:
        db.execute(sa.text("CREATE TABLE p (id_number TEXT UNIQUE, phone TEXT)"))
        insert = sa.text("INSERT INTO p VALUES (:id_number, :phone)")
        db.execute(insert, {"id_number": VALID_ID, "phone": "13700000000"})
        try:  # the same person again, now with two numbers
            row = {"id_number": VALID_ID, "phone": "13812345678 / +8613912345678"}
            db.execute(insert, row)
        except IntegrityError as err:
            return err
    raise AssertionError("the second insert should have failed")


def test_text_log_masks_a_database_error_traceback() -> None:
    """The server's own text log set-up: a log.exception for a database error writes its
    ``[parameters: (...)]`` line with the ID and phone numbers masked."""
    root = logging.getLogger()
    access = logging.getLogger("aiohttp.access")
    saved = (root.handlers[:], root.level, access.level)
    stream = io.StringIO()
    setup_logging("INFO")
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        error = _sqlalchemy_error_with_parameters()
        try:
            raise error
        except IntegrityError:
            logging.getLogger("vreception.test.db").exception("saving petitioner failed")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        access.setLevel(saved[2])
    out = stream.getvalue()
    assert "saving petitioner failed" in out and "IntegrityError" in out
    assert "[parameters: (" in out
    assert VALID_ID not in out and "13812345678" not in out and "13912345678" not in out
    assert "1101**********002X" in out and "138****5678" in out and "+86139****5678" in out


def test_text_formatter_masks_message_traceback_and_stack_without_the_filter() -> None:
    """The formatter masks its whole output, and the traceback it caches on the record."""
    try:
        raise ValueError("petitioner 110101199003071234 called from 13812345678")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "vreception.app", logging.ERROR, __file__, 1, "failed for %s", ("13912345678",),
        exc_info, sinfo="Stack (most recent call last):\n  phone = '+86 137 1234 5678'",
    )  # fmt: skip
    out = MaskingFormatter(TEXT_FORMAT).format(record)
    for raw in ("110101199003071234", "13812345678", "13912345678", "137 1234 5678"):
        assert raw not in out, raw
    assert "failed for 139****5678" in out
    assert "ValueError: petitioner 1101**********1234 called from 138****5678" in out
    assert "phone = '+86 137******5678'" in out
    assert record.exc_text and "13812345678" not in record.exc_text


def test_numbers_as_said_and_transcribed_are_masked_too() -> None:
    """A transcript writes what was said: Chinese numerals, digits in groups. Such a run is
    masked when it is a mobile or ID number, digit by digit, its grouping kept; other
    numbers (amounts, case numbers, years) are left as they are."""
    cases = {
        "电话幺三八 一二三四 五六七八。": "电话幺三八 **** 五六七八。",
        "幺三八一二三四五六七八": "幺三八****五六七八",
        "号码是138，1234，5678": "号码是138，****，5678",
        "1381234 5678": "138**** 5678",
        "110101 19900307 1234": "1101** ******** 1234",
        "身份证一一零一零一一九九零零三零七一二三四": "身份证一一零一**********一二三四",
        "１３８１２３４５６７８": "１３８****５６７８",
    }
    for said, masked in cases.items():
        assert mask_text(said) == masked, said
    for kept in (
        "金额13,800,138,000元",
        "（2026）京01民终1234号",
        "二〇二六年十二月五日",
        "一二三四五六七八九十",
        "订单 12345678901234567890",
        "幺三八 一二三四 五六七",  # ten digits: not a number of anyone
    ):
        assert mask_text(kept) == kept, kept
