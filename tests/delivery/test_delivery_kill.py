"""The delivery worker killed (SIGKILL) in the middle of an SMTP transaction, for real.

A child process runs the worker; the server holds the DATA phase open until the parent has
killed the child.  A new worker after ``recover`` must deliver every fax, each under the one
Message-ID its job was given: the mailbox may see a duplicate, never a different message."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from smtp_harness import Capture, Clock, smtp_cfg
from tests.budgets import LOADED
from test_delivery_queue import received_fax

from appliance.delivery.queue import DeliveryWorker
from appliance.spool.store import Spool

CHILD = textwrap.dedent("""
    import asyncio, sys
    from appliance.config import DeliveryConfig
    from appliance.delivery.queue import DeliveryWorker
    from appliance.spool.store import Spool
    spool = Spool(sys.argv[1])
    cfg = DeliveryConfig(backend="smtp", url=f"smtp://127.0.0.1:{sys.argv[2]}", from_="fax@example.com",
                         starttls="none", timeout=60)
    asyncio.run(DeliveryWorker(spool, cfg).run_once())
""")


class Stalling(Capture):
    """Takes the message, then never answers the end of DATA (the server 'hangs')."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = True

    async def handle_DATA(self, server, session, envelope):
        if self.stall:
            parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            self.attempted.append(str(parsed["Message-ID"]))
            await asyncio.sleep(120)
        return await super().handle_DATA(server, session, envelope)


def test_worker_killed_mid_data_then_restarted_delivers_each_fax_under_its_message_id(
        tmp_path: Path, smtp_server, tiff_bytes):
    handler = Stalling()
    server = smtp_server(handler=handler)
    root = tmp_path / "spool"
    spool = Spool(root)
    now = time.time() - 120  # the child runs on the real clock: the jobs must be due
    jobs = [received_fax(spool, tiff_bytes, recipients=(f"user{i}@example.com",), created=now)[1][0]
            for i in range(3)]
    spool.close()

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(server.port)],
                             cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": "."})
    try:
        deadline = time.monotonic() + LOADED
        while not handler.attempted and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert handler.attempted, f"the child never reached DATA (exit {child.poll()})"
        child.send_signal(signal.SIGKILL)
        assert child.wait(LOADED) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    handler.stall = False

    spool = Spool(root)
    try:
        assert spool.recover(time.time())["requeued"] >= 1
        asyncio.run(DeliveryWorker(spool, smtp_cfg(server.port), clock=Clock(time.time())).run_once())
        assert [spool.get_job(j.id).state for j in jobs] == ["delivered"] * 3
    finally:
        spool.close()
    delivered = [email.message_from_bytes(m["data"], policy=email.policy.default)["Message-ID"]
                 for m in handler.messages]
    assert sorted(delivered) == sorted(j.message_id for j in jobs)
    assert set(handler.attempted) <= {j.message_id for j in jobs}
