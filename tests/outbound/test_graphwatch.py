"""The Exchange Online mailbox watcher against the loopback Graph endpoint and token server of
the delivery tests (tests/delivery/graph_harness.py, extended with a mailbox), real HTTPS and
real tokens: mail to fax+<number>@, the number in the subject, refusals answered, strangers and
robots filed unanswered, and a crash between queueing and filing that queues nothing twice."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "delivery"))

import graph_harness
from graph_harness import GraphServer
from oauth_harness import TokenServer, oauth_cfg, token_server  # noqa: F401  (pytest fixture)
from smtp_harness import ca, ca_file  # noqa: F401  (pytest fixtures)

from appliance.config import Config, OutboundConfig
from appliance.outbound.graphwatch import GraphWatcher
from appliance.outbound.mailparse import MailFax
from tests.outbound.mailshapes import outlook_pdf, pdf_bytes, simple

graph_server_fixture = graph_harness.graph_server_fixture
MAILBOX = "fax@contoso.com"
INTERNAL = {"X-MS-Exchange-Organization-AuthAs": "Internal"}


@dataclass
class Queue:
    """Stands in for the lead's submit: one job per idempotency key, as the queue must do."""

    jobs: dict[str, tuple[MailFax, str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    after: list[Any] = field(default_factory=list)

    async def submit(self, fax: MailFax, sender: str) -> str:
        key = fax.meta["idempotency_key"]
        self.calls.append(key)
        if fax.number in self.refuse:
            raise ValueError(self.refuse[fax.number])
        if key not in self.jobs:
            self.jobs[key] = (fax, sender)
        for hook in self.after:
            hook()
        return f"job-{list(self.jobs).index(key) + 1}"


def watcher(tokens: TokenServer, server: GraphServer, queue: Queue, **outbound: Any) -> GraphWatcher:
    # the delivery side sends over SMTP with OAuth2 (Outlook's scope): the watcher must still ask for Graph's
    delivery = oauth_cfg(tokens, graph_url=server.url)
    cfg = Config(delivery=delivery, outbound=OutboundConfig(enabled=True, graph_mailbox=MAILBOX, **outbound))
    return GraphWatcher(cfg, queue.submit)


def poll(w: GraphWatcher) -> list:
    return asyncio.run(w.poll_once())


def test_mail_to_a_plus_address_is_queued_and_filed(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    pdf = pdf_bytes()
    mime = outlook_pdf(pdf, to="fax+5551234@contoso.com").replace(
        b"MIME-Version: 1.0\r\n", b"X-MS-Exchange-Organization-AuthAs: Internal\r\nMIME-Version: 1.0\r\n", 1)
    mid = st.deliver(MAILBOX, mime)
    (done,) = poll(watcher(token_server, graph_server, q))
    assert done.queued == [("5551234", "job-1")] and done.refused == [] and not done.answered
    ((fax, sender),) = q.jobs.values()
    assert sender == "alice@example.com" and fax.numbers == ("5551234",)
    assert [(a.name, a.data) for a in fax.attachments] == [("contract.pdf", pdf)]
    assert fax.meta == {"source": "graph", "auth": "exchange online (internal)",
                        "message_id": "<DB9PR01MB0001@DB9PR01MB0001.eurprd01.prod.outlook.com>",
                        "graph_message_id": mid, "idempotency_key": f"graph:{mid}:5551234"}
    # filed: moved (keeping its id: ImmutableId), read, not answered
    (msg,) = st.in_folder(MAILBOX, "Faxbridge", "Sent to fax")
    assert msg.id == mid and msg.is_read and st.replies == []
    assert st.in_folder(MAILBOX, "inbox") == []
    # the next poll finds nothing new
    assert poll(watcher(token_server, graph_server, q)) == []


def test_number_in_the_subject(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    st.deliver(MAILBOX, simple(body="Please deliver on Monday.", subject="Fax to +1 555 1234 - order 7",
                               to=MAILBOX, headers=INTERNAL))
    (done,) = poll(watcher(token_server, graph_server, q))
    ((fax, _),) = q.jobs.values()
    assert fax.numbers == ("+1 555 1234",) and fax.subject == "order 7"
    assert fax.body_text == "Please deliver on Monday."
    assert done.folder == "Sent to fax"


def test_mail_that_cannot_be_faxed_is_answered_and_filed_as_refused(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    mid = st.deliver(MAILBOX, simple(to="fax+5551234@contoso.com", headers=INTERNAL,
                                     files=[("report.docx", "application/msword", b"PK\x03\x04" + b"\0" * 64)]))
    (done,) = poll(watcher(token_server, graph_server, q))
    assert q.calls == [] and done.answered
    ((replied, comment),) = st.replies
    assert replied == mid
    assert comment.startswith("This mail was not faxed.\n- report.docx: a Word document cannot be faxed")
    (msg,) = st.in_folder(MAILBOX, "Faxbridge", "Refused")
    assert msg.is_read


def test_no_number_is_answered_with_how_to_write_one(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    st.deliver(MAILBOX, simple(to=MAILBOX, subject="Contract", headers=INTERNAL))
    poll(watcher(token_server, graph_server, q))
    ((_, comment),) = st.replies
    assert 'no fax number found: send the mail to fax+<number>@contoso.com or write "fax to <number>"' in comment


def test_a_refused_number_among_two_is_answered_the_other_queued(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue(refuse={"0015551234": "international numbers are not allowed on route pbx"})
    st.deliver(MAILBOX, simple(to="fax+5551234@contoso.com, fax+0015551234@contoso.com", headers=INTERNAL))
    (done,) = poll(watcher(token_server, graph_server, q))
    assert done.queued == [("5551234", "job-1")]
    ((_, comment),) = st.replies
    assert comment.splitlines()[:3] == [
        "Part of this mail was not faxed.",
        "- 0015551234: international numbers are not allowed on route pbx",
        "Queued: 5551234 (you get a report when each is sent).",
    ]
    assert len(st.in_folder(MAILBOX, "Faxbridge", "Sent to fax")) == 1


@pytest.mark.parametrize("headers", [{}, {"X-MS-Exchange-Organization-AuthAs": "Anonymous"},
                                     {**INTERNAL, "Auto-Submitted": "auto-replied"}])
def test_strangers_and_robots_are_filed_unanswered(token_server, graph_server, headers) -> None:
    st, q = graph_server.state, Queue()
    st.deliver(MAILBOX, simple(to="fax+5551234@contoso.com", headers=headers))
    (done,) = poll(watcher(token_server, graph_server, q))
    assert q.calls == [] and st.replies == [] and done.folder == "Refused"
    assert len(st.in_folder(MAILBOX, "Faxbridge", "Refused")) == 1


def test_allowed_senders_hold_for_graph_too(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    st.deliver(MAILBOX, simple(to="fax+5551234@contoso.com", sender="bob@elsewhere.example", headers=INTERNAL))
    (done,) = poll(watcher(token_server, graph_server, q, allowed_senders=["*@contoso.com"]))
    assert q.calls == [] and st.replies == [] and "allowed_senders" in done.refused[0]


def test_a_crash_between_queueing_and_filing_queues_nothing_twice(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    mid = st.deliver(MAILBOX, simple(to="fax+5551234@contoso.com", headers=INTERNAL))
    # the request after the fax is queued (filing it) fails, as a crash or an outage would leave it
    q.after.append(lambda: st.fail(500, "ErrorInternalServerError", "boom"))
    w = watcher(token_server, graph_server, q)
    assert poll(w) == []
    assert w.stats.last_error.startswith("ThrottledError: 500 ErrorInternalServerError")
    assert len(q.jobs) == 1 and st.in_folder(MAILBOX, "inbox")[0].id == mid
    assert not st.in_folder(MAILBOX, "inbox")[0].is_read
    q.after.clear()
    (done,) = poll(watcher(token_server, graph_server, q))  # a new process polls again
    assert q.calls == [f"graph:{mid}:5551234"] * 2 and len(q.jobs) == 1
    assert done.queued == [("5551234", "job-1")] and st.in_folder(MAILBOX, "inbox") == []


def test_a_mail_over_the_size_limit_is_not_read_whole_and_is_answered(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    big = pdf_bytes() + b"%" + b"0" * 400_000
    st.deliver(MAILBOX, simple(to="fax+5551234@contoso.com", headers=INTERNAL, files=[("big.pdf", "application/pdf", big)]))
    (done,) = poll(watcher(token_server, graph_server, q, max_bytes=100_000))
    assert q.calls == [] and done.answered and done.sender == "alice@example.com"
    assert "the mail is too large" in st.replies[0][1]


def test_folders_are_made_once_and_found_again(token_server, graph_server) -> None:
    st, q = graph_server.state, Queue()
    for n in ("5551111", "5552222"):
        st.deliver(MAILBOX, simple(to=f"fax+{n}@contoso.com", headers=INTERNAL))
    poll(watcher(token_server, graph_server, q))
    poll(watcher(token_server, graph_server, q))  # nothing left, but a new watcher knows no folder ids
    st.deliver(MAILBOX, simple(to="fax+5553333@contoso.com", headers=INTERNAL))
    poll(watcher(token_server, graph_server, q))
    names = sorted(f["displayName"] for f in st.folders.values())
    assert names == ["Faxbridge", "Sent to fax"]
    assert len(st.in_folder(MAILBOX, "Faxbridge", "Sent to fax")) == 3
