"""The outbound worker's policy, with the real queue, the real header stamping and report mail to
a real SMTP server; the far end is a script of outcomes (the SIP and modem ways out have their
own tests against real far ends: test_sip_send_*, test_modem_send_*).

What is checked: a busy number is tried again on the route's schedule and the report says how it
ended; a cancel hangs up a fax being sent; a stopping worker gives back a call nobody answered;
every page that goes out carries the header line; the report names the far end, the pages and
carries the first page.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.config import Config, OutboundRouteConfig
from appliance.fax.pages import FINE, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.service import OutboundService
from appliance.outbound.worker import OutboundWorker, Progress
from appliance.spool.outbound import OutJob
from appliance.spool.store import Spool
from tests.conftest import free_port
from tests.e2e.conftest import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port("tcp"))
    server.start()
    yield server
    server.stop()


def config(tmp_path: Path, smtp_port: int, retries: list[int]) -> Config:
    return Config.from_dict(
        {
            "fax": {"ident": "+1 555 2000"},
            "spool": {"dir": "spool"},
            "delivery": {"backend": "smtp", "url": f"smtp://127.0.0.1:{smtp_port}", "from": "fax@example.test",
                         "starttls": "none"},
            "outbound": {
                "enabled": True,
                "name": "Test Sender",
                "country_code": "1",
                "area_code": "555",
                "routes": [{"name": "pbx", "match": "^\\+1", "via": "sip:{number}@127.0.0.1:5", "number_format": "local",
                            "retries": retries, "max_calls": 2}],
            },
        },
        base_dir=tmp_path,
    )


class Script:
    """The far end: one outcome per attempt; "hold" waits for the cancel (a long fax)."""

    def __init__(self, outcomes: list[Outcome | str]) -> None:
        self.outcomes = outcomes
        self.calls: list[tuple[str, list[Image.Image]]] = []

    async def __call__(self, job: OutJob, route: OutboundRouteConfig, digits: str, tiff: Path, progress: Progress,
                       cancel: asyncio.Event) -> Outcome:
        self.calls.append((digits, read_pages(tiff)))
        step = self.outcomes.pop(0)
        if step == "hold":
            progress.connected()
            progress.page(1)
            await cancel.wait()
            return Outcome(Result.DROPPED, "hung up", pages_confirmed=1, pages_total=job.pages)
        if step == "ring":
            await cancel.wait()
            return Outcome(Result.NO_ANSWER, "stopped while ringing", pages_total=job.pages)
        assert isinstance(step, Outcome)
        if step.result is not Result.BUSY:
            progress.connected()
            for n in range(1, step.pages_confirmed + 1):
                progress.page(n)
        return step


def submit(service: OutboundService, tmp: Path, pages: int, sender: str = "alice@example.test") -> tuple[OutJob,
                                                                                                          list]:
    sent = demo_pages(pages, FINE)
    doc = tmp / f"doc{time.monotonic_ns()}.tif"
    write_fax_tiff(sent, doc, FINE)
    job = service.queue.submit(doc, time.time(), number="555-1234", e164="+15555551234", route="pbx", sender=sender,
                               source="api", subject="", pages=pages, meta={})
    return job, sent


async def until(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def make(tmp_path: Path, smtp: SmtpServer, retries: list[int], script: Script) -> tuple[OutboundService, Spool]:
    cfg = config(tmp_path, smtp.port, retries)
    spool = Spool(cfg.path("spool"))
    service = OutboundService(lambda: cfg, spool)
    service.worker = OutboundWorker(lambda: cfg, service.queue, script, service._send_mail)
    return service, spool


def test_busy_is_retried_on_the_schedule_then_sent_and_reported(tmp_path: Path, smtp: SmtpServer) -> None:
    script = Script([Outcome(Result.BUSY, "SIP 486 Busy Here", sip_status=486),
                     Outcome(Result.SENT, "2 page(s) confirmed", pages_confirmed=2, remote_ident="+1 555 9999",
                             bit_rate=14400, ecm=True, way="SIP T.38")])
    service, spool = make(tmp_path, smtp, [10], script)

    async def go() -> OutJob:
        job, _ = submit(service, tmp_path, 2)
        task = asyncio.create_task(service.worker.run())
        await until(lambda: (j := service.queue.get(job.id)) is not None and j.state == "retry_wait")
        waiting = service.queue.get(job.id)
        assert waiting is not None and waiting.last_result == "busy"
        assert 8.5 <= waiting.next_attempt - time.time() <= 11.0  # the route's 10 s, with 10 % jitter
        await until(lambda: service.queue.get(job.id).state == "sent", 30)  # type: ignore[union-attr]
        await until(lambda: len(smtp.handler.messages) == 1, 30)
        service.worker.stop()
        await task
        done = service.queue.get(job.id)
        assert done is not None
        return done

    done = asyncio.run(go())
    spool.close()
    assert [d for d, _ in script.calls] == ["5551234", "5551234"]  # local format: the area code is ours
    assert done.attempts == 2 and done.pages_confirmed == 2 and done.remote_ident == "+1 555 9999"
    msg = email.message_from_bytes(smtp.handler.messages[0][2], policy=email.policy.default)
    assert msg["To"] == "alice@example.test"
    assert msg["Subject"] == "Fax to +15555551234 sent (2 pages)"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for want in ("2 of 2 confirmed", "Receiver:  +1 555 9999", "14400 bit/s with ECM", "SIP T.38", "Attempts:  2"):
        assert want in text, (want, text)
    png = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert len(png) == 1 and Image.open(io.BytesIO(png[0].get_content())).width == 300


def test_every_page_carries_the_header_line_and_nothing_else_changes(tmp_path: Path, smtp: SmtpServer) -> None:
    from appliance.outbound.header import HEADER_MM

    script = Script([Outcome(Result.SENT, pages_confirmed=3)])
    service, spool = make(tmp_path, smtp, [10], script)

    async def go() -> list:
        job, sent = submit(service, tmp_path, 3, sender="")
        task = asyncio.create_task(service.worker.run())
        await until(lambda: service.queue.get(job.id).state == "sent")  # type: ignore[union-attr]
        service.worker.stop()
        await task
        return sent

    sent = asyncio.run(go())
    spool.close()
    rows = round(HEADER_MM / 25.4 * FINE[1])
    pages = script.calls[0][1]
    assert len(pages) == 3
    for n, (got, want) in enumerate(zip(pages, sent), 1):
        box = ImageChops.difference(got.convert("L"), want.convert("L")).getbbox()
        assert box is not None and box[1] < rows and box[3] <= rows + 1, f"page {n}: {box}"
    assert smtp.handler.messages == []  # no mail address: the report is on the page, not mailed


def test_cancel_hangs_up_a_fax_being_sent_and_the_report_says_cancelled(tmp_path: Path, smtp: SmtpServer) -> None:
    script = Script(["hold"])
    service, spool = make(tmp_path, smtp, [10], script)

    async def go() -> OutJob:
        job, _ = submit(service, tmp_path, 3)
        task = asyncio.create_task(service.worker.run())
        await until(lambda: service.queue.get(job.id).pages_confirmed == 1)  # type: ignore[union-attr]
        assert service.queue.get(job.id).state == "sending"  # type: ignore[union-attr]
        await service.worker.cancel(job.id)
        await until(lambda: service.queue.get(job.id).state == "cancelled")  # type: ignore[union-attr]
        await until(lambda: len(smtp.handler.messages) == 1)
        service.worker.stop()
        await task
        return service.queue.get(job.id)  # type: ignore[return-value]

    done = asyncio.run(go())
    spool.close()
    assert done.last_result == "cancelled" and done.pages_confirmed == 1
    msg = email.message_from_bytes(smtp.handler.messages[0][2], policy=email.policy.default)
    assert msg["Subject"] == "Fax to +15555551234 cancelled"
    assert "1 of 3 confirmed" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_stopping_worker_gives_back_a_call_nobody_answered(tmp_path: Path, smtp: SmtpServer) -> None:
    script = Script(["ring"])
    service, spool = make(tmp_path, smtp, [10], script)

    async def go() -> OutJob:
        job, _ = submit(service, tmp_path, 1)
        task = asyncio.create_task(service.worker.run())
        await until(lambda: len(script.calls) == 1)
        service.worker.stop()
        await task
        return service.queue.get(job.id)  # type: ignore[return-value]

    job = asyncio.run(go())
    assert job.state == "queued" and job.attempts == 0  # dialled again at the next start; not a failure
    assert service.queue.recover(time.time()) == []
    spool.close()
    shutil.rmtree(tmp_path / "spool")


def test_a_route_removed_from_the_configuration_ends_the_job_with_no_route(tmp_path: Path, smtp: SmtpServer) -> None:
    script = Script([])
    service, spool = make(tmp_path, smtp, [10], script)

    async def go() -> OutJob:
        sent = demo_pages(1, FINE)
        doc = tmp_path / "d.tif"
        write_fax_tiff(sent, doc, FINE)
        job = service.queue.submit(doc, time.time(), number="555-1234", e164="+15555551234", route="gone",
                                   sender="", source="api", subject="", pages=1, meta={})
        task = asyncio.create_task(service.worker.run())
        await until(lambda: service.queue.get(job.id).final)  # type: ignore[union-attr]
        service.worker.stop()
        await task
        return service.queue.get(job.id)  # type: ignore[return-value]

    job = asyncio.run(go())
    spool.close()
    assert job.state == "failed" and job.last_result == "no_route" and script.calls == []
    assert "no longer configured" in job.last_detail


def test_a_mail_port_in_use_leaves_sending_and_receiving_running(tmp_path: Path, smtp: SmtpServer,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cfg = config(tmp_path, smtp.port, [10])
    cfg.outbound.smtp_listen = [f"127.0.0.1:{port}"]
    cfg.outbound.domain = "fax.example.test"
    spool = Spool(cfg.path("spool"))
    service = OutboundService(lambda: cfg, spool)

    async def go() -> None:
        await service.start()  # must not raise: the box keeps receiving and the queue keeps going
        assert service.listener is None
        assert service._tasks, "the worker is not running"
        await service.stop()

    try:
        asyncio.run(go())
    finally:
        taken.close()
        spool.close()
    assert "mail to fax is not available" in caplog.text
