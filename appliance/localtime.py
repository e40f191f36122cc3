"""Times as the owner reads them: in ``system.timezone``, with the zone named.

The spool, the log and the API keep UTC epoch seconds; only what a person reads (the web pages,
the mail bodies and notices, the CLI's tables) is turned into wall-clock time here, by one
function, so a page and a mail about the same fax never disagree.  The zone is always named
("2026-12-07 15:04:05 CET"): a time without it is a guess for anyone not standing next to the box.
An empty ``system.timezone`` means the system's own zone (UTC on the appliance image).
"""

from __future__ import annotations

import datetime
import re
import time
import zoneinfo

#: None stands for the system's zone (what ``time.localtime`` uses)
Zone = datetime.tzinfo | None

FULL = "%Y-%m-%d %H:%M:%S"
MINUTES = "%Y-%m-%d %H:%M"
CLOCK = "%H:%M:%S"


def zone(name: str | None) -> Zone:
    """The configured zone; None (the system's) for an empty or unknown name.

    The configuration loader refuses unknown names; this only keeps a page or a mail from failing
    on a hand-edited file."""
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def at(ts: float, tz: Zone) -> datetime.datetime:
    """An aware datetime for epoch seconds ``ts`` in ``tz`` (the system's zone when None)."""
    if tz is None:
        return datetime.datetime.fromtimestamp(ts).astimezone()
    return datetime.datetime.fromtimestamp(ts, tz)


def abbreviation(dt: datetime.datetime) -> str:
    """The zone as people write it: "CET", "EDT", "UTC"; "UTC+03" where the zone has no letters."""
    name = dt.tzname() or ""
    if re.fullmatch(r"[A-Za-z]{2,6}", name):
        return name
    off = dt.utcoffset() or datetime.timedelta(0)
    sign = "-" if off < datetime.timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    h, m = divmod(minutes, 60)
    return f"UTC{sign}{h:02d}" + (f":{m:02d}" if m else "") if minutes else "UTC"


def format_time(ts: float | None, tz: Zone, fmt: str = FULL) -> str:
    """``ts`` as wall-clock time in ``tz``, the zone named after it; "" for a missing time."""
    if ts is None:
        return ""
    dt = at(ts, tz)
    return f"{dt.strftime(fmt)} {abbreviation(dt)}"


def stamp(ts: float, tz: Zone, fmt: str = "%Y%m%d-%H%M%S") -> str:
    """Wall-clock digits for a file name (no zone: names are for sorting, not reading)."""
    return at(ts, tz).strftime(fmt)


def zone_name(tz: Zone) -> str:
    """What the owner configured ("Europe/Berlin"), or the system's zone described."""
    if tz is None:
        return f"the system's time zone ({abbreviation(at(time.time(), None))})"
    return str(getattr(tz, "key", None) or tz)


def day_start(day: datetime.date, tz: Zone) -> float:
    """Epoch seconds of midnight starting ``day`` in ``tz`` (the first instant of that day).

    A day that starts inside a DST gap (there are zones that skip midnight) starts at the
    first wall-clock time that exists: zoneinfo's fold rules take care of that."""
    if tz is None:
        return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))
    return datetime.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def start_of_today(now: float, tz: Zone) -> float:
    """Midnight of the day ``now`` falls on in ``tz``: "today" as the owner reads the clock."""
    return day_start(at(now, tz).date(), tz)
