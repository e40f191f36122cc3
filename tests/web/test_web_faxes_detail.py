"""One fax's page: T.30 trace, PDF download, resend (waking the daemon) and delete, on a real spool."""

from __future__ import annotations

import html
import io
import json
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image

from appliance.config import Config, RoutingConfig, SpoolConfig, SystemConfig, config_file
from appliance.spool.store import FaxRecord, Spool
from appliance.web.app import create_app
from tests.provided import require_import
from webauth import csrf, login
from webfax import FINE, STANDARD, T0, XSS, add_fax, black_box

TRACE = ["FLOW fb1 Starting answer mode", "> DIS ff 13 80 00 ee fa", "< DCS ff 13 83 00 46 f8 84",
         "> CFR ff 13 84", "< MPS ff 13 4f", "> MCF ff 13 8c"]


def get(client: FlaskClient, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code)
    return r.get_data(as_text=True)


def post(client: FlaskClient, url: str, data: dict[str, str], status: int) -> str:
    r = client.post(url, data={**data, "csrf_token": csrf(client)})
    assert r.status_code == status, (url, r.status_code, r.get_data(as_text=True)[-600:])
    return r.headers.get("Location", "") if status == 302 else r.get_data(as_text=True)


def test_trace_is_shown_in_words(admin_client: FlaskClient, spool: Spool) -> None:
    """Frames decoded, spandsp's FLOW log left to the diagnostics file, a line that is no frame
    (a modem's dialogue) kept as text, escaped."""
    fax = add_fax(spool, T0, dpis=[STANDARD], remote_ident=XSS,
                  extra={"trace": [*TRACE, f"< TSI {XSS}"], "remote_model": "X-1000"})
    body = get(admin_client, f"/faxes/{fax.id}")
    section = body[body.index('id="trace"'):body.index("</section>", body.index('id="trace"'))]
    rows = re.findall(r'<td class="dir">(\w*)</td>\s*<td class="frame">([^<]+)</td>', section)
    assert rows == [("appliance", "DIS"), ("caller", "DCS"), ("appliance", "CFR"), ("caller", "MPS"),
                    ("appliance", "MCF"), ("", "modem")]
    assert "<li>Modem: V.29, 9,600 bit/s</li>" in section and "Starting answer mode" not in section
    assert f"&lt; TSI {html.escape(XSS)}" in section and XSS not in body
    assert "<dt>trace</dt>" not in body.lower() and "<dt>remote model</dt>" not in body.lower()
    assert "<dt>Sending fax machine</dt><dd>X-1000</dd>" in body


def test_no_trace_says_so(admin_client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, dpis=[STANDARD])
    assert "No trace was recorded for this call." in get(admin_client, f"/faxes/{fax.id}")


def test_pdf_download_has_every_page(admin_client: FlaskClient, spool: Spool) -> None:
    pikepdf = require_import("pikepdf", "pikepdf, of the test extra")
    fax = add_fax(spool, T0, dpis=[STANDARD, FINE, STANDARD])
    body = get(admin_client, f"/faxes/{fax.id}")
    assert f'href="/faxes/{fax.id}.pdf"' in body
    r = admin_client.get(f"/faxes/{fax.id}.pdf")
    assert r.status_code == 200 and r.mimetype == "application/pdf" and r.data[:5] == b"%PDF-"
    assert r.headers["Content-Disposition"].startswith("attachment; filename=fax-")
    assert r.headers["Content-Disposition"].endswith(f"-{fax.id}.pdf")
    pdf = pikepdf.open(io.BytesIO(r.data))
    assert len(pdf.pages) == 3
    for n, page in enumerate(pdf.pages, start=1):
        (img,) = [pikepdf.PdfImage(v).as_pil_image() for v in page.get_images().values()]
        x0, y0, x1, y1 = black_box(n)
        assert img.convert("L").getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == 0, n  # this page's box
        assert img.convert("L").getpixel((x1 + 50, (y0 + y1) // 2)) == 255, n
    assert admin_client.get(f"/faxes/{add_fax(spool, T0 + 60).id}.pdf").status_code == 404  # no image


class FakeDaemon:
    """A real Unix socket answering the control protocol's one line, recording each request."""

    def __init__(self, path: Path) -> None:
        self.requests: list[dict[str, object]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                line = conn.makefile("rb").readline()
                request = json.loads(line)
                if request.get("cmd") != "restart-needed":  # every page's banner asks; not under test
                    self.requests.append(request)
                conn.sendall(b'{"ok": true}\n')

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def control_config(tmp_path: Path) -> Iterator[tuple[Config, Path]]:
    short = Path(tempfile.mkdtemp(prefix="fbctl", dir="/tmp"))  # Unix socket paths are short
    sock = short / "control.sock"
    yield Config(spool=SpoolConfig(dir="spool"), system=SystemConfig(control_socket=str(sock)),
                 routing=RoutingConfig(default="faxes@example.com"), base_dir=tmp_path), sock
    sock.unlink(missing_ok=True)
    short.rmdir()


def delivered_and_dead(spool: Spool) -> FaxRecord:
    fax = add_fax(spool, T0, dpis=[STANDARD], recipients=["a@example.com", "b@example.com", "maildir:archive"])
    a, b, arch = spool.jobs_for(fax.id)
    spool.claim_due_jobs(T0 + 100)
    spool.job_delivered(a.id, T0 + 101, "250 OK")
    spool.job_dead(b.id, T0 + 102, "550 5.1.1 no such user")
    spool.job_delivered(arch.id, T0 + 103, "stored")
    return fax


def test_resend_to_the_same_recipients_new_message_ids_and_wakes_the_daemon(
        control_config: tuple[Config, Path]) -> None:
    config, sock = control_config
    daemon = FakeDaemon(sock)
    try:
        with Spool(config.path(config.spool.dir)) as spool:
            fax = delivered_and_dead(spool)
            before = {j.recipient: j.message_id for j in spool.jobs_for(fax.id)}
            client = create_app(config).test_client()
            login(client)
            body = get(client, f"/faxes/{fax.id}")
            assert "Resend to a@example.com, b@example.com</button>" in body  # not the archive
            where = post(client, f"/faxes/{fax.id}/resend", {"to": "same"}, 302)
            assert where == f"/faxes/{fax.id}?resent=1#delivery"
            jobs = {j.recipient: j for j in spool.jobs_for(fax.id)}
            for rcpt in ("a@example.com", "b@example.com"):
                assert jobs[rcpt].state == "queued" and jobs[rcpt].attempts == 0
                assert jobs[rcpt].message_id != before[rcpt] and jobs[rcpt].message_id.endswith("@faxbridge>")
            assert jobs["maildir:archive"].message_id == before["maildir:archive"]
            assert jobs["maildir:archive"].state == "delivered"
            assert len(spool.attempts(jobs["b@example.com"].id)) == 1  # the history stays
            assert spool.get_fax(fax.id).state == "delivering"  # type: ignore[union-attr]  # archive done
            assert daemon.requests == [{"cmd": "wake"}]
            assert "Queued again as new messages" in get(client, where)
            # all of them in flight now: nothing queued twice, and it says so
            where = post(client, f"/faxes/{fax.id}/resend", {"to": "same"}, 302)
            assert "resent=0" in where and "skipped=2" in where
            assert "every recipient is still being delivered" in get(client, where)
            assert len(daemon.requests) == 1
    finally:
        daemon.close()


def test_resend_to_another_address(admin_client: FlaskClient, spool: Spool, config: Config) -> None:
    """Daemon down (no socket): the job is queued all the same; the worker finds it itself."""
    config.routing.accepted_domains = ["example.com", "example.co.uk"]
    fax = delivered_and_dead(spool)
    where = post(admin_client, f"/faxes/{fax.id}/resend", {"to": "other", "address": " new.desk@example.co.uk "}, 302)
    assert "resent=1" in where
    jobs = {j.recipient: j for j in spool.jobs_for(fax.id)}
    assert jobs["new.desk@example.co.uk"].state == "queued"
    ids = [j.message_id for j in jobs.values()]
    assert len(set(ids)) == len(ids) == 4


def test_resend_outside_accepted_domains_is_refused_naming_address_and_setting(
        admin_client: FlaskClient, spool: Spool, config: Config) -> None:
    """The owner's resend is held to routing.accepted_domains as routing is: nothing is queued."""
    config.routing.default = "faxes@example.com"  # accepted_domains not set: example.com only
    fax = delivered_and_dead(spool)
    before = spool.jobs_for(fax.id)
    body = post(admin_client, f"/faxes/{fax.id}/resend", {"to": "other", "address": "eve@evil.example"}, 400)
    assert ("Not sent: &#39;eve@evil.example&#39; is outside routing.accepted_domains (not set, so only "
            "the domain of routing.default: example.com).") in body
    assert 'role="alert"' in body and spool.jobs_for(fax.id) == before
    # a subdomain is not the domain: listed domains match exactly
    config.routing.accepted_domains = ["example.com"]
    body = post(admin_client, f"/faxes/{fax.id}/resend", {"to": "other", "address": "bob@mail.example.com"}, 400)
    assert "&#39;bob@mail.example.com&#39; is outside routing.accepted_domains (example.com)" in body
    assert spool.jobs_for(fax.id) == before
    # the same recipients after the owner narrowed the domains: refused too, and said so
    config.routing.accepted_domains = ["example.org"]
    body = post(admin_client, f"/faxes/{fax.id}/resend", {"to": "same"}, 400)
    assert "&#39;a@example.com&#39; is outside routing.accepted_domains (example.org)" in body
    assert "&#39;b@example.com&#39; is outside" in body and spool.jobs_for(fax.id) == before
    # case does not matter; the accepted one is queued
    config.routing.accepted_domains = ["EXAMPLE.com"]
    assert "resent=1" in post(admin_client, f"/faxes/{fax.id}/resend", {"to": "other", "address": "Bob@Example.COM"}, 302)


def test_resend_refusal_follows_the_saved_file_not_a_stale_process(admin_client: FlaskClient, spool: Spool,
                                                                  config: Config) -> None:
    """The settings page writes the file and the daemon reloads it; the web process's own Config
    is from its start.  A resend is judged by the file, as the daemon will judge it."""
    config.routing.default = "faxes@example.com"
    config_file(config).write_text(
        '[spool]\ndir = "spool"\n[routing]\ndefault = "faxes@example.com"\n'
        'accepted_domains = ["example.com", "partner.example"]\n')
    fax = delivered_and_dead(spool)
    assert "resent=1" in post(admin_client, f"/faxes/{fax.id}/resend",
                              {"to": "other", "address": "desk@partner.example"}, 302)
    assert "desk@partner.example" in {j.recipient for j in spool.jobs_for(fax.id)}


def test_resend_takes_every_address_the_configuration_takes(admin_client: FlaskClient, spool: Spool,
                                                              config: Config) -> None:
    """The form checks addresses by the configuration's rule: a box whose faxes go to
    faxes@localhost (make run's defaults) may send a copy to desk@localhost (it was refused)."""
    config_file(config).write_text('[spool]\ndir = "spool"\n[routing]\ndefault = "faxes@localhost"\n')
    fax = delivered_and_dead(spool)
    assert "resent=1" in post(admin_client, f"/faxes/{fax.id}/resend", {"to": "other", "address": "desk@localhost"}, 302)
    assert "desk@localhost" in {j.recipient for j in spool.jobs_for(fax.id)}


@pytest.mark.parametrize("address", [
    "", "bob", "sales@", "Bob <bob@example.com>", "bob@example.com, eve@example.com",
    "bob@example.com\r\nBcc: eve@example.com", "bob@exa mple.com", "bob@[127.0.0.1]", ".bob@example.com",
    "bob..x@example.com", "\"bob\"@example.com", "bob@-example.com", "x" * 65 + "@example.com",
    "bob@" + "a" * 250 + ".com", XSS + "@example.com"])
def test_resend_refuses_anything_but_one_plain_address(admin_client: FlaskClient, spool: Spool,
                                                      address: str) -> None:
    fax = delivered_and_dead(spool)
    before = spool.jobs_for(fax.id)
    body = post(admin_client, f"/faxes/{fax.id}/resend", {"to": "other", "address": address}, 400)
    assert "Not sent: the address" in body and 'role="alert"' in body
    assert spool.jobs_for(fax.id) == before
    assert XSS not in body


def test_resend_needs_csrf_and_a_fax(admin_client: FlaskClient, spool: Spool) -> None:
    fax = delivered_and_dead(spool)
    before = spool.jobs_for(fax.id)
    r = admin_client.post(f"/faxes/{fax.id}/resend", data={"to": "same"})
    assert r.status_code in (400, 403) and spool.jobs_for(fax.id) == before
    assert admin_client.post(f"/faxes/{fax.id}/resend", data={"to": "bogus", "csrf_token": csrf(admin_client)}).status_code == 400
    nofax = add_fax(spool, T0 + 600)
    body = post(admin_client, f"/faxes/{nofax.id}/resend", {"to": "other", "address": "a@example.com"}, 409)
    assert "brought no fax" in body and spool.jobs_for(nofax.id) == []
    assert admin_client.post("/faxes/999/resend", data={"to": "same", "csrf_token": csrf(admin_client)}).status_code == 404


def test_delete_after_confirmation_removes_files_and_rows(admin_client: FlaskClient, spool: Spool,
                                                          config: Config) -> None:
    fax = delivered_and_dead(spool)
    keep = add_fax(spool, T0 + 60, dpis=[STANDARD], recipients=["a@example.com"])
    root = config.path(config.spool.dir)
    for size in ("thumb", "full"):
        assert admin_client.get(f"/faxes/{fax.id}/pages/1.png?size={size}").status_code == 200
    assert admin_client.get(f"/faxes/{keep.id}/pages/1.png?size=thumb").status_code == 200
    image = root / fax.image  # type: ignore[operator]
    cached = sorted(p.name for p in (root / "cache").iterdir() if p.name.startswith(fax.uid))
    assert image.is_file() and len(cached) == 2
    job_ids = [j.id for j in spool.jobs_for(fax.id)]
    spool.resend(fax.id, "b@example.com", T0 + 200)  # a queued job is cancelled with the fax

    detail = get(admin_client, f"/faxes/{fax.id}")
    assert f'href="/faxes/{fax.id}/delete"' in detail
    confirm = get(admin_client, f"/faxes/{fax.id}/delete")
    assert f'action="/faxes/{fax.id}/delete"' in confirm and 'name="csrf_token"' in confirm
    assert spool.get_fax(fax.id) is not None  # asking deletes nothing

    assert admin_client.post(f"/faxes/{fax.id}/delete").status_code in (400, 403)  # no token
    assert spool.get_fax(fax.id) is not None
    where = post(admin_client, f"/faxes/{fax.id}/delete", {}, 302)
    assert where == f"/faxes?deleted={fax.id}"
    assert f"Fax {fax.id} was deleted." in get(admin_client, where)
    assert spool.get_fax(fax.id) is None and spool.jobs_for(fax.id) == []
    assert all(spool.attempts(j) == [] for j in job_ids)
    assert all(spool.get_alert(j) is None for j in job_ids)
    assert not image.exists()
    assert not [p for p in (root / "cache").iterdir() if p.name.startswith(fax.uid)]
    assert [j.fax_id for j in spool.claim_due_jobs(T0 + 10_000)] == [keep.id]  # nothing of it left
    # the other fax is untouched
    assert (root / keep.image).is_file() and spool.get_fax(keep.id) is not None  # type: ignore[operator]
    assert [p for p in (root / "cache").iterdir() if p.name.startswith(keep.uid)]
    get(admin_client, f"/faxes/{fax.id}", 404)
    assert admin_client.post(f"/faxes/{fax.id}/delete", data={"csrf_token": csrf(admin_client)}).status_code == 404


def test_delete_is_refused_while_receiving_or_delivering(admin_client: FlaskClient, spool: Spool) -> None:
    busy = add_fax(spool, T0, dpis=[STANDARD], recipients=["a@example.com"])
    spool.claim_due_jobs(T0 + 100)  # the worker has it: delivering
    receiving = spool.begin_fax(T0 + 200, caller_number="+1")
    for fax, words in ((busy, "being delivered right now"), (receiving, "still coming in")):
        assert "cannot be deleted while" in get(admin_client, f"/faxes/{fax.id}")
        confirm = get(admin_client, f"/faxes/{fax.id}/delete")
        assert words in confirm and "Delete for good" not in confirm
        body = post(admin_client, f"/faxes/{fax.id}/delete", {}, 409)
        assert words in body
        assert spool.get_fax(fax.id) is not None
    assert spool.image_path(busy).is_file()  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        spool.delete_fax(busy.id)
    with pytest.raises(KeyError):
        spool.delete_fax(9999)


def test_hostile_values_on_the_delete_page(admin_client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, dpis=[STANDARD], remote_ident=XSS, caller_name="\"'><b>x</b>", caller_number=XSS)
    body = get(admin_client, f"/faxes/{fax.id}/delete")
    assert XSS not in body and "<b>x</b>" not in body and html.escape(XSS) in body


def test_images_of_a_fax_render_after_a_page_was_cached(admin_client: FlaskClient, spool: Spool) -> None:
    """The detail page's thumbnails and full pages are PNGs of the stored TIFF."""
    fax = add_fax(spool, T0, dpis=[FINE, STANDARD])
    for n in (1, 2):
        r = admin_client.get(f"/faxes/{fax.id}/pages/{n}.png?size=full")
        assert r.status_code == 200 and r.mimetype == "image/png"
        with Image.open(io.BytesIO(r.data)) as im:
            assert im.size[0] == 1728


def test_the_page_says_what_was_refused_for_this_call(admin_client: FlaskClient, spool: Spool) -> None:
    """A recipient refused at routing, or a referral from a peer that may not name one, is shown in
    the delivery section in plain words (caller-influenced text escaped)."""
    fax = add_fax(spool, T0, dpis=[STANDARD], recipients=["faxes@example.com"], extra={
        "route": {"to": ["faxes@example.com"], "refused": [f"'{XSS}@evil.example' is outside "
                                                           "routing.accepted_domains (example.com)"]},
        "um_referral_ignored": {"why": "peer 'private-network' is not an exchange_um peer",
                                "recipient": "eve@evil.example"}})
    body = get(admin_client, f"/faxes/{fax.id}")
    section = body[body.index('id="delivery"'):]
    assert (f"Not sent to &#39;{html.escape(XSS)}@evil.example&#39; is outside routing.accepted_domains "
            "(example.com).") in section
    assert ("Exchange UM referral ignored: peer &#39;private-network&#39; is not an exchange_um peer "
            "(it named eve@evil.example); the fax was routed by the rules.") in section
    assert XSS not in body
    plain = add_fax(spool, T0 + 60, dpis=[STANDARD], recipients=["faxes@example.com"])
    assert "notice bad" not in get(admin_client, f"/faxes/{plain.id}").split('id="delivery"')[1].split("</section>")[0]
