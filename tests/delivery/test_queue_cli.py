"""``faxbridge queue`` / ``resend`` as subprocesses against a real spool, and the secrets-file
mode check: a readable secrets file is refused, and no password reaches the output."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.config import Config, ConfigError
from tests.budgets import LOADED
from appliance.delivery.queue import DeliveryWorker
from appliance.spool.store import Spool
from smtp_harness import PASSWORD, USER

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


def faxbridge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd=ROOT)


def write_config(tmp_path: Path, port: int, password: str) -> Path:
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[system]\ntimezone = "Asia/Kolkata"\n[spool]\ndir = "spool"\n[delivery]\nbackend = "smtp"\n'
                   f'url = "smtp://127.0.0.1:{port}"\nfrom = "fax@example.com"\nstarttls = "none"\n'
                   f'admin = "admin@example.com"\n[routing]\ndefault = "faxes@example.com"\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[delivery]\nusername = "{USER}"\npassword = "{password}"\n')
    secrets.chmod(0o600)
    return cfg


def test_queue_lists_advice_without_the_password_and_resend_makes_a_new_message(tmp_path, smtp_server, tiff_bytes):
    server = smtp_server(auth=True, auth_require_tls=False)
    wrong = "Wr0ng-" + PASSWORD
    cfg_path = write_config(tmp_path, server.port, wrong)
    cfg = Config.load(cfg_path)
    assert cfg.delivery.password == wrong and cfg.delivery.admin == "admin@example.com"
    with Spool(cfg.path(cfg.spool.dir)) as spool:
        fax = spool.begin_fax(T0, caller_number="5550100")
        spool.incoming_path(fax).write_bytes(tiff_bytes)
        fax = spool.finish_fax(fax.id, T0 + 60, complete=True)
        (job,) = spool.add_jobs(fax.id, ["sales@example.com"], T0 + 60)
        asyncio.run(DeliveryWorker(spool, cfg.delivery, clock=lambda: T0 + 60).run_once())
        assert spool.get_job(job.id).state == "dead"

    out = faxbridge("queue", "--config", str(cfg_path))
    assert out.returncode == 0, out.stderr
    # the fax by its number, as the web page and the mails name it; never the internal hex id
    (line,) = [l for l in out.stdout.splitlines() if l.split()[0] == str(fax.id)]
    assert "sales@example.com" in line and " dead " in line and "535 5.7.8" in line and "secrets.toml" in line
    assert wrong not in out.stdout + out.stderr and fax.uid not in out.stdout

    out = faxbridge("resend", str(fax.id), "--to", "sales@example.com", "--config", str(cfg_path))
    assert out.returncode == 0, out.stderr
    assert f"queued fax {fax.id} to sales@example.com as <{fax.uid}." in out.stdout
    out = faxbridge("resend", fax.uid, "--to", "other@example.com", "--config", str(cfg_path))  # an old id
    assert out.returncode == 0, out.stderr
    assert f"queued fax {fax.id} to other@example.com" in out.stdout
    again = faxbridge("resend", f"#{fax.id}", "--to", "other@example.com", "--config", str(cfg_path))
    assert again.returncode == 1 and "still queued" in again.stderr

    with Spool(cfg.path(cfg.spool.dir), readonly=True) as spool:
        jobs = {j.recipient: j for j in spool.jobs_for(fax.id)}
    assert jobs["sales@example.com"].state == "queued" and jobs["sales@example.com"].attempts == 0
    assert jobs["sales@example.com"].message_id != job.message_id  # a deliberate resend is a new message
    assert jobs["other@example.com"].message_id not in (job.message_id, jobs["sales@example.com"].message_id)

    queued = faxbridge("queue", "--config", str(cfg_path), "--state", "queued")
    rows = [l for l in queued.stdout.splitlines()[1:] if l.split()[0] == str(fax.id)]
    assert queued.returncode == 0 and len(rows) == 2 and " dead " not in queued.stdout
    assert all(re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d IST ", r) for r in rows)  # next try, system.timezone
    missing = faxbridge("resend", "nosuchfax", "--config", str(cfg_path))
    assert missing.returncode == 1 and "no fax 'nosuchfax'" in missing.stderr


def test_resend_outside_accepted_domains_is_refused(tmp_path, tiff_bytes):
    """`resend --to` and a resend to the fax's own recipients are held to routing.accepted_domains."""
    cfg_path = tmp_path / "faxbridge.toml"
    cfg_path.write_text('[spool]\ndir = "spool"\n[routing]\ndefault = "faxes@example.com"\n'
                        'accepted_domains = ["example.com", "Example.ORG"]\n')
    cfg = Config.load(cfg_path)
    with Spool(cfg.path(cfg.spool.dir)) as spool:
        fax = spool.begin_fax(T0, caller_number="5550100")
        spool.incoming_path(fax).write_bytes(tiff_bytes)
        fax = spool.finish_fax(fax.id, T0 + 60, complete=True)
        (job,) = spool.add_jobs(fax.id, ["sales@example.com"], T0 + 60)
        spool.claim_due_jobs(T0 + 61)
        spool.job_delivered(job.id, T0 + 62, "250 ok")
    out = faxbridge("resend", str(fax.id), "--to", "eve@evil.example", "--config", str(cfg_path))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert ("error: not sent: 'eve@evil.example' is outside routing.accepted_domains "
            "(example.com, example.org)") in out.stderr
    sub = faxbridge("resend", str(fax.id), "--to", "bob@sub.example.com", "--config", str(cfg_path))
    assert sub.returncode == 1 and "'bob@sub.example.com' is outside" in sub.stderr  # exact domains
    with Spool(cfg.path(cfg.spool.dir), readonly=True) as spool:
        assert [(j.recipient, j.state) for j in spool.jobs_for(fax.id)] == [("sales@example.com", "delivered")]
    # its own recipient, after the owner narrowed the accepted domains
    cfg_path.write_text('[spool]\ndir = "spool"\n[routing]\ndefault = "faxes@example.org"\n')
    same = faxbridge("resend", str(fax.id), "--config", str(cfg_path))
    assert same.returncode == 1 and "'sales@example.com' is outside routing.accepted_domains" in same.stderr
    ok = faxbridge("resend", str(fax.id), "--to", "Desk@EXAMPLE.org", "--config", str(cfg_path))
    assert ok.returncode == 0 and "queued fax" in ok.stdout, ok.stderr
    with Spool(cfg.path(cfg.spool.dir), readonly=True) as spool:
        assert {j.recipient: j.state for j in spool.jobs_for(fax.id)} == {
            "sales@example.com": "delivered", "Desk@EXAMPLE.org": "queued"}


def test_queue_without_a_spool_says_so(tmp_path):
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text('[spool]\ndir = "nothing-here"\n')
    out = faxbridge("queue", "--config", str(cfg))
    assert out.returncode == 1 and "no spool database" in out.stderr and "Traceback" not in out.stderr


def test_resent_job_is_delivered_by_a_running_worker(tmp_path, smtp_server, tiff_bytes):
    """The daemon's worker, already running, picks up a job another process queued (polling)."""
    server = smtp_server()
    cfg_path = tmp_path / "faxbridge.toml"
    cfg_path.write_text(f'[spool]\ndir = "spool"\n[delivery]\nbackend = "smtp"\n'
                        f'url = "smtp://127.0.0.1:{server.port}"\nstarttls = "none"\nfrom = "fax@example.com"\n'
                        '[routing]\ndefault = "faxes@example.com"\n')
    cfg = Config.load(cfg_path)
    with Spool(cfg.path(cfg.spool.dir)) as spool:
        fax = spool.begin_fax(T0, caller_number="5550100")
        spool.incoming_path(fax).write_bytes(tiff_bytes)
        fax = spool.finish_fax(fax.id, T0 + 60, complete=True)

        async def scenario() -> None:
            import appliance.delivery.queue as q
            q.MAX_IDLE = 0.2  # the daemon polls every minute; the test cannot wait that long
            worker = DeliveryWorker(spool, cfg.delivery)
            task = asyncio.create_task(worker.run())
            try:
                out = await asyncio.to_thread(faxbridge, "resend", str(fax.id), "--to", "x@example.com",
                                              "--config", str(cfg_path))
                assert out.returncode == 0, out.stderr
                deadline = time.monotonic() + LOADED
                while not server.handler.messages and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            finally:
                worker.stop()
                await task
                q.MAX_IDLE = 60.0

        asyncio.run(scenario())
        (job,) = spool.jobs_for(fax.id)
    assert job.state == "delivered" and server.handler.attempted == [job.message_id]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_readable_secrets_file_is_refused_with_the_fix(tmp_path, mode):
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text("[delivery]\n")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[delivery]\npassword = "hunter2-secret"\n')
    secrets.chmod(mode)
    with pytest.raises(ConfigError) as e:
        Config.load(cfg)
    (msg,) = e.value.errors
    assert f"chmod 600 {secrets}" in msg and "hunter2" not in msg
    out = faxbridge("check-config", str(cfg))
    assert out.returncode == 1 and "chmod 600" in out.stderr and "hunter2" not in out.stderr
    secrets.chmod(0o600)
    assert Config.load(cfg).delivery.password == "hunter2-secret"


def test_admin_and_size_keys_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="delivery.admin: 'root' is not a mail address: an email address must have an @-sign"):
        Config.from_dict({"delivery": {"admin": "root"}})
    with pytest.raises(ConfigError, match="delivery.max_message_bytes"):
        Config.from_dict({"delivery": {"max_message_bytes": 10}})
    cfg = Config.from_dict({"delivery": {"admin": "it@example.com"}})
    assert cfg.delivery.admin == "it@example.com" and cfg.delivery.max_message_bytes == 35 * 1024 * 1024
