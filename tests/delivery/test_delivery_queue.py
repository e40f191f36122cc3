"""DeliveryWorker end to end: a real spool, a real TIFF, real SMTP servers, a fake clock."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import random
import time


from appliance.config import DeliveryConfig
from appliance.delivery import queue
from appliance.delivery.queue import DeliveryWorker, backoff
from appliance.spool.store import Spool
from smtp_harness import T0, Capture, Clock, free_port, smtp_cfg
from tests.budgets import LOADED



def received_fax(spool: Spool, tiff: bytes, recipients=("sales@example.com",), created: float = T0):
    fax = spool.begin_fax(created, caller_number="5550100", called_number="5551000")
    spool.incoming_path(fax).write_bytes(tiff)
    fax = spool.finish_fax(fax.id, created + 60, complete=True)
    return fax, spool.add_jobs(fax.id, list(recipients), created + 60)


def run(coro):
    return asyncio.run(coro)


def test_backoff_doubles_caps_and_jitters():
    cfg = DeliveryConfig(retry_initial=30.0, retry_max=1800.0)
    rng = random.Random(7)
    for attempts, base in [(1, 30), (2, 60), (3, 120), (6, 960), (7, 1800), (30, 1800)]:
        delays = [backoff(cfg, attempts, rng) for _ in range(200)]
        assert all(0.8 * base <= d <= 1.2 * base for d in delays)
        assert max(delays) - min(delays) > 0.2 * base  # jitter is really applied


def test_server_down_then_up_delivers_once_with_stable_message_id(spool, smtp_server, tiff_bytes):
    fax, (job,) = received_fax(spool, tiff_bytes)
    assert fax.pages == 2
    port = free_port()
    clock = Clock(T0 + 60)
    worker = DeliveryWorker(spool, smtp_cfg(port), clock=clock, rng=random.Random(1))

    assert run(worker.run_once()) == 1  # connection refused
    j = spool.get_job(job.id)
    assert j.state == "failed_retrying" and j.attempts == 1 and "cannot connect" in j.last_error
    assert 0.8 * 30 <= j.next_attempt - clock.t <= 1.2 * 30
    assert spool.get_fax(fax.id).state == "failed_retrying"
    assert run(worker.run_once()) == 0  # not due yet

    clock.t = j.next_attempt
    assert run(worker.run_once()) == 1
    j2 = spool.get_job(job.id)
    assert j2.attempts == 2 and 0.8 * 60 <= j2.next_attempt - clock.t <= 1.2 * 60

    server = smtp_server(port=port)
    clock.t = j2.next_attempt
    assert run(worker.run_once()) == 1
    done = spool.get_job(job.id)
    assert done.state == "delivered" and done.delivered_at == clock.t and done.message_id == job.message_id
    assert spool.get_fax(fax.id).state == "delivered"
    assert len(server.handler.messages) == 1
    got = email.message_from_bytes(server.handler.messages[0]["data"], policy=email.policy.default)
    assert got["Message-ID"] == job.message_id == f"<{fax.uid}.1@faxbridge>"
    (att,) = got.iter_attachments()
    assert att.get_content() == tiff_bytes
    assert [a["ok"] for a in spool.attempts(job.id)] == [False, False, True]
    assert spool.attempts(job.id)[-1]["reply"].startswith("250 2.0.0 Ok")
    clock.t += 10_000
    assert run(worker.run_once()) == 0
    assert len(server.handler.messages) == 1


def test_451_then_accepted_keeps_the_message_id(spool, smtp_server, tiff_bytes):
    server = smtp_server(handler=Capture(data_replies=["451 4.3.0 Try later"]))
    fax, (job,) = received_fax(spool, tiff_bytes)
    clock = Clock(T0 + 60)
    worker = DeliveryWorker(spool, smtp_cfg(server.port), clock=clock, rng=random.Random(2))
    run(worker.run_once())
    j = spool.get_job(job.id)
    assert j.state == "failed_retrying" and j.last_error.startswith("451 4.3.0 Try later")
    clock.t = j.next_attempt
    run(worker.run_once())
    assert spool.get_job(job.id).state == "delivered"
    assert server.handler.attempted == [job.message_id, job.message_id]
    assert len(server.handler.messages) == 1


def test_550_is_dead_at_once_with_the_reply(spool, smtp_server, tiff_bytes, caplog):
    server = smtp_server(handler=Capture(rcpt_replies={"nobody@example.com": "550 5.1.1 No such user here"}))
    fax, (bad, good) = received_fax(spool, tiff_bytes, recipients=("nobody@example.com", "sales@example.com"))
    worker = DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 60))
    with caplog.at_level(logging.ERROR, logger="faxbridge.delivery"):
        assert run(worker.run_once()) == 2
    dead = spool.get_job(bad.id)
    assert dead.state == "dead" and dead.attempts == 1 and dead.last_error.startswith("550 5.1.1 No such user here")
    assert spool.attempts(bad.id)[0]["reply"].startswith("550 5.1.1 No such user here")
    assert spool.get_job(good.id).state == "delivered"
    assert spool.get_fax(fax.id).state == "dead"
    assert "550 5.1.1" in caplog.text
    assert len(server.handler.messages) == 1


def test_too_old_fax_becomes_dead_without_sending(spool, smtp_server, tiff_bytes):
    server = smtp_server()
    fax, (job,) = received_fax(spool, tiff_bytes)
    spool.claim_due_jobs(T0 + 60)  # an attempt is recorded only for a claimed job
    spool.job_retry(job.id, T0, "451 earlier trouble", T0)
    cfg = smtp_cfg(server.port, max_age=3600)
    run(DeliveryWorker(spool, cfg, clock=Clock(T0 + 3601)).run_once())
    j = spool.get_job(job.id)
    assert j.state == "dead" and "gave up" in j.last_error and "451 earlier trouble" in j.last_error
    assert server.handler.attempted == []


def test_missing_image_is_dead_and_logged(spool, smtp_server, tiff_bytes, caplog):
    server = smtp_server()
    fax, (job,) = received_fax(spool, tiff_bytes)
    spool.image_path(fax).unlink()
    with caplog.at_level(logging.ERROR, logger="faxbridge.delivery"):
        run(DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 60)).run_once())
    j = spool.get_job(job.id)
    assert j.state == "dead" and "fax image missing" in j.last_error and fax.image in j.last_error
    assert any(r.levelno == logging.ERROR and fax.uid in r.getMessage() for r in caplog.records)
    assert server.handler.attempted == []


def test_empty_image_file_is_dead(spool, smtp_server, tiff_bytes):
    server = smtp_server()
    fax, (job,) = received_fax(spool, tiff_bytes)
    spool.image_path(fax).write_bytes(b"")
    run(DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 60)).run_once())
    assert spool.get_job(job.id).state == "dead"
    assert server.handler.attempted == []


def test_maildir_backend(spool, tmp_path, tiff_bytes):
    fax, (job,) = received_fax(spool, tiff_bytes)
    cfg = DeliveryConfig(backend="maildir", url="Maildir")
    worker = DeliveryWorker(spool, cfg, clock=Clock(T0 + 60), resolve_path=lambda p: tmp_path / "home" / p)
    run(worker.run_once())
    j = spool.get_job(job.id)
    assert j.state == "delivered"
    (file,) = (tmp_path / "home" / "Maildir" / "new").iterdir()
    assert spool.attempts(job.id)[0]["reply"] == f"maildir {file.name}"
    got = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
    assert got["Message-ID"] == job.message_id


def test_crash_mid_send_resends_the_same_message(tmp_path, smtp_server, tiff_bytes):
    server = smtp_server()
    root = tmp_path / "spool"
    first = Spool(root)
    fax, (job,) = received_fax(first, tiff_bytes)
    assert first.claim_due_jobs(T0 + 60)  # the daemon took the job, then died
    first.close()

    spool = Spool(root)
    try:
        assert spool.recover(T0 + 120)["requeued"] == 1
        run(DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 120)).run_once())
        assert spool.get_job(job.id).state == "delivered"
        assert server.handler.attempted == [job.message_id]
    finally:
        spool.close()


def test_run_wakes_for_new_jobs_and_stops(spool, smtp_server, tiff_bytes, monkeypatch):
    server = smtp_server()
    # idle, the worker would look again only after MAX_IDLE: far beyond the budget, so only wake()
    # and stop() can end each wait below, however slow the machine
    monkeypatch.setattr(queue, "MAX_IDLE", 100 * LOADED)

    async def scenario() -> None:
        worker = DeliveryWorker(spool, smtp_cfg(server.port))
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)  # idle: nothing queued, sleeping up to MAX_IDLE
        start = time.monotonic()
        _, (job,) = received_fax(spool, tiff_bytes, created=time.time() - 60)
        worker.wake()
        while spool.get_job(job.id).state != "delivered":
            assert time.monotonic() - start < LOADED, "wake() did not start a delivery"
            await asyncio.sleep(0.02)
        worker.stop()
        await asyncio.wait_for(task, LOADED)

    run(scenario())
    assert len(server.handler.messages) == 1


def test_run_sleeps_until_the_retry_is_due(spool, smtp_server, tiff_bytes, monkeypatch):
    port = free_port()
    monkeypatch.setattr(queue, "MAX_IDLE", 100 * LOADED)  # only the retry's due time can wake it

    async def scenario() -> None:
        cfg = smtp_cfg(port, retry_initial=0.3, retry_max=0.3)
        worker = DeliveryWorker(spool, cfg, rng=random.Random(3))
        _, (job,) = received_fax(spool, tiff_bytes, created=time.time() - 60)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + LOADED
        while spool.get_job(job.id).attempts < 1:
            assert time.monotonic() < deadline, "the first attempt never ran"
            await asyncio.sleep(0.02)
        smtp_server(port=port)
        deadline = time.monotonic() + LOADED
        while spool.get_job(job.id).state != "delivered":
            assert time.monotonic() < deadline, "the retry never ran"
            await asyncio.sleep(0.02)
        worker.stop()
        await asyncio.wait_for(task, LOADED)

    run(scenario())


def test_stop_before_run_returns_at_once(spool, monkeypatch):
    monkeypatch.setattr(queue, "MAX_IDLE", 100 * LOADED)
    worker = DeliveryWorker(spool, DeliveryConfig())
    worker.stop()
    run(asyncio.wait_for(worker.run(), LOADED))  # would wait MAX_IDLE if stop() were lost



def test_um_missed_call_notice_is_delivered_and_the_record_stays_no_fax(spool, smtp_server):
    """A UM-referred call with no page: one partner message without attachment (status 2.4)."""
    from appliance.spandsp.t30 import CALL_DROPPED
    from test_delivery_message_route import UM

    server = smtp_server()
    fax = spool.begin_fax(T0, caller_number="5550100", called_number="5551000",
                          extra={"exchange_um": UM})
    fax = spool.finish_fax(fax.id, T0 + 20, complete=False, result_code=CALL_DROPPED,
                           result_text="call dropped")
    assert fax.state == "no_fax"
    try:
        spool.add_jobs(fax.id, ["user@example.com"], T0 + 20)
    except ValueError as e:
        assert "nothing to deliver" in str(e)
    else:
        raise AssertionError("a fax without pages must not get jobs unless it is a notice")
    (job,) = spool.add_jobs(fax.id, ["user@example.com"], T0 + 20, notice=True)
    worker = DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock())
    assert run(worker.run_once()) == 1
    assert spool.get_job(job.id).state == "delivered"
    assert spool.get_fax(fax.id).state == "no_fax"
    (got,) = server.handler.messages
    m = email.message_from_bytes(got["data"], policy=email.policy.default)
    assert m["X-MS-Exchange-UM-PartnerStatus"] == "2.4" and m["X-FaxNumberOfPages"] == "0"
    assert list(m.iter_attachments()) == []


def test_archive_keeps_a_copy_beside_the_backend(spool, smtp_server, tiff_bytes, tmp_path):
    """delivery.archive: every fax also lands in a local Maildir, as the mail the recipients got."""
    import mailbox

    from appliance.delivery.queue import ARCHIVE

    server = smtp_server()
    fax, jobs = received_fax(spool, tiff_bytes, recipients=("sales@example.com", "boss@example.com", ARCHIVE))
    cfg = smtp_cfg(server.port, archive=str(tmp_path / "archive"))
    worker = DeliveryWorker(spool, cfg, clock=Clock())
    assert run(worker.run_once()) == 3
    assert [spool.get_job(j.id).state for j in jobs] == ["delivered"] * 3
    assert len(server.handler.messages) == 2  # the archive is not a mail recipient
    (kept,) = list(mailbox.Maildir(str(tmp_path / "archive"), create=False))
    assert kept["To"] == "sales@example.com, boss@example.com"
    (tif,) = [p for p in kept.walk() if p.get_content_type() == "image/tiff"]
    assert tif.get_payload(decode=True) == tiff_bytes
    assert spool.get_fax(fax.id).state == "delivered"


def test_archive_switched_off_later_settles_the_job(spool, smtp_server, tiff_bytes):
    from appliance.delivery.queue import ARCHIVE

    server = smtp_server()
    _, jobs = received_fax(spool, tiff_bytes, recipients=("sales@example.com", ARCHIVE))
    run(DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock()).run_once())
    job = spool.get_job(jobs[1].id)
    assert job.state == "delivered"
    assert "archive switched off" in spool.attempts(job.id)[-1]["reply"]


def test_an_unexpected_error_retries_the_job_and_the_batch_goes_on(spool, smtp_server, tiff_bytes, caplog):
    """A bug in one delivery (here injected into the send) must not leave the job, or the jobs
    claimed with it, in 'delivering' until a restart."""
    server = smtp_server()
    fax, (bad, good) = received_fax(spool, tiff_bytes, recipients=("bug@example.com", "sales@example.com"))
    worker = DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 60))
    real = worker._send

    def send(msg, recipient):
        if recipient == "bug@example.com":
            raise KeyError("a bug")
        return real(msg, recipient)

    worker._send = send
    with caplog.at_level(logging.ERROR, logger="faxbridge.delivery"):
        assert run(worker.run_once()) == 2
    j = spool.get_job(bad.id)
    assert j.state == "failed_retrying" and "internal error (KeyError" in j.last_error, j
    assert spool.get_job(good.id).state == "delivered" and len(server.handler.messages) == 1
    assert "delivery failed unexpectedly" in caplog.text and "KeyError" in caplog.text
