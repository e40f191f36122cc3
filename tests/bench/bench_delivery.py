"""`make bench`, part 3: what delivering a fax costs: rendering the message, and sending it.

A 10-page fine-resolution fax (the demo pages the test-fax sender transmits) is rendered as
each attachment flavour the routes offer (the received G4 TIFF kept as TIFF-F, Profile S
re-encoded to MH, a lossless PDF, both TIFF and PDF), and the queue delivers 50 faxes to a real
SMTP server on loopback (aiosmtpd) over STARTTLS. Printed: milliseconds per fax and per page,
message sizes, and faxes per second through the queue, with ratios against the plain TIFF-F
message. On a Raspberry Pi 4 expect roughly 3-4 times the times. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import time
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller

from appliance.config import DeliveryConfig
from appliance.delivery.message import render_message
from appliance.delivery.queue import DeliveryWorker
from appliance.fax.pages import FINE, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.spool.store import FaxRecord, Spool

PAGES = 10
FAXES = 50


def _fax(route: dict) -> FaxRecord:
    now = time.time()
    return FaxRecord(id=1, uid="0123456789abcdef", state="received", created=now, finished=now, complete=True,
                     caller_number="+15550100", remote_ident="BENCH", pages=PAGES, bit_rate=14400,
                     resolution="204x196", extra={"route": route})


def bench_render(image: bytes) -> None:
    flavours = [("TIFF-F (as received)", {"format": "tiff", "tiff": "tiff-f"}),
                ("TIFF Profile S (MH)", {"format": "tiff", "tiff": "profile-s"}),
                ("PDF (lossless)", {"format": "pdf"}),
                ("TIFF-F + PDF", {"format": "both", "tiff": "tiff-f"})]
    base = None
    print(f"rendering a {PAGES}-page fine fax ({len(image)} bytes of G4 TIFF):")
    for name, route in flavours:
        fax = _fax(route)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            msg = render_message(fax, "a@example.com", from_addr="fax@example.com", image=image,
                                 message_id="<b@x>")
            size = len(msg.as_bytes())
            runs.append(time.perf_counter() - t0)
        best = min(runs)
        base = base or best
        print(f"  {name:24s} {best * 1000:8.1f} ms/fax  {best * 1000 / PAGES:6.1f} ms/page  "
              f"{size / 1024:8.0f} KiB  x{best / base:5.1f}")


class _Sink:
    count = 0

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.count += 1
        return "250 2.0.0 Ok"


def bench_queue(image: bytes, tmp: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    sink = _Sink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # a fixed greeting name: otherwise aiosmtpd resolves this machine's name (DNS) for every session
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            server_hostname="mx.faxbridge.test")
    controller.start()
    try:
        spool = Spool(tmp / "spool")
        now = time.time() - 120
        for _ in range(FAXES):
            fax = spool.begin_fax(now, caller_number="5550100")
            spool.incoming_path(fax).write_bytes(image)
            spool.finish_fax(fax.id, now + 1, complete=True)
            spool.add_jobs(fax.id, ["a@example.com"], now + 1)
        cfg = DeliveryConfig(backend="smtp", url=f"smtp://127.0.0.1:{port}", from_="fax@example.com",
                             starttls="required", ca_file=str(ca_file), timeout=30)
        worker = DeliveryWorker(spool, cfg)
        t0 = time.perf_counter()
        done = 0
        while done < FAXES:
            done += asyncio.run(worker.run_once(limit=FAXES))
        wall = time.perf_counter() - t0
        spool.close()
        print(f"queue: {FAXES} faxes of {PAGES} pages over SMTP+STARTTLS to loopback: {wall:.2f} s, "
              f"{FAXES / wall:.1f} faxes/s, {wall * 1000 / FAXES:.0f} ms per fax (server got {sink.count})")
    finally:
        controller.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = tmp / "fax.tif"
        write_fax_tiff(demo_pages(PAGES, FINE, seed=3), path, FINE)
        image = path.read_bytes()
        bench_render(image)
        bench_queue(image, tmp)


if __name__ == "__main__":
    main()
