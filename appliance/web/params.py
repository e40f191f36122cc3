"""Query-string parsing shared by the HTML pages and the JSON API.

Bad values raise `BadParam` naming the parameter, so callers answer 400 instead of guessing.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping

from appliance import localtime
from appliance.config import address_problem
from appliance.spool.store import FAX_STATES
from appliance.strictnum import ascii_digits

#: every fax state the spool uses, in the order a fax moves through them
STATES: tuple[str, ...] = FAX_STATES

MAX_SEARCH = 200


class BadParam(ValueError):
    """A request parameter that cannot be used; `name` is the parameter."""

    def __init__(self, name: str, message: str):
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")


def int_param(args: Mapping[str, str], name: str, default: int, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi]; absent means `default`."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    raw = raw.strip()
    digits = raw[1:] if raw.startswith("-") else raw
    if not ascii_digits(digits, 11):
        raise BadParam(name, "must be an integer")
    value = int(raw)
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise BadParam(name, f"must be {bound}")
    return value


def state_param(args: Mapping[str, str]) -> str | None:
    """One of `STATES`, or None for all."""
    raw = (args.get("state") or "").strip()
    if not raw:
        return None
    if raw not in STATES:
        raise BadParam("state", "must be one of " + ", ".join(STATES))
    return raw


def search_param(args: Mapping[str, str]) -> str | None:
    """Free text to search for, or None; bounded so a huge query cannot reach the database."""
    raw = (args.get("q") or "").strip()
    if not raw:
        return None
    if len(raw) > MAX_SEARCH or any(ord(c) < 32 for c in raw):
        raise BadParam("q", f"must be at most {MAX_SEARCH} printable characters")
    return raw


MAX_FIELD = 100


def text_param(args: Mapping[str, str], name: str, limit: int = MAX_FIELD) -> str | None:
    """A short printable filter text, or None when empty."""
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    if len(raw) > limit or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise BadParam(name, f"must be at most {limit} printable characters")
    return raw


def date_param(args: Mapping[str, str], name: str) -> datetime.date | None:
    """A calendar day written YYYY-MM-DD (what <input type=date> sends), or None."""
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise BadParam(name, "must be a date written YYYY-MM-DD")
    try:
        day = datetime.date.fromisoformat(raw)
    except ValueError:
        raise BadParam(name, "is not a real calendar day") from None
    if day.year < 1971:
        raise BadParam(name, "must be after 1970")
    if day == datetime.date.max:  # the day after it, where a range ends, does not exist
        raise BadParam(name, "must be before 9999-12-31")
    return day


def date_range(args: Mapping[str, str], tz: localtime.Zone = None) -> tuple[float | None, float | None]:
    """`from` and `to` (both days inclusive, in the owner's zone ``tz``, the one the list shows
    times in) as [since, until) Unix times."""
    first, last = date_param(args, "from"), date_param(args, "to")
    if first and last and last < first:
        raise BadParam("to", "must not be before 'from'")
    since = localtime.day_start(first, tz) if first else None
    until = localtime.day_start(last + datetime.timedelta(days=1), tz) if last else None
    return since, until


def cursor_param(args: Mapping[str, str], name: str) -> tuple[float, int] | None:
    """A keyset cursor `<created>_<id>` the list's own links carry, or None."""
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    m = re.fullmatch(r"(\d{1,12}(?:\.\d{1,9})?)_(\d{1,12})", raw)
    if not m:
        raise BadParam(name, "is not a position in the list (use the list's own links)")
    return float(m.group(1)), int(m.group(2))


def format_cursor(created: float, fax_id: int) -> str:
    """The inverse of `cursor_param`: repr keeps the float exact, so no fax is skipped or repeated."""
    text = repr(float(created))
    return f"{text.removesuffix('.0')}_{fax_id}" if "e" not in text else f"{int(created)}_{fax_id}"


def email_param(form: Mapping[str, str], name: str) -> str:
    """One plain mail address, checked by the configuration's own rule (``address_problem``: the
    web UI, check-config and the CLI agree), or BadParam saying what is wrong.  No display name,
    list, quoted string or IP literal: the recipient goes straight into RCPT TO and To:."""
    raw = (form.get(name) or "").strip()
    if not raw:
        raise BadParam(name, "is empty: enter a mail address such as fax@example.com")
    why = "it is too long" if len(raw) > 254 else address_problem(raw)
    if why:
        raise BadParam(name, f"is not one plain mail address such as fax@example.com: {why}")
    return raw
