"""Query-string parsing shared by the HTML pages and the JSON API.

Bad values raise `BadParam` naming the parameter, so callers answer 400 instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping

from appliance.spool.store import FAX_STATES

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
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 12:
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
