"""One strict reader for every number that arrives from outside (SIP, SDP, digest, AT, forms).

Why not `str.isdigit()` + `int()`: `isdigit()` is true for '²' and other Unicode digits that
`int()` then refuses (a crash), and `int()` itself takes Arabic-Indic digits, spaces,
underscores and a sign. A field on the wire is ASCII digits only, of bounded length.
"""

from __future__ import annotations

__all__ = ["NumberError", "parse_uint", "is_uint", "ascii_digits"]

_DIGITS = frozenset("0123456789")
_DIGIT_BYTES = frozenset(b"0123456789")


class NumberError(ValueError):
    """Not a decimal number in range; the message names the field and the value."""


def ascii_digits(text: str | bytes, max_digits: int = 10) -> bool:
    """True for 1..max_digits ASCII digits and nothing else (no sign, space or '_')."""
    if not 0 < len(text) <= max_digits:
        return False
    if isinstance(text, (bytes, bytearray)):
        return all(b in _DIGIT_BYTES for b in text)
    return all(c in _DIGITS for c in text)


def parse_uint(
    text: str | bytes, max_value: int, *, name: str = "number", min_value: int = 0, max_digits: int | None = None
) -> int:
    """`text` as an int in [min_value, max_value], or NumberError naming `name`.

    max_digits defaults to the digits of max_value plus a few, so leading zeros are tolerated
    ("0060") but a megabyte of them is not parsed.
    """
    limit = max_digits if max_digits is not None else len(str(max_value)) + 4
    if not ascii_digits(text, limit):
        shown = text[:20] if isinstance(text, str) else text[:20].decode("ascii", "replace")
        raise NumberError(f"{name}: {shown!r} is not a decimal number")
    value = int(text)
    if not min_value <= value <= max_value:
        raise NumberError(f"{name}: {value} is out of range {min_value}..{max_value}")
    return value


def is_uint(text: str | bytes, max_value: int, min_value: int = 0) -> bool:
    """parse_uint as a test."""
    try:
        parse_uint(text, max_value, min_value=min_value)
    except NumberError:
        return False
    return True
