"""The fax's TIFF part says what it is, the way on-ramps and fax partners write it:
``image/tiff; application=faxbw; name="..."`` (RFC 2301 9.1; reference/exchange.md section 4).

Every way a mail leaves the box is checked on what was delivered: SMTP (aiosmtpd), the Exchange
UM partner format, Maildir, and Microsoft Graph both as MIME and as a draft Graph builds itself.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import re
import base64
from email.message import EmailMessage
from pathlib import Path

import graph_harness
from appliance.config import DeliveryConfig
from appliance.delivery.graph import send_graph
from appliance.delivery.message import render_message
from appliance.delivery.queue import DeliveryWorker
from appliance.spool.store import FaxRecord, Spool
from smtp_harness import T0, Clock, smtp_cfg
from test_delivery_graph import MAILBOX, graph_cfg
from test_delivery_queue import received_fax

graph_server_fixture = graph_harness.graph_server_fixture

UM_CONTEXT = base64.b64encode(json.dumps({"CallId": "abc-123"}).encode()).decode()


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def fax_part(msg: EmailMessage) -> EmailMessage:
    """The one image/tiff part, checked: the hint as a bare token, ``name`` as the file name."""
    tiffs = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
    assert len(tiffs) == 1, [p.get_content_type() for p in msg.iter_attachments()]
    (part,) = tiffs
    # the header as written on the wire, unfolded: receivers that match the text, not the MIME
    # grammar, find "application=faxbw" (str() of a parsed header would quote it again)
    raw = next(v for k, v in part.raw_items() if k.lower() == "content-type")
    header = re.sub(r"\r?\n[ \t]+", " ", raw)
    assert re.match(r"image/tiff; application=faxbw; name=\"fax-\d{8}-\d{6}-\d+\.tif\"$", header), header
    assert part.get_param("application") == "faxbw"
    assert part.get_param("name") == part.get_filename()
    assert part.get_content()[:4] in (b"II*\x00", b"MM\x00*")
    return part


def deliver(spool: Spool, cfg: DeliveryConfig) -> None:
    worker = DeliveryWorker(spool, cfg, clock=Clock(T0 + 60), rng=random.Random(1))
    assert asyncio.run(worker.run_once()) == 1


def test_smtp(spool, smtp_server, tiff_bytes):
    server = smtp_server()
    received_fax(spool, tiff_bytes)
    deliver(spool, smtp_cfg(server.port))
    (sent,) = server.handler.messages
    fax_part(parse(sent["data"]))


def test_exchange_um_partner_format(spool, smtp_server, tiff_bytes):
    server = smtp_server()
    fax, _ = received_fax(spool, tiff_bytes)
    spool.update_facts(fax.id, extra={"exchange_um": {"recipient": "sales@example.com",
                                                      "context_raw": UM_CONTEXT}})
    deliver(spool, smtp_cfg(server.port))
    (sent,) = server.handler.messages
    msg = parse(sent["data"])
    assert msg["Content-Class"] == "MS-Exchange-UM-Partner"
    fax_part(msg)


def test_maildir(spool, tmp_path: Path, tiff_bytes):
    box = tmp_path / "Maildir"
    received_fax(spool, tiff_bytes)
    deliver(spool, DeliveryConfig(backend="maildir", url=str(box), from_="fax@example.com"))
    (path,) = (box / "new").iterdir()
    fax_part(parse(path.read_bytes()))


def test_graph_mime(spool, token_server, graph_server, tiff_bytes):
    received_fax(spool, tiff_bytes, recipients=("sales@contoso.com",))
    deliver(spool, graph_cfg(token_server, graph_server))
    (sent,) = graph_server.state.sent
    assert sent.via == "mime"
    fax_part(sent.message)


def test_graph_draft_carries_the_hint_in_its_content_type(token_server, graph_server):
    """Over Graph's 4 MB request limit the message goes as a draft and Graph builds the MIME:
    the attachment's contentType carries the hint (the name is Graph's own field)."""
    fax = FaxRecord(id=3, uid="0123456789abcdef", state="received", created=T0, finished=T0 + 60,
                    complete=True, caller_number="5550100", pages=2)
    image = os.urandom(4 * 1024 * 1024)  # not a TIFF: attached as received
    msg = render_message(fax, "sales@contoso.com", from_addr=MAILBOX, image=image,
                         message_id="<0123456789abcdef.1@faxbridge>")
    send_graph(graph_cfg(token_server, graph_server), msg, "sales@contoso.com")
    (sent,) = graph_server.state.sent
    assert sent.via == "draft"
    ((name, content_type, data),) = sent.attachments
    assert content_type == "image/tiff; application=faxbw"
    assert re.fullmatch(r"fax-\d{8}-\d{6}-3\.tif", name) and data == image
