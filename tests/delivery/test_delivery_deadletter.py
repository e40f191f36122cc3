"""The queue under faults, with aiosmtpd on loopback and a fake clock: dead letters alert the
admin once, nothing is lost when the spool cannot write, a restart resends the same message."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import random


from appliance.delivery.queue import DeliveryWorker
from appliance.spool.store import Spool
from smtp_harness import PASSWORD, T0, USER, Capture, Clock, free_port, smtp_cfg
ADMIN = "admin@example.com"



def received_fax(spool: Spool, tiff: bytes, recipients=("sales@example.com",)):
    fax = spool.begin_fax(T0, caller_number="+49 (30) 555\r\n0100", caller_name="Dr.\x07 Who",
                          called_number="5551000")
    spool.incoming_path(fax).write_bytes(tiff)
    fax = spool.finish_fax(fax.id, T0 + 60, complete=True)
    return fax, spool.add_jobs(fax.id, list(recipients), T0 + 60)


def run(coro):
    return asyncio.run(coro)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def alerts(server) -> list[email.message.EmailMessage]:
    return [parse(m["data"]) for m in server.handler.messages if m["to"] == [ADMIN]]


def test_5xx_is_dead_with_advice_and_one_alert_even_after_restart(tmp_path, smtp_server, tiff_bytes):
    server = smtp_server(handler=Capture(rcpt_replies={
        "sales@example.com": "550 5.7.60 SMTP; Client does not have permissions to send as this sender"}))
    root = tmp_path / "spool"
    spool = Spool(root)
    fax, (job,) = received_fax(spool, tiff_bytes)
    cfg = smtp_cfg(server.port, admin=ADMIN)
    clock = Clock()
    worker = DeliveryWorker(spool, cfg, clock=clock)
    run(worker.run_once())
    dead = spool.get_job(job.id)
    assert dead.state == "dead"
    assert dead.last_error.startswith("550 5.7.60 SMTP; Client does not have permissions")
    assert "advice: the mailbox may not send as delivery.from" in dead.last_error
    (alert,) = alerts(server)
    # strip(): a subject of exactly 78 characters is folded whole onto the next line, and Python's
    # parser keeps the fold's space that RFC 5322 readers drop
    assert alert["Subject"].strip() == (f'Fax {fax.id} from +49305550100 "Dr. Who" could not be delivered'
                                        " to sales@example.com")
    body = alert.get_content()
    for words in (f"Fax:        {fax.id}\r\n", "Pages:      2", "2023-11-14 22:14:20 UTC", "sales@example.com",
                  "5.7.60", "delivery.from", f"faxbridge resend {fax.id} --to"):
        assert words in body
    assert not list(alert.iter_attachments())  # no image, nothing secret
    assert spool.get_alert(job.id)["state"] == "sent"

    clock.t += 86400
    run(worker.run_once())
    spool.close()
    again = Spool(root)  # the daemon restarted: the alert was recorded as sent
    try:
        again.recover(clock.t)
        run(DeliveryWorker(again, cfg, clock=clock).run_once())
    finally:
        again.close()
    assert len(alerts(server)) == 1
    assert server.handler.attempted.count(job.message_id) == 0  # refused at RCPT, never DATA


def test_too_big_is_dead_at_once_with_advice_and_alert(spool, smtp_server, tiff_bytes):
    server = smtp_server()
    fax, (job,) = received_fax(spool, tiff_bytes)
    cfg = smtp_cfg(server.port, admin=ADMIN, max_message_bytes=len(tiff_bytes))  # base64 makes it bigger
    run(DeliveryWorker(spool, cfg, clock=Clock()).run_once())
    dead = spool.get_job(job.id)
    assert dead.state == "dead" and dead.attempts == 1
    assert "over delivery.max_message_bytes" in dead.last_error and "advice:" in dead.last_error
    assert server.handler.attempted == [f"<{fax.uid}.job{job.id}.alert@faxbridge>"]  # only the alert
    (alert,) = alerts(server)
    assert "max_message_bytes" in alert.get_content()


def test_server_down_for_days_then_dead_and_the_alert_waits_for_the_server(spool, smtp_server, tiff_bytes):
    port = free_port()
    fax, (job,) = received_fax(spool, tiff_bytes)
    cfg = smtp_cfg(port, admin=ADMIN, retry_initial=60.0, retry_max=3600.0, max_age=2 * 86400)
    clock = Clock()
    worker = DeliveryWorker(spool, cfg, clock=clock, rng=random.Random(3))
    gaps = []
    for _ in range(200):  # bounded: each pass is one refused connection on loopback
        j = spool.get_job(job.id)
        if j.state == "dead":
            break
        gaps.append(j.next_attempt - clock.t)
        clock.t = max(clock.t, j.next_attempt)
        run(worker.run_once())
    j = spool.get_job(job.id)
    assert j.state == "dead" and "gave up after 48 h" in j.last_error
    assert "nothing answers at delivery.url" in j.last_error
    assert max(gaps) <= 1.2 * 3600  # capped backoff
    assert 40 < j.attempts < 100
    alert = spool.get_alert(job.id)
    assert alert["state"] == "pending" and alert["attempts"] >= 1  # the alert failed too: no alert about it
    assert len(spool.list_jobs()) == 1

    server = smtp_server(port=port)
    clock.t = spool.get_alert(job.id)["next_attempt"]
    run(worker.run_once())
    run(worker.run_once())
    assert len(alerts(server)) == 1 and spool.get_alert(job.id)["state"] == "sent"
    assert server.handler.attempted == [f"<{fax.uid}.job{job.id}.alert@faxbridge>"]


def test_failing_alert_is_retried_then_abandoned_never_alerted_about(spool, smtp_server, tiff_bytes, caplog):
    server = smtp_server(handler=Capture(rcpt_replies={
        "sales@example.com": "550 5.1.1 No such user", ADMIN: "550 5.1.1 No such admin"}))
    fax, (job,) = received_fax(spool, tiff_bytes)
    cfg = smtp_cfg(server.port, admin=ADMIN, max_age=3600)
    clock = Clock()
    worker = DeliveryWorker(spool, cfg, clock=clock, rng=random.Random(1))
    with caplog.at_level(logging.ERROR, logger="faxbridge.delivery"):
        for _ in range(30):
            run(worker.run_once())
            a = spool.get_alert(job.id)
            if a["state"] != "pending":
                break
            clock.t = a["next_attempt"]
    a = spool.get_alert(job.id)
    assert a["state"] == "abandoned" and a["attempts"] > 1 and "No such admin" in a["last_error"]
    assert len(spool.list_jobs()) == 1 and spool.due_alerts(clock.t + 10**6) == []
    assert "alert to admin@example.com" in caplog.text
    assert server.handler.messages == []


def test_4xx_then_2xx_records_the_throttling_advice(spool, smtp_server, tiff_bytes):
    server = smtp_server(handler=Capture(data_replies=["451 4.7.500 Server busy. Please try again later."]))
    fax, (job,) = received_fax(spool, tiff_bytes)
    clock = Clock()
    worker = DeliveryWorker(spool, smtp_cfg(server.port, admin=ADMIN), clock=clock, rng=random.Random(2))
    run(worker.run_once())
    j = spool.get_job(job.id)
    assert j.state == "failed_retrying" and "throttling" in j.last_error
    clock.t = j.next_attempt
    run(worker.run_once())
    assert spool.get_job(job.id).state == "delivered"
    assert server.handler.attempted == [job.message_id, job.message_id]
    assert spool.get_alert(job.id) is None and alerts(server) == []


def test_disk_full_while_recording_loses_nothing(spool, smtp_server, tiff_bytes, monkeypatch):
    port = free_port()
    fax, (job,) = received_fax(spool, tiff_bytes)
    clock = Clock()
    worker = DeliveryWorker(spool, smtp_cfg(port), clock=clock, rng=random.Random(4))
    real_retry = spool.job_retry
    disk = {"full": True}

    def retry(*a, **kw):
        if disk["full"]:
            raise OSError(28, "No space left on device")
        return real_retry(*a, **kw)

    monkeypatch.setattr(spool, "job_retry", retry)
    run(worker.run_once())  # refused, and the refusal cannot be written
    assert spool.get_job(job.id).state == "delivering"  # not lost: still claimed, recover() requeues it
    assert run(worker.run_once()) == 0  # still full: nothing more is claimed
    disk["full"] = False
    run(worker.run_once())  # the disk has room again: the kept outcome is written first
    j = spool.get_job(job.id)
    assert j.state == "failed_retrying" and j.attempts == 1 and "cannot connect" in j.last_error

    server = smtp_server(port=port)
    clock.t = j.next_attempt
    run(worker.run_once())
    assert spool.get_job(job.id).state == "delivered"
    assert server.handler.attempted == [job.message_id]


def test_restart_after_accept_before_record_resends_only_the_same_message_id(tmp_path, smtp_server, tiff_bytes,
                                                                            monkeypatch):
    server = smtp_server()
    root = tmp_path / "spool"
    first = Spool(root)
    fax, (job,) = received_fax(first, tiff_bytes)

    def full(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(first, "job_delivered", full)
    run(DeliveryWorker(first, smtp_cfg(server.port), clock=Clock()).run_once())
    assert first.get_job(job.id).state == "delivering"
    first.close()  # the daemon dies with the outcome unwritten

    spool = Spool(root)
    try:
        spool.recover(T0 + 600)
        run(DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(T0 + 600)).run_once())
        assert spool.get_job(job.id).state == "delivered"
    finally:
        spool.close()
    assert server.handler.attempted == [job.message_id, job.message_id]  # at most the same one twice
    assert len({parse(m["data"])["Message-ID"] for m in server.handler.messages}) == 1


def test_password_never_in_log_or_record(spool, smtp_server, tiff_bytes, caplog):
    server = smtp_server(auth=True, auth_require_tls=False)
    fax, (job,) = received_fax(spool, tiff_bytes)
    wrong = "Wr0ng-" + PASSWORD
    cfg = smtp_cfg(server.port, username=USER, password=wrong, admin=ADMIN)
    with caplog.at_level(logging.DEBUG):
        run(DeliveryWorker(spool, cfg, clock=Clock()).run_once())
    j = spool.get_job(job.id)
    assert j.state == "dead" and j.last_error.startswith("535") and "secrets.toml" in j.last_error
    assert caplog.text and "535" in caplog.text
    assert wrong not in caplog.text and wrong not in j.last_error
    assert all(wrong not in a["reply"] for a in spool.attempts(job.id))
