"""`make bench`: the fax list with 100,000 faxes in the spool, through the real Flask app.

Fills a spool with 100,000 rows (tests/bench/faxfill.py), logs a test client in, and times
the list page the way people use it: the first page, a status filter, a deep page (following
the keyset cursor 1,990 pages down), a free-text search, and a rare caller (a scan of every
row).  Prints the median and worst of several runs per page; the goal is under 0.5 s.
"""

from __future__ import annotations

import html
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from appliance.config import Config, SpoolConfig
from appliance.spool.store import Spool
from appliance.web.app import create_app
from tests.bench.faxfill import fill

N = 100_000
RUNS = 5
GOAL = 0.5


def timed(client, url: str) -> tuple[float, float, str]:
    """(median s, worst s, body) over RUNS requests; the first request warms the caches."""
    body = client.get(url).get_data(as_text=True)
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        r = client.get(url)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, (url, r.status_code)
    return statistics.median(times), max(times), body


def logged_in(app):
    client = app.test_client()
    sys.path.insert(0, str(Path(__file__).parents[1] / "web"))
    try:
        from webauth import login
    except ImportError:  # before the web UI had logins
        return client
    login(client)
    return client


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(spool=SpoolConfig(dir="spool"), base_dir=Path(tmp))
        root = config.path(config.spool.dir)
        took = fill(root, N)
        print(f"fax list: {N:,} faxes inserted in {took:.1f} s")
        with Spool(root, readonly=True) as spool:
            deep = spool.list_faxes(offset=N - 500, limit=1)[0]
        client = logged_in(create_app(config))
        cases = [
            ("first page", "/faxes"),
            ("status filter (Failed)", "/faxes?state=dead"),
            ("date range (one day)", "/faxes?from=2026-02-01&to=2026-02-01"),
            ("deep page (row 99,500)", f"/faxes?before={deep.created:.0f}_{deep.id}"),
            ("search 'desk07'", "/faxes?q=desk07"),
            ("caller filter, one match", "/faxes?caller=%2B4947000017"),
            ("search, no match", "/faxes?q=nothing-matches-this"),
            ("search, non-ASCII 'Ärzte'", "/faxes?q=%C3%84rzte"),
        ]
        worst = 0.0
        for label, url in cases:
            med, top, body = timed(client, url)
            rows = len(re.findall(r'data-label="Received"', body))
            total = re.search(r'id="total">([^<]*)<', body)
            worst = max(worst, med)
            print(f"  {label:28s} {med * 1000:7.1f} ms median, {top * 1000:7.1f} ms worst"
                  f"  ({rows} rows; {html.unescape(total.group(1)) if total else '?'})")
        verdict = "within" if worst < GOAL else "OVER"
        print(f"fax list: slowest median {worst * 1000:.0f} ms, {verdict} the {GOAL * 1000:.0f} ms goal")


if __name__ == "__main__":
    main()
