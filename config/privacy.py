"""Masking of personal data (ID numbers, phone numbers) for lists, API answers and logs."""

from __future__ import annotations

import logging
import re

_ID_RE = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
# A mobile number, 138 1234 5678 and 138-1234-5678 too, maybe after the country code
# (+86, 0086, then perhaps a space or dash); no digit may stand right before or after it.
_PHONE_RE = re.compile(
    r"(?P<prefix>(?:\+|(?<!\d)00)86[ -]?|(?<!\d))"
    r"(?P<number>1[3-9]\d(?P<sep>[ -]?)\d{4}(?P=sep)\d{4})(?!\d)"
)
# Digits inside a long hexadecimal identifier (a visit's id, a file's hash) are nobody's
# number: a run of at least this many hexadecimal characters and dashes, letters among them.
HEX_ID_MIN = 20
_HEX = frozenset("0123456789abcdefABCDEF-")


def _in_hex_id(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` lies inside a hexadecimal identifier (see HEX_ID_MIN)."""
    first, last = start, end
    while first > 0 and text[first - 1] in _HEX:
        first -= 1
    while last < len(text) and text[last] in _HEX:
        last += 1
    return last - first >= HEX_ID_MIN and any(c.isalpha() for c in text[first:last])


def mask_id_number(value: str | None) -> str:
    """``110101199003071234`` → ``1101**********1234``: first four, last four kept."""
    if not value:
        return ""
    if len(value) <= 8:
        return "*" * (len(value) - 2) + value[-2:] if len(value) > 2 else "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value: str | None) -> str:
    """``13812345678`` → ``138****5678``."""
    if not value:
        return ""
    if len(value) <= 7:
        return "*" * (len(value) - 2) + value[-2:] if len(value) > 2 else "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


# Numbers as they are said and transcribed: digits of any width or Chinese numerals (幺 is
# 1 read out in phone numbers, 两 is 2), grouped by spaces, dashes or Chinese commas
# ("幺三八 一二三四 五六七八", "110101 19900307 1234", "138，1234，5678"). Not the ASCII comma:
# "13,800,138,000" is an amount.
_SPOKEN_DIGITS = "0123456789０１２３４５６７８９零〇一二三四五六七八九幺两"
_SPOKEN_VALUE = {c: str(i % 10) for i, c in enumerate(_SPOKEN_DIGITS[:20])} | {
    c: v for c, v in zip("零〇一二三四五六七八九幺两", "0012345678912", strict=True)
}
_D = f"[{_SPOKEN_DIGITS}]"
_SPOKEN_RE = re.compile(
    rf"(?<!{_D})(?:{_D}(?:[ \u3000，、-]?{_D}){{10,17}}(?:[ \u3000，、-]?[XxＸ])?)(?!{_D})"
)


def _masked_spoken(text: str, match: re.Match[str]) -> str:
    """A run of 11 digits that is a mobile number (1[3-9]…) or of 18 that is an ID number
    (the last may be X), each digit kept or masked as ``mask_phone`` and
    ``mask_id_number`` would, the grouping as said; any other run as it is."""
    run = match.group(0)
    places = [i for i, c in enumerate(run) if c in _SPOKEN_VALUE or c in "XxＸ"]
    digits = "".join(_SPOKEN_VALUE.get(run[i], "X") for i in places)
    if _in_hex_id(text, *match.span()):
        return run
    if len(digits) == 11 and re.fullmatch(r"1[3-9]\d{9}", digits):
        keep = set(places[:3] + places[-4:])
    elif len(digits) == 18 and re.fullmatch(r"\d{17}[\dX]", digits):
        keep = set(places[:4] + places[-4:])
    else:
        return run
    hidden = set(places) - keep
    return "".join("*" if i in hidden else c for i, c in enumerate(run))


def mask_text(text: str) -> str:
    """Mask every resident ID number and mobile number found in free text: written as
    digits, and as said (Chinese numerals, digits in groups; see ``_SPOKEN_RE``)."""
    text = _ID_RE.sub(
        lambda m: m.group(0) if _in_hex_id(text, *m.span()) else mask_id_number(m.group(0)),
        text,
    )
    text = _PHONE_RE.sub(lambda m: _masked_phone_match(text, m), text)
    return _SPOKEN_RE.sub(lambda m: _masked_spoken(text, m), text)


def _masked_phone_match(text: str, match: re.Match[str]) -> str:
    """A country code stays as written (``+86 138****5678``); the hexadecimal-identifier
    test looks at the national number, so a ``+`` before it ends the identifier."""
    if _in_hex_id(text, *match.span("number")):
        return match.group(0)
    return match.group("prefix") + mask_phone(match.group("number"))


class MaskingFilter(logging.Filter):
    """A logging filter that masks ID and phone numbers in every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
RESIDENT_ID_CHECK = "10X98765432"


def resident_id_valid(value: str) -> bool:
    """GB 11643-1999 check of an 18-character resident ID number."""
    if len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789X":
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], RESIDENT_ID_WEIGHTS, strict=True))
    return RESIDENT_ID_CHECK[total % 11] == value[17]
