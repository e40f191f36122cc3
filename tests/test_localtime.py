"""appliance.localtime: the one way a time is shown to a person (zone applied and named), and the
log file's UTC stamps shown in the owner's zone."""

from __future__ import annotations

import datetime
import time

import pytest

from appliance import localtime
from appliance.logfile import UtcFormatter, in_zone

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
BERLIN = localtime.zone("Europe/Berlin")


@pytest.mark.parametrize("name,ts,shown", [
    ("Europe/Berlin", T0, "2026-01-01 01:00:00 CET"),
    ("Europe/Berlin", 1_782_864_000.0, "2026-07-01 02:00:00 CEST"),
    ("America/New_York", T0, "2025-12-31 19:00:00 EST"),
    ("Asia/Kolkata", T0, "2026-01-01 05:30:00 IST"),
    ("America/Sao_Paulo", T0, "2025-12-31 21:00:00 UTC-03"),  # the zone's name for itself is "-03"
    ("Asia/Kathmandu", T0, "2026-01-01 05:45:00 UTC+05:45"),
    ("UTC", T0, "2026-01-01 00:00:00 UTC"),
])
def test_format_time_applies_and_names_the_zone(name: str, ts: float, shown: str) -> None:
    assert localtime.format_time(ts, localtime.zone(name)) == shown


def test_the_clock_goes_forward_and_back_in_the_same_words() -> None:
    """Berlin, last Sunday of March 2026: 02:00 CET becomes 03:00 CEST; one second apart on the
    wall clock would be an hour apart without the zone's name."""
    switch = datetime.datetime(2026, 3, 29, 1, 0, tzinfo=datetime.timezone.utc).timestamp()
    assert localtime.format_time(switch - 1, BERLIN) == "2026-03-29 01:59:59 CET"
    assert localtime.format_time(switch, BERLIN) == "2026-03-29 03:00:00 CEST"


def test_empty_or_unknown_zone_is_the_systems(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert localtime.zone("") is None and localtime.zone("Mars/Olympus") is None
        assert localtime.format_time(T0, None) == "2025-12-31 19:00:00 EST"
        assert localtime.zone_name(None).startswith("the system's time zone (E")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert localtime.format_time(None, BERLIN) == ""


def test_days_start_at_the_zones_midnight() -> None:
    day = datetime.date(2026, 3, 29)  # 23 hours long in Berlin
    start = localtime.day_start(day, BERLIN)
    assert localtime.format_time(start, BERLIN) == "2026-03-29 00:00:00 CET"
    assert localtime.day_start(day + datetime.timedelta(days=1), BERLIN) - start == 23 * 3600
    noon = start + 12 * 3600
    assert localtime.start_of_today(noon, BERLIN) == start
    assert localtime.start_of_today(start - 1, BERLIN) == localtime.day_start(day - datetime.timedelta(days=1), BERLIN)


def test_log_lines_are_written_in_utc_and_read_in_the_zone() -> None:
    import logging

    record = logging.LogRecord("faxbridge", logging.INFO, __file__, 1, "fax %s received", (12,), None)
    record.created, record.msecs = T0 + 5.25, 250.0
    line = UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert line == "2026-01-01T00:00:05.250Z INFO faxbridge: fax 12 received"
    assert in_zone(line, BERLIN) == "2026-01-01 01:00:05.250 CET INFO faxbridge: fax 12 received"
    for other in ("2026-13-45T99:00:00.000Z INFO not a date", "Traceback (most recent call last):",
                  "2026-01-01 00:00:05,250 INFO an old line in local time"):
        assert in_zone(other, BERLIN) == other
