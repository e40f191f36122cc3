"""A real T.30 session's trace reaches the fax page: spandsp back to back in memory, the session's
facts stored through the spool as the daemon stores them, the page read as the owner reads it."""

from __future__ import annotations

from flask.testing import FlaskClient
from markupsafe import escape

from appliance.calls.facts import CallFacts
from appliance.config import FaxConfig
from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.session import TRACE_BYTES, TRACE_LINES, ReceiveSession, bounded_trace
from appliance.fax.testpages import demo_pages
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spool.store import Spool

#: a TSI is 20 printable ASCII characters: enough for markup
HOSTILE_TSI = "<b onclick='x'>7</b>"


def test_trace_of_a_real_call_is_on_the_fax_page(admin_client: FlaskClient, spool: Spool, tmp_path) -> None:
    write_fax_tiff(demo_pages(1, STANDARD), tmp_path / "tx.tif", STANDARD)
    fax = spool.begin_fax(1000.0, caller_number="+4930123")
    tx = AudioFaxTerminal(calling=True, tx_file=tmp_path / "tx.tif", ident=HOSTILE_TSI)
    rx = AudioFaxTerminal(calling=False, rx_file=spool.incoming_path(fax), ident="5551000")
    session = ReceiveSession(rx, 0.0, FaxConfig())
    blocks = 0
    while (tx.finished is None or rx.finished is None) and blocks < 200 * 50:
        a, b = tx.transmit_g711(160), rx.transmit_g711(160)
        rx.receive_g711(a)
        tx.receive_g711(b)
        blocks += 1
    session.poll(blocks * 0.02)
    rx.close(), tx.close()
    facts = CallFacts.answered(fax).ended_with(session.facts(blocks * 0.02))
    done = spool.finish_fax(fax.id, 1100.0, complete=session.complete, **facts.columns())
    assert done.state == "received" and done.remote_ident == HOSTILE_TSI

    body = admin_client.get(f"/faxes/{fax.id}").get_data(as_text=True)
    trace = body[body.index('id="trace"'):body.index("</table>", body.index('id="trace"'))]
    for frame in ("DIS", "DCS", "CFR", "MCF"):  # the T.30 handshake, decoded
        assert f'<td class="frame">{frame}</td>' in trace, frame
    assert HOSTILE_TSI not in body and str(escape(HOSTILE_TSI)) in body
    assert len(done.extra["trace"]) <= 400


def test_stored_trace_is_bounded() -> None:
    lines = [f"line {i} " + "x" * 300 for i in range(1000)]
    kept = bounded_trace(lines)
    assert kept == lines[-len(kept):] and kept[-1] == lines[-1]
    assert sum(len(x) + 1 for x in kept) <= TRACE_BYTES and len(kept) > 150
    assert bounded_trace(["a", "b"]) == ["a", "b"]
    assert len(bounded_trace(["x"] * 1000)) == TRACE_LINES
