"""Sending end to end: one appliance sends, another receives and mails, over real SIP on loopback.

The sender is queued by each way in (the CLI, the API, mail to its SMTP listener); the receiver
is the appliance's receive side (its own SIP, spandsp and delivery): what it mails is compared
pixel by pixel with the pages the sender queued, below the header line the sender stamps. The
sender's report comes back through its own delivery to the same SMTP server.
"""

from __future__ import annotations

import email
import email.policy
import io
import math
import smtplib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.fax.pages import FINE, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from tests.budgets import LOADED
from tests.conftest import free_port
from tests.e2e.conftest import ApplianceProcess, SmtpServer, smtp, tiff_attachment  # noqa: F401 - smtp is a fixture

pytestmark = pytest.mark.slow


def routes(receiver: ApplianceProcess, extra: str = "") -> str:
    uri = f"sip:{{number}}@127.0.0.1:{receiver.sip_port}"
    return f"""
[outbound]
enabled = true
ident = "+1 555 2000"
name = "Faxbridge Test Sender"
country_code = "1"
area_code = "555"
national_prefix = "1"
international_prefix = "011"
{extra}

[[outbound.routes]]
name = "t38"
match = "^\\\\+15555551002$"
via = "{uri}"
number_format = "local"
t38 = "request"
retries = [10]

[[outbound.routes]]
name = "pbx"
match = "^\\\\+1"
via = "{uri}"
number_format = "local"
t38 = "off"
forbid = ["premium", "international"]
retries = [10]
max_calls = 3
"""


@pytest.fixture
def pair(tmp_path: Path, smtp: SmtpServer) -> Iterator[tuple[ApplianceProcess, ApplianceProcess]]:
    (tmp_path / "rx").mkdir()
    (tmp_path / "tx").mkdir()
    receiver = ApplianceProcess(tmp_path / "rx", smtp.port, rtp_half=0)
    receiver.start()
    sender = ApplianceProcess(tmp_path / "tx", smtp.port, rtp_half=1, extra=routes(receiver))
    sender.start()
    yield sender, receiver
    sender.stop()
    receiver.stop()


def document(tmp: Path, pages: int, name: str = "doc.tif") -> tuple[Path, list[Image.Image]]:
    sent = demo_pages(pages, FINE)
    path = tmp / name
    write_fax_tiff(sent, path, FINE)
    return path, sent


def cli(sender: ApplianceProcess, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "send", "--config", str(sender.config), "--state-dir",
         str(sender.workdir), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def queued_tiff(sender: ApplianceProcess, job_id: int) -> bytes:
    with closing(sqlite3.connect(sender.workdir / "spool" / "spool.db")) as c:
        (uid,) = c.execute("SELECT uid FROM out_jobs WHERE id = ?", (job_id,)).fetchone()
    return (sender.workdir / "spool" / "outbound" / f"{uid}.tif").read_bytes()


def assert_same_below_header(received: bytes, queued: bytes) -> None:
    """Each received page is the queued page, except for the header line the sender stamped on top
    (which must be there: the top strip differs)."""
    from appliance.outbound.header import HEADER_MM

    got, want = read_pages(io.BytesIO(received)), read_pages(io.BytesIO(queued))
    assert len(got) == len(want), f"{len(got)} pages received, {len(want)} queued"
    for n, (g, w) in enumerate(zip(got, want), 1):
        assert g.size == w.size, f"page {n}: {g.size} received, {w.size} queued"
        box = ImageChops.difference(g.convert("L"), w.convert("L")).getbbox()
        assert box is not None, f"page {n} has no header line"
        rows = math.ceil(HEADER_MM / 25.4 * float(g.info.get("dpi", FINE)[1]))
        assert box[3] <= rows, f"page {n} differs below the header line: {box}"


def mails_to(smtp: SmtpServer, rcpt: str, count: int, timeout: float = LOADED * 4) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in smtp.handler.parsed() if rcpt in str(m["To"])]
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{count} mail(s) to {rcpt} expected; all: {[m['To'] for m in smtp.handler.parsed()]}")


def test_cli_sends_over_g711_and_t38_and_the_report_comes_back(
    pair: tuple[ApplianceProcess, ApplianceProcess], smtp: SmtpServer, tmp_path: Path
) -> None:
    sender, receiver = pair
    two, _ = document(tmp_path, 2, "two.tif")
    one, _ = document(tmp_path, 1, "one.tif")
    g711 = subprocess.Popen(
        [sys.executable, "-m", "appliance", "send", "--config", str(sender.config), "--state-dir", str(sender.workdir),
         "--to", "555-1000", str(two), "--report-to", "alice@example.test", "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    t38 = cli(sender, "--to", "(555) 1002", str(one), "--cover-note", "Please sign page 2.", "--wait")
    out, _ = g711.communicate(timeout=400)
    assert g711.returncode == 0, out + sender.log_text()[-3000:]
    assert t38.returncode == 0, t38.stdout + t38.stderr + sender.log_text()[-3000:]
    assert "queued as fax" in out and "sent, 2 of 2 page(s) confirmed" in out, out
    assert "Receiver: +1 555 1000" in out, out  # the receiving appliance's CSI
    assert "T.38" in t38.stdout, t38.stdout

    sales = mails_to(smtp, "sales@example.test", 1)[0]
    job = int(out.split("queued as fax ", 1)[1].split()[0])
    assert_same_below_header(tiff_attachment(sales), queued_tiff(sender, job))
    billing = mails_to(smtp, "billing@example.test", 1)[0]  # 5551002, over T.38
    assert len(read_pages(io.BytesIO(tiff_attachment(billing)))) == 2  # the cover page and the page

    report = mails_to(smtp, "alice@example.test", 1)[0]
    assert report["Subject"] == "Fax to +15555551000 sent (2 pages)"
    text = report.get_body(("plain",)).get_content()
    assert "2 of 2 confirmed" in text and "+1 555 1000" in text, text
    assert any(p.get_content_type() == "image/png" for p in report.walk()), "no first-page thumbnail"


def test_mail_to_fax_through_the_smtp_listener(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    (tmp_path / "rx").mkdir()
    (tmp_path / "tx").mkdir()
    receiver = ApplianceProcess(tmp_path / "rx", smtp.port, rtp_half=0)
    receiver.start()
    port = free_port("tcp")
    extra = f'smtp_listen = ["127.0.0.1:{port}"]\ndomain = "fax.example.test"\ntrusted_relays = ["127.0.0.1"]\n' \
            'allowed_senders = ["*@example.test"]'
    sender = ApplianceProcess(tmp_path / "tx", smtp.port, rtp_half=1, extra=routes(receiver, extra))
    sender.start()
    try:
        pdf = io.BytesIO()
        pages = demo_pages(1, FINE)
        pages[0].save(pdf, "PDF", resolution=204.0)
        msg = EmailMessage()
        msg["From"] = "bob@example.test"
        msg["To"] = "5551001@fax.example.test"
        msg["Subject"] = "contract"
        msg.set_content("See the attached contract.\n-- \nBob")
        msg.add_attachment(pdf.getvalue(), maintype="application", subtype="pdf", filename="contract.pdf")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.send_message(msg)
        support = mails_to(smtp, "support@example.test", 1)[0]
        assert len(read_pages(io.BytesIO(tiff_attachment(support)))) >= 1
        report = mails_to(smtp, "bob@example.test", 1)[0]
        assert report["Subject"].startswith("Fax to +15555551001 sent"), report["Subject"]
        # a PDF bomb: refused with the renderer's reason (the 550 Exchange turns into an NDR), the
        # daemon unharmed and the good mail above unaffected
        from tests.outbound.test_render_child import deflate_bomb

        bomb = EmailMessage()
        bomb["From"] = "bob@example.test"
        bomb["To"] = "5551001@fax.example.test"
        bomb["Subject"] = "bomb"
        bomb.set_content("x")
        bomb.add_attachment(deflate_bomb(), maintype="application", subtype="pdf", filename="bomb.pdf")
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                s.send_message(bomb)
        assert refused.value.smtp_code == 550 and b"bomb.pdf" in refused.value.smtp_error, refused.value
        assert sender.proc is not None and sender.proc.poll() is None
        # a recipient outside the fax domain is never relayed
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                s.sendmail("bob@example.test", ["someone@elsewhere.test"], msg.as_bytes())
    finally:
        sender.stop()
        receiver.stop()


def test_a_sender_killed_mid_fax_resends_once_and_the_report_says_so(
    pair: tuple[ApplianceProcess, ApplianceProcess], smtp: SmtpServer, tmp_path: Path
) -> None:
    sender, receiver = pair
    doc, _ = document(tmp_path, 3)
    queued = cli(sender, "--to", "5551003", str(doc), "--report-to", "carol@example.test")
    assert queued.returncode == 0, queued.stdout + queued.stderr
    job = int(queued.stdout.split("queued as fax ", 1)[1].split()[0])
    db = sender.workdir / "spool" / "spool.db"

    def confirmed() -> int:
        try:
            with closing(sqlite3.connect(db)) as c:
                row = c.execute("SELECT pages_confirmed FROM out_jobs WHERE id = ?", (job,)).fetchone()
                return int(row[0] or 0) if row else 0
        except sqlite3.OperationalError:
            return 0

    deadline = time.monotonic() + 300
    while confirmed() < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert confirmed() >= 1, sender.log_text()[-3000:]
    sender.kill()  # mid-document: page 1 confirmed, the far end has answered
    sender.start()
    report = mails_to(smtp, "carol@example.test", 1, timeout=600)[0]
    text = report.get_body(("plain",)).get_content()
    assert report["Subject"] == "Fax to +15555551003 sent (3 pages)", report["Subject"]
    assert "may have part of it twice" in text, text
    legal = mails_to(smtp, "legal@example.test", 1)  # the complete second copy at least
    pages = [len(read_pages(io.BytesIO(tiff_attachment(m)))) for m in legal]
    assert 3 in pages, pages
    with closing(sqlite3.connect(db)) as c:
        (count,) = c.execute("SELECT count(*) FROM out_jobs").fetchone()
    assert count == 1, "the job was duplicated in the queue"


def test_the_api_queues_a_fax_refuses_what_it_cannot_send_and_reports(
    pair: tuple[ApplianceProcess, ApplianceProcess], smtp: SmtpServer, tmp_path: Path
) -> None:
    from appliance.config import Config
    from appliance.web.app import create_app
    from tests.web.webauth import authed, csrf

    sender, receiver = pair
    client = authed(create_app(Config.load(sender.config, state_dir=sender.workdir)))
    headers = {"X-CSRF-Token": csrf(client)}
    png = io.BytesIO()
    demo_pages(1, FINE)[0].save(png, "PNG")

    def post(number: str, files: list[tuple[bytes, str]], **form: str):  # type: ignore[no-untyped-def]
        data = {"number": number, **form, "file": [(io.BytesIO(b), n) for b, n in files]}
        return client.post("/api/outbound", data=data, headers=headers, content_type="multipart/form-data")

    # refusals, each in words and without a call
    r = post("1-900-555-0100", [(png.getvalue(), "page.png")])
    assert r.status_code == 400 and "premium" in r.get_json()["error"], r.get_json()
    r = post("555-1004", [(b"PK\x03\x04" + b"\x00" * 200, "report.pdf")])
    assert r.status_code == 400 and "report.pdf" in r.get_json()["error"], r.get_json()
    r = post("555-1004", [])
    assert r.status_code == 400

    r = post("555-1004", [(png.getvalue(), "page.png")], report_to="dave@example.test", cover_note="API test")
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert job["e164"] == "+15555551004" and job["pages"] == 2 and job["state"] == "queued"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = client.get(f"/api/outbound/{job['id']}").get_json()
        if got["state"] in ("sent", "failed", "cancelled"):
            break
        time.sleep(1)
    assert got["state"] == "sent", got
    assert got["pages_confirmed"] == 2 and got["attempts"][0]["way"].startswith("SIP")
    assert any("MCF" in line for line in got["trace"])
    listed = client.get("/api/outbound").get_json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert client.post(f"/api/outbound/{job['id']}/cancel", headers=headers).status_code == 400  # sent: too late
    hr = mails_to(smtp, "hr@example.test", 1)[0]
    assert len(read_pages(io.BytesIO(tiff_attachment(hr)))) == 2
    assert mails_to(smtp, "dave@example.test", 1)[0]["Subject"] == "Fax to +15555551004 sent (2 pages)"
