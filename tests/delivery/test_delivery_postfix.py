"""A real MTA: Debian's Postfix, a private instance on 127.0.0.1, takes a fax message from
send_smtp over STARTTLS and delivers it into a Maildir, where the test reads it back whole.

What aiosmtpd cannot show: that a production MTA (its smtpd, cleanup, queue manager and
virtual(8) delivery agent) accepts the message as the appliance writes it, and that the TIFF
survives the trip byte for byte.  The instance has its own config, queue, data and mail
directories (see ``instance_dir`` for why not under tmp_path), listens only on
127.0.0.1:<free port>, makes no DNS lookups and is stopped afterwards; the system's Postfix
service is not used.  Postfix's master must run as root.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import trustme

from appliance.delivery.message import render_message
from appliance.delivery.advice import advise_text
from appliance.delivery.smtp import PermanentDeliveryError, send_smtp
from appliance.spool.store import FaxRecord
from smtp_harness import free_port, smtp_cfg
from tests.provided import provided
from tests.budgets import LOADED

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "fax.test"
MAILBOX = f"sales@{DOMAIN}"
#: the unprivileged owner of the test Maildir (virtual(8) refuses to deliver as root)
NOBODY_UID = NOBODY_GID = 65534

pytestmark = [
    provided(os.path.exists(POSTFIX), f"{POSTFIX} missing: install Postfix (make test adds it via TEST_APT_PACKAGES)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="Postfix's master process needs root"),  # make test does not run as root
]

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
maillog_file = {log}
maillog_file_prefixes = {tmp}
myhostname = mx.{domain}
mydomain = {domain}
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_tls_security_level = may
smtpd_tls_cert_file = {conf}/smtpd.pem
smtpd_tls_key_file = {conf}/smtpd.key
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
biff = no
"""


@dataclass
class Postfix:
    conf: Path
    port: int
    maildir: Path
    log: Path

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTFIX, "-c", str(self.conf), *args], capture_output=True, text=True,
                              timeout=60)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no postfix.log)"


@pytest.fixture
def instance_dir() -> Iterator[Path]:
    """Where the instance lives: not under tmp_path, because Postfix's unprivileged processes
    (master takes its lock as mail_owner, virtual(8) delivers as NOBODY) open absolute paths
    there, and pytest resets /tmp/pytest-of-root to 0700 whenever any pytest session starts
    (so even a chmod of tmp_path's parents would not hold while other sessions run).
    A private 0711 directory in /tmp instead: others may pass through, not list it."""
    path = Path(tempfile.mkdtemp(prefix="faxbridge-postfix-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def postfix(instance_dir: Path, tmp_path: Path, ca: trustme.CA) -> Iterator[Postfix]:
    """A private Postfix on 127.0.0.1:<free port> delivering DOMAIN into a Maildir of its own;
    its log is copied to tmp_path/postfix.log afterwards."""
    conf, queue, data, mail = (instance_dir / n for n in ("conf", "queue", "data", "mail"))
    for d in (conf, queue, data):
        d.mkdir()
    owner = pwd.getpwnam("postfix")  # data_directory belongs to mail_owner (master.lock, TLS cache)
    os.chown(data, owner.pw_uid, owner.pw_gid)
    mail.mkdir()
    os.chown(mail, NOBODY_UID, NOBODY_GID)
    cert = ca.issue_cert("127.0.0.1", f"mx.{DOMAIN}")
    cert.cert_chain_pems[0].write_to_path(str(conf / "smtpd.pem"))
    for blob in cert.cert_chain_pems[1:]:
        with (conf / "smtpd.pem").open("ab") as f:
            f.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(conf / "smtpd.key"))
    (conf / "smtpd.key").chmod(0o600)
    (conf / "vmailbox").write_text(f"{MAILBOX} {DOMAIN}/sales/\n")
    port = free_port()
    log = instance_dir / "postfix.log"
    (conf / "main.cf").write_text(MAIN_CF.format(tmp=instance_dir, conf=conf, queue=queue, data=data, log=log,
                                                 domain=DOMAIN, mail=mail, uid=NOBODY_UID, gid=NOBODY_GID))
    (conf / "master.cf").write_text(MASTER_CF.format(port=port))
    pf = Postfix(conf, port, mail / DOMAIN / "sales", log)
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
        assert pf.postfix("status").returncode != 0, "postfix still running after stop"


def _wait_listening(port: int, pf: Postfix, timeout: float = LOADED) -> None:
    """master binds the port before its children run, but give a slow CI machine time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"postfix not listening on 127.0.0.1:{port}\n{pf.log_text()}")


def _wait_delivered(maildir: Path, pf: Postfix, timeout: float = LOADED) -> Path:
    """Poll the Maildir's new/ until one message arrives; on timeout, show Postfix's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []
        if files:
            assert len(files) == 1, [f.name for f in files]
            return files[0]
        time.sleep(0.2)
    raise AssertionError(f"nothing delivered to {maildir} in {timeout:.0f} s; postfix.log:\n{pf.log_text()}")


def test_postfix_accepts_over_starttls_and_delivers_the_tiff_intact(postfix, ca_file, tiff_bytes):
    fax = FaxRecord(id=7, uid="feedfacecafe0007", state="routed", created=1_700_000_000.0, complete=True,
                    caller_number="5550100", caller_name="Front Desk", remote_ident="+1 555 0100",
                    pages=2)
    msg = render_message(fax, MAILBOX, from_addr="fax@example.com", image=tiff_bytes,
                         message_id="<feedfacecafe0007.1@faxbridge>")
    cfg = smtp_cfg(postfix.port, starttls="required", ca_file=ca_file)
    reply = send_smtp(cfg, msg, MAILBOX)
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply

    path = _wait_delivered(postfix.maildir, postfix)
    got = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    # Postfix's own trace: delivered by virtual(8), received over TLS from the appliance
    assert got["Delivered-To"] == MAILBOX
    assert got["Return-Path"] == "<fax@example.com>"
    queue_id = reply.rsplit(" ", 1)[1]
    (received,) = [" ".join(str(h).split()) for h in got.get_all("Received")]
    assert f"by mx.{DOMAIN} (Postfix) with ESMTPS id {queue_id} for <{MAILBOX}>" in received
    assert "(using TLSv1.3 " in received or "(using TLSv1.2 " in received
    # the appliance's headers arrive as sent
    for name in ("Message-ID", "From", "To", "Subject", "Date", "Content-Class", "X-FaxNumberOfPages",
                 "MIME-Version"):
        assert str(got[name]) == str(msg[name]), name
    assert got["Content-Class"] == "fax-ca" and got["X-FaxNumberOfPages"] == "2"
    (tif,) = [p for p in got.iter_attachments() if p.get_content_type() == "image/tiff"]
    assert tif.get_content() == tiff_bytes
    # the owner virtual(8) delivered as: the unprivileged user from virtual_uid_maps
    assert path.stat().st_uid == NOBODY_UID
    assert f"{queue_id}: to=<{MAILBOX}>, relay=virtual" in postfix.log_text()


def test_postfix_refuses_an_unknown_mailbox_for_good_with_advice(postfix, ca_file, tiff_bytes):
    """Postfix's own 550 5.1.1 at RCPT: permanent, and the advice says to fix the routing entry."""
    fax = FaxRecord(id=8, uid="feedfacecafe0008", state="routed", created=1_700_000_000.0, complete=True,
                    pages=2)
    stranger = f"nobody@{DOMAIN}"
    msg = render_message(fax, stranger, from_addr="fax@example.com", image=tiff_bytes,
                         message_id="<feedfacecafe0008.1@faxbridge>")
    with pytest.raises(PermanentDeliveryError, match=r"^550 5\.1\.1 .*User unknown in virtual mailbox table") as e:
        send_smtp(smtp_cfg(postfix.port, starttls="required", ca_file=ca_file), msg, stranger)
    assert "routing table" in advise_text(str(e.value)).text
    assert not (postfix.maildir / "new").exists() or not any((postfix.maildir / "new").iterdir())
