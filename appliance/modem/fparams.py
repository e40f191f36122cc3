"""Parsers for the values in +F responses (T.31 / T.32 syntax).

Modems disagree on spacing, quoting and parentheses, so these are lenient about the shape and
strict about the numbers: ASCII digits only (``int()`` would also take a sign, "1_0" or other
scripts' digits), at most MAX_DIGITS of them, and a range spans at most MAX_RANGE values (so
"(0-99999999)" cannot take the memory).  Anything else raises ``ValueError`` naming the text,
which a probe turns into "quirk unknown" rather than a crash.
"""

from __future__ import annotations

import re

_RANGE = re.compile(r"^\s*([0-9]+)\s*-\s*([0-9]+)\s*$")
_DIGITS = {10: frozenset("0123456789"), 16: frozenset("0123456789abcdefABCDEF")}
MAX_DIGITS = 9
#: the widest range a test-command answer may give (T.31/T.32 ranges are a few dozen values)
MAX_RANGE = 256


def _number(text: str, base: int = 10) -> int:
    """An unsigned number of ASCII digits in `base`; ValueError for anything else."""
    if not 0 < len(text) <= MAX_DIGITS or any(c not in _DIGITS[base] for c in text):
        raise ValueError(f"not a number: {text[:20]!r}")
    return int(text, base)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _strip_prefix(text: str) -> str:
    """ "+FCS:1,5" and "+FCS: 1,5" → "1,5"; a bare value list is returned as is."""
    m = re.match(r"^\s*\+F[A-Z0-9]*\s*[:=]\s*", text, re.IGNORECASE)
    return text[m.end() :] if m else text.strip()


def parse_fparams(text: str, base: int = 10) -> list[int | str]:
    """ "+FCS:1,5,0,2,0,0,0,0" → [1, 5, 0, 2, 0, 0, 0, 0]; quoted items stay strings.

    Class 2 reports parameters in decimal, Class 2.0 (+FDIS/+FDCS) in hex on some modems: pass
    ``base=16`` for those.  Empty positions (``1,,0``) become the string "".
    """
    out: list[int | str] = []
    for item in _split_top(_strip_prefix(text)):
        if item.startswith('"') and item.endswith('"') and len(item) >= 2:
            out.append(item[1:-1])
        elif item == "":
            out.append("")
        else:
            try:
                out.append(_number(item, base))
            except ValueError:
                raise ValueError(f"not a +F parameter value: {item!r} in {text!r}") from None
    return out


def _parse_set(item: str) -> set[int]:
    item = item.strip()
    if item.startswith("(") and item.endswith(")"):
        item = item[1:-1]
    values: set[int] = set()
    for part in item.split(","):
        if not part.strip():
            continue
        m = _RANGE.match(part)
        try:
            if m:
                lo, hi = _number(m.group(1)), _number(m.group(2))
                if not lo <= hi < lo + MAX_RANGE:
                    raise ValueError
                values.update(range(lo, hi + 1))
            else:
                values.add(_number(part.strip()))
        except ValueError:
            raise ValueError(f"not a value range: {part[:40]!r}") from None
    return values


def parse_range_list(text: str) -> list[int] | list[set[int]]:
    """A test-command answer as numbers.

    "24,48,72,96" (AT+FTM=?) → [24, 48, 72, 96], sorted;
    "(0-1),(0-5),(0-2)" (AT+FCC=?, one set per parameter) → [{0, 1}, {0, 1, 2, 3, 4, 5}, {0, 1, 2}].
    A plain "(0-3)" without siblings is one set too: [{0, 1, 2, 3}].
    """
    body = _strip_prefix(text)
    if "(" not in body:
        return sorted(_parse_set(body))
    return [_parse_set(item) for item in _split_top(body)]


def parse_fclass(text: str) -> list[str]:
    """ "0,1,1.0,2,2.0" or "(0,1,2,2.0)" → ["0", "1", "1.0", "2", "2.0"] (strings: 1.0 != 1)."""
    body = _strip_prefix(text).strip()
    if body.startswith("(") and body.endswith(")"):
        body = body[1:-1]
    out = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", item):
            raise ValueError(f"not a service class: {item!r} in {text!r}")
        out.append(item)
    return out
