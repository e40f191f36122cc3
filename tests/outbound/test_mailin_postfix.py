"""Mail to fax through a real MTA: Debian's Postfix relays the fax domain to the box's listener,
as Exchange's send connector does (from a trusted relay address, 127.0.0.2, over STARTTLS).

What smtplib alone cannot show: that a production MTA's SMTP client takes the listener's
replies as meant: 250 delivers, our 550 becomes a non-delivery report that reaches the sender
with the reason in it (Exchange does the same with its NDR), and our 452 for a second number
makes the MTA send that number in a transaction of its own. The Postfix instance is the delivery
tests' (tests/delivery/test_delivery_postfix.py: private directories, loopback only, no DNS),
configured here as a relay with a local mailbox for the sender's bounces.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import smtplib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "delivery"))

from smtp_harness import free_port
from test_delivery_postfix import MASTER_CF, NOBODY_GID, NOBODY_UID, POSTFIX, Postfix, _wait_listening, instance_dir

from tests.budgets import LOADED
from tests.outbound.mailshapes import outlook_pdf, pdf_bytes, simple
from tests.outbound.test_mailin import DOMAIN, RELAY, Box, _box
from tests.provided import provided

__all__ = ["instance_dir"]  # the fixture, visible to pytest here

pytestmark = [
    provided(os.path.exists(POSTFIX), f"{POSTFIX} missing: install Postfix (make test adds it via TEST_APT_PACKAGES)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix's master process needs root"),
]

SENDER = "alice@example.com"

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
maillog_file = {log}
maillog_file_prefixes = {tmp}
myhostname = mx.example.com
mydomain = example.com
myorigin = $mydomain
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains = {fax_domain}
transport_maps = texthash:{conf}/transport
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.com
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtp_bind_address = {relay}
smtp_tls_security_level = encrypt
smtp_tls_loglevel = 1
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
biff = no
"""


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    yield from _box(tmp_path / "box")


@pytest.fixture
def relay(instance_dir: Path, tmp_path: Path, box: Box) -> Iterator[Postfix]:
    """Postfix on 127.0.0.1:<free port>: mail to the fax domain goes to the box's listener from
    127.0.0.2 (a trusted relay) over STARTTLS; example.com is local (the sender's bounces)."""
    conf, queue, data, mail = (instance_dir / n for n in ("conf", "queue", "data", "mail"))
    for d in (conf, queue, data):
        d.mkdir()
    owner = pwd.getpwnam("postfix")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    mail.mkdir()
    os.chown(mail, NOBODY_UID, NOBODY_GID)
    (conf / "vmailbox").write_text(f"{SENDER} example.com/alice/\n")
    (conf / "transport").write_text(f"{DOMAIN} smtp:[127.0.0.1]:{box.port}\n")
    port = free_port()
    log = instance_dir / "postfix.log"
    (conf / "main.cf").write_text(MAIN_CF.format(
        tmp=instance_dir, conf=conf, queue=queue, data=data, log=log, mail=mail, uid=NOBODY_UID, gid=NOBODY_GID,
        relay=RELAY, fax_domain=DOMAIN))
    (conf / "master.cf").write_text(MASTER_CF.format(port=port))
    pf = Postfix(conf, port, mail / "example.com" / "alice", log)
    check = pf.postfix("check")
    assert check.returncode == 0, f"postfix check failed:\n{check.stdout}{check.stderr}\n{pf.log_text()}"
    start = pf.postfix("start")
    assert start.returncode == 0, f"postfix start failed:\n{start.stdout}{start.stderr}\n{pf.log_text()}"
    try:
        _wait_listening(port, pf)
        yield pf
    finally:
        stop = pf.postfix("stop")
        if log.exists():
            shutil.copy(log, tmp_path / "postfix.log")
        assert stop.returncode == 0, f"postfix stop failed:\n{stop.stdout}{stop.stderr}\n{pf.log_text()}"


def _send(pf: Postfix, rcpts: list[str], raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=LOADED) as c:
        assert c.sendmail(SENDER, rcpts, raw) == {}


def _wait(what: str, pf: Postfix, check, timeout: float = 2 * LOADED):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout:.0f} s; postfix.log:\n{pf.log_text()}")


def test_postfix_relays_a_fax_mail_to_the_box_which_queues_it(relay: Postfix, box: Box) -> None:
    pdf = pdf_bytes()
    _send(relay, [f"5551234@{DOMAIN}"], outlook_pdf(pdf))
    _wait("the fax queued", relay, lambda: box.queued)
    ((fax, sender),) = box.queued
    assert sender == SENDER and fax.numbers == ("5551234",)
    assert [a.data for a in fax.attachments] == [pdf] and fax.cover_note == "Please find the contract attached."
    assert fax.meta["auth"] == f"relay {RELAY}"  # Postfix came from the trusted relay address
    log = _wait("Postfix's sent line", relay, lambda: "status=sent" in relay.log_text() and relay.log_text())
    assert "status=sent (250 2.0.0 Queued as fax job job1)" in log
    assert f"Trusted TLS connection established to 127.0.0.1[127.0.0.1]:{box.port}" in log or \
        f"Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:{box.port}" in log


def test_a_refusal_reaches_the_sender_as_a_non_delivery_report(relay: Postfix, box: Box) -> None:
    _send(relay, [f"5551234@{DOMAIN}"],
          simple(sender=SENDER, files=[("report.docx", "application/msword", b"PK\x03\x04" + b"\0" * 64)]))
    new = relay.maildir / "new"
    (path,) = _wait("the bounce in alice's mailbox", relay, lambda: new.is_dir() and list(new.iterdir()))
    ndr = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert ndr.get_content_type() == "multipart/report"
    text = " ".join(ndr.get_body(("plain",)).get_content().split())
    assert (f"<5551234@{DOMAIN}>: host 127.0.0.1[127.0.0.1] said: 550 5.6.0 Not faxed: report.docx: a Word "
            "document cannot be faxed; only PDF, TIFF, PNG and JPEG files (and plain text) can") in text
    assert box.queued == []


def test_two_numbers_in_one_mail_become_two_faxes(relay: Postfix, box: Box) -> None:
    _send(relay, [f"5551111@{DOMAIN}", f"5552222@{DOMAIN}"], simple(sender=SENDER, body="Two copies"))
    _wait("both faxes queued", relay, lambda: len(box.queued) == 2)
    assert sorted(f.number for f, _ in box.queued) == ["5551111", "5552222"]
    assert all(f.body_text == "Two copies" for f, _ in box.queued)
    assert "452 4.5.3 One fax number per message" in relay.log_text()
