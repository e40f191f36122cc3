"""send_over_sip to a receiving Faxbridge daemon on loopback: G.711 and T.38 by every route choice,
T.38 refused by the far end, digest authentication, cancel during the fax; the pages the daemon
mails are compared pixel by pixel with the pages sent.

The daemon (tests/e2e's harness: the real process, delivering into aiosmtpd) tells peers apart by
source address: 127.0.0.1 accepts T.38, 127.0.0.2 re-INVITEs to T.38 itself (its "request"),
127.0.0.3 refuses T.38 ("off"), 127.0.0.4 must authenticate. All calls run at once.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.sip_send import send_over_sip
from tests.e2e.conftest import (  # noqa: F401 - smtp and appliance_factory are fixtures used below
    appliance_factory,
    assert_pages_equal,
    smtp,
    tiff_attachment,
)

pytestmark = pytest.mark.slow

PEERS = """
[[sip.peers]]
name = "accepts"
match = "127.0.0.1"
t38 = "accept"

[[sip.peers]]
name = "requests"
match = "127.0.0.2"
t38 = "request"

[[sip.peers]]
name = "no-t38"
match = "127.0.0.3"
t38 = "off"

[[sip.peers]]
name = "pbx-account"
match = "127.0.0.4"
t38 = "off"
username = "faxout"
password = "pbx secret"
"""


@dataclass
class Case:
    name: str
    called: str
    rcpt: str
    bind: str
    t38: str
    way: str
    pages: int = 2
    credentials: tuple[str, str] | None = None
    cancel_after_page: int | None = None
    sent: list[Image.Image] = field(default_factory=list)
    connected: list[float] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)


CASES = [
    Case(
        "off: refuses the daemon's T.38, G.711", "5551000", "sales@example.test", "127.0.0.2", "off", "SIP G.711 PCMU"
    ),
    Case("request: we re-INVITE, T.38", "5551001", "support@example.test", "127.0.0.1", "request", "SIP T.38"),
    Case("accept: the daemon re-INVITEs, T.38", "5551002", "billing@example.test", "127.0.0.2", "accept", "SIP T.38"),
    Case(
        "request refused (488): G.711",
        "5551003",
        "legal@example.test",
        "127.0.0.3",
        "request",
        "SIP G.711 PCMU (T.38 refused: 488 Not Acceptable Here)",
    ),
    Case(
        "digest challenge answered",
        "5551004",
        "hr@example.test",
        "127.0.0.4",
        "off",
        "SIP G.711 PCMU",
        credentials=("faxout", "pbx secret"),
    ),
    Case(
        "cancelled after page 1 of 3",
        "5559999",
        "faxes@example.test",
        "127.0.0.1",
        "off",
        "SIP G.711 PCMU",
        pages=3,
        cancel_after_page=1,
    ),
]


async def _send(case: Case, uri: str, doc: Path) -> Outcome:
    cancel = asyncio.Event()

    def on_page(n: int) -> None:
        case.confirmed.append(n)
        if case.cancel_after_page is not None and n >= case.cancel_after_page:
            cancel.set()

    return await send_over_sip(
        uri,
        doc,
        ident=f"+1 555 20{case.called[-2:]}",
        t38=case.t38,
        caller="Faxbridge outbound test",
        local_ip=case.bind,
        credentials=case.credentials,
        on_connected=lambda: case.connected.append(time.monotonic()),
        on_page=on_page,
        cancel=cancel,
        timeout=300.0,
    )


@pytest.mark.xdist_group("sip-send")
def test_g711_t38_refused_t38_digest_and_cancel_to_a_receiving_daemon(tmp_path, smtp, appliance_factory):  # noqa: F811
    app = appliance_factory(smtp.port, extra=PEERS)
    app.start()
    docs = []
    for i, case in enumerate(CASES):
        case.sent = demo_pages(case.pages, STANDARD, seed=40 + i)
        docs.append(tmp_path / f"doc{i}.tif")
        write_fax_tiff(case.sent, docs[-1], STANDARD)

    unauthenticated = Case("no credentials", "5551004", "", "127.0.0.4", "off", "SIP")

    async def all_calls() -> list[Outcome]:
        calls = [_send(c, app.uri(c.called), d) for c, d in zip(CASES, docs, strict=True)]
        return await asyncio.gather(*calls, _send(unauthenticated, app.uri("5551004"), docs[0]))

    *outcomes, refused = asyncio.run(all_calls())
    # the PBX account's peer wants digest: without the credentials the call is refused
    assert (refused.result, refused.sip_status) == (Result.REFUSED, 401), refused
    assert refused.detail == "SIP 401 Unauthorized" and unauthenticated.connected == []
    for case, o in zip(CASES, outcomes, strict=True):
        print(f"{case.name}: {o.result} {o.detail!r} {o.way!r} {o.duration} s {o.bit_rate} bit/s")
        assert len(case.connected) == 1, f"{case.name}: on_connected {case.connected}"
        assert o.way == case.way, f"{case.name}: {o}"
        assert o.pages_total == case.pages and o.sip_status is None, f"{case.name}: {o}"
        if case.cancel_after_page is None:
            assert (o.result, o.pages_confirmed, o.t30_code) == (Result.SENT, case.pages, 0), f"{case.name}: {o}"
            assert case.confirmed == list(range(1, case.pages + 1)), f"{case.name}: {case.confirmed}"
            assert o.remote_ident == "+1 555 1000" and o.bit_rate >= 9600, f"{case.name}: {o}"
        else:
            assert (o.result, o.pages_confirmed) == (Result.CANCELLED, 1), f"{case.name}: {o}"
            assert o.detail == "cancelled during the fax, after 1 confirmed page(s)"
    msgs = smtp.wait_for(len(CASES), timeout=60)
    by_rcpt = {m["To"]: m for m in msgs}
    assert sorted(by_rcpt) == sorted(c.rcpt for c in CASES)
    for case in CASES:
        got = tiff_attachment(by_rcpt[case.rcpt])
        assert_pages_equal(got, case.sent if case.cancel_after_page is None else case.sent[:1])
    cancelled = by_rcpt["faxes@example.test"]
    assert "Incomplete" in cancelled["Subject"], cancelled["Subject"]
    # the daemon's own account of each call's media: T.38 where we say so, and its T.38 request
    # refused by us on the "off" route
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    extra = {called: json.loads(x) for called, x in db.execute("SELECT called_number, extra FROM faxes")}
    for case in CASES:
        assert (extra[case.called]["mode"] == "T.38") is (case.way == "SIP T.38"), f"{case.name}: {extra[case.called]}"
    assert any("refused: 488" in s for s in extra["5551000"]["switches"]), extra["5551000"]
