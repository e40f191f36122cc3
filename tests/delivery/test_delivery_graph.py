"""The graph backend against a real HTTPS Graph endpoint and a real token endpoint on loopback:
MIME sendMail for ordinary faxes, draft + upload session for big ones, throttling, token
renewal, refusals with advice, the queue and ``faxbridge test-delivery``."""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import pytest

from appliance.config import DeliveryConfig
from appliance.delivery import graph
from appliance.delivery.advice import advise_text
from appliance.delivery.graph import ThrottledError, send_graph
from appliance.delivery.message import render_message
from appliance.delivery.queue import DeliveryWorker
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError
from appliance.spool.store import FaxRecord
import graph_harness
from graph_harness import GraphServer
from oauth_harness import TokenServer, oauth_cfg
from smtp_harness import T0, Clock
from test_delivery_queue import received_fax
from test_queue_cli import faxbridge

MAILBOX = "fax@contoso.com"
#: the graph_server fixture, visible to pytest in this module
graph_server_fixture = graph_harness.graph_server_fixture


def graph_cfg(tokens: TokenServer, server: GraphServer, **kw: Any) -> DeliveryConfig:
    base: dict[str, Any] = dict(backend="graph", auth="", username="", url="", from_=MAILBOX,
                                graph_url=server.url)
    base.update(kw)
    return oauth_cfg(tokens, **base)


def fax_message(image: bytes, to: str = "sales@contoso.com", route: dict | None = None):
    fax = FaxRecord(id=1, uid="0123456789abcdef", state="received", created=T0, finished=T0 + 60,
                    complete=True, line="sip:1", call_id="call-1", caller_number="5550100", caller_name="",
                    called_number="5551000", remote_ident="SENDER", pages=2, bit_rate=14400,
                    resolution="204x196", extra={"route": route} if route else {})
    return render_message(fax, to, from_addr=MAILBOX, image=image, message_id="<0123456789abcdef.1@faxbridge>")


def attachment_bytes(msg) -> bytes:
    (att,) = msg.iter_attachments()
    return att.get_content()


# -- small messages: MIME sendMail --------------------------------------------------------------

def test_small_fax_goes_as_mime_with_headers_and_tiff(token_server, graph_server, tiff_bytes):
    msg = fax_message(tiff_bytes)
    reply = send_graph(graph_cfg(token_server, graph_server), msg, "sales@contoso.com")
    assert reply.startswith("202 Accepted (graph request-id ") and "-" in reply
    (sent,) = graph_server.state.sent
    assert sent.via == "mime" and sent.mailbox == MAILBOX
    got = sent.message
    assert got["Message-ID"] == "<0123456789abcdef.1@faxbridge>"
    assert got["X-FaxNumberOfPages"] == "2" and got["X-CallingTelephoneNumber"] == "5550100"
    assert got["Content-Class"] == "fax-ca" and got["To"] == "sales@contoso.com"
    assert attachment_bytes(got) == attachment_bytes(msg)
    assert [(m, p, a) for _, m, p, a, _ in graph_server.state.log] == [
        ("POST", f"/v1.0/users/{MAILBOX}/sendMail", True)]
    assert token_server.requests == [("secret", "https://graph.microsoft.com/.default")]


def test_each_job_addresses_only_its_own_recipient(token_server, graph_server, tiff_bytes):
    """Graph sends to every To/Cc address: a route to a, b and Cc c makes three jobs, so each
    job's message must name only its own recipient, or a would get three copies."""
    msg = fax_message(tiff_bytes, to="a@contoso.com",
                      route={"to": ["a@contoso.com", "b@contoso.com"], "cc": ["c@contoso.com"]})
    cfg = graph_cfg(token_server, graph_server)
    for r in ("a@contoso.com", "c@contoso.com"):
        send_graph(cfg, msg, r)
    assert [(s.message["To"], s.message["Cc"]) for s in graph_server.state.sent] == [
        ("a@contoso.com", None), ("c@contoso.com", None)]
    assert msg["Cc"] == "c@contoso.com"  # the caller's message is untouched


# -- big messages: draft, upload session, send --------------------------------------------------

def test_big_attachment_goes_through_an_upload_session_in_chunks(token_server, graph_server):
    image = os.urandom(9 * 1024 * 1024 + 12345)  # not a TIFF: attached as received
    msg = fax_message(image)
    reply = send_graph(graph_cfg(token_server, graph_server), msg, "sales@contoso.com")
    assert reply.startswith("202 Accepted (graph request-id ") and "draft" in reply
    st = graph_server.state
    (sent,) = st.sent
    assert sent.via == "draft" and not st.drafts and not st.sessions
    d = sent.draft
    assert d["internetMessageId"] == "<0123456789abcdef.1@faxbridge>"
    assert d["subject"] == msg["Subject"]
    assert d["toRecipients"] == [{"emailAddress": {"address": "sales@contoso.com"}}]
    assert "Fax from 5550100" in d["body"]["content"] and d["body"]["contentType"] == "Text"
    headers = {h["name"]: h["value"] for h in d["internetMessageHeaders"]}
    assert headers["X-FaxNumberOfPages"] == "2" and headers["X-CallID"] == "call-1"
    ((name, ctype, data),) = sent.attachments
    assert data == image and ctype == "image/tiff; application=faxbw" and name.endswith(".tif")
    # chunks: multiples of 320 KiB, under 4 MB, contiguous, and no Authorization on the upload URL
    sizes = [n for _, n in st.puts]
    assert len(sizes) == 3 and all(n % (320 * 1024) == 0 and n < 4_000_000 for n in sizes[:-1])
    assert st.puts[0][0] == f"bytes 0-{sizes[0] - 1}/{len(image)}"
    uploads = [(a, s) for _, m, p, a, s in st.log if p.startswith("/upload/")]
    assert uploads == [(False, 200), (False, 200), (False, 201)]
    assert all(a for _, m, p, a, _ in st.log if p.startswith("/v1.0/"))


def test_big_fax_with_a_small_second_attachment_posts_it_directly(token_server, graph_server):
    """Upload sessions refuse files under 3 MB: those go as one POST of a fileAttachment."""
    msg = fax_message(os.urandom(4 * 1024 * 1024))
    msg.add_attachment(b"%PDF-1.4 small", maintype="application", subtype="pdf", filename="fax.pdf")
    send_graph(graph_cfg(token_server, graph_server), msg, "sales@contoso.com")
    (sent,) = graph_server.state.sent
    assert [(n, c, len(b)) for n, c, b in sent.attachments][1] == ("fax.pdf", "application/pdf", 14)
    assert len(sent.attachments[0][2]) == 4 * 1024 * 1024


def test_a_failed_upload_deletes_the_draft(token_server, graph_server, monkeypatch):
    msg = fax_message(os.urandom(5 * 1024 * 1024))
    st = graph_server.state
    real = graph._Client.upload

    def upload_then_refuse(self, *a):
        st.fail(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return real(self, *a)

    monkeypatch.setattr(graph._Client, "upload", upload_then_refuse)
    with pytest.raises(PermanentDeliveryError, match="403 ErrorAccessDenied") as e:
        send_graph(graph_cfg(token_server, graph_server), msg, "sales@contoso.com")
    assert f"(graph POST /users/{MAILBOX}/messages/(draft)/attachments/createUploadSession" in str(e.value)
    assert "Mail.ReadWrite" in advise_text(str(e.value)).text
    assert not st.sent and not st.drafts and len(st.deleted) == 1


def test_draft_keeps_the_um_partner_headers_within_graphs_five(caplog):
    msg = fax_message(b"II*\x00 not really a tiff")
    msg["X-MS-Exchange-UM-PartnerContent"] = "fax"
    msg["X-MS-Exchange-UM-PartnerStatus"] = "2.0"
    msg["X-MS-Exchange-UM-PartnerContext"] = "QUJD"
    names = [h["name"] for h in graph.draft_json(msg)["internetMessageHeaders"]]
    assert names == ["X-MS-Exchange-UM-PartnerContent", "X-MS-Exchange-UM-PartnerStatus",
                     "X-MS-Exchange-UM-PartnerContext", "X-FaxNumberOfPages", "X-CallingTelephoneNumber"]
    assert "X-CallID" in caplog.text


def test_verify_tls_off_accepts_an_unknown_ca(token_server, graph_server, tiff_bytes, tmp_path, monkeypatch):
    import trustme
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    token = graph.oauth.get_token(graph_cfg(token_server, graph_server))
    monkeypatch.setattr(graph.oauth, "get_token", lambda cfg: token)
    cfg = graph_cfg(token_server, graph_server, ca_file=str(other), verify_tls=False)
    assert send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com").startswith("202 Accepted")


def test_a_wrong_range_is_refused_416_and_retried_later_from_scratch(token_server, graph_server, monkeypatch):
    monkeypatch.setattr(graph, "_next_expected", lambda r: 1)  # as if the server lost a chunk
    st = graph_server.state
    with pytest.raises(TemporaryDeliveryError) as e:
        send_graph(graph_cfg(token_server, graph_server), fax_message(os.urandom(5 * 1024 * 1024)), "x@contoso.com")
    assert str(e.value).startswith("416 InvalidRange:") and "(graph upload of fax-" in str(e.value)
    assert "authtoken" not in str(e.value) and "/upload/" not in str(e.value)
    assert [s for *_, p, _, s in st.log if p.startswith("/upload/")] == [200, 416]
    assert not st.sent and not st.drafts and len(st.deleted) == 1


def test_over_graphs_limit_is_permanent_and_nothing_is_sent(token_server, graph_server, tiff_bytes):
    cfg = graph_cfg(token_server, graph_server)
    cfg.GRAPH_MAX_BYTES = 2_000  # type: ignore[misc]  (150 MB in life; the check is the same)
    with pytest.raises(PermanentDeliveryError) as e:
        send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")
    assert str(e.value).startswith("413 MessageTooLarge") and "2000 (graph" in str(e.value)
    assert advise_text(str(e.value)).permanent
    assert "bigger than Graph accepts" in advise_text(str(e.value)).text
    assert graph_server.state.log == [] and token_server.requests == []


# -- throttling -----------------------------------------------------------------------------

def test_429_with_a_short_retry_after_is_waited_out(token_server, graph_server, tiff_bytes):
    graph_server.state.throttle("1")
    start = time.monotonic()
    reply = send_graph(graph_cfg(token_server, graph_server), fax_message(tiff_bytes), "sales@contoso.com")
    assert reply.startswith("202 Accepted")
    log = graph_server.state.log
    assert [s for *_, s in log] == [429, 202]
    assert log[1][0] - log[0][0] >= 1.0 and time.monotonic() - start < 10


def test_429_with_a_long_retry_after_goes_back_to_the_queue(token_server, graph_server, tiff_bytes):
    graph_server.state.throttle("3600")
    with pytest.raises(ThrottledError) as e:
        send_graph(graph_cfg(token_server, graph_server), fax_message(tiff_bytes), "sales@contoso.com")
    assert isinstance(e.value, TemporaryDeliveryError) and e.value.retry_after == 3600
    assert str(e.value).startswith("429 TooManyRequests:") and "Retry-After: 3600 s" in str(e.value)
    assert not advise_text(str(e.value)).permanent and "throttling" in advise_text(str(e.value)).text
    assert not graph_server.state.sent


def test_retry_after_beyond_the_timeout_is_not_waited_out(token_server, graph_server, tiff_bytes):
    # under MAX_INLINE_WAIT but over delivery.timeout, which stays a generous budget for the requests
    timeout = int(graph.MAX_INLINE_WAIT) - 10
    graph_server.state.throttle(str(timeout + 5), status=503)
    with pytest.raises(ThrottledError) as e:
        send_graph(graph_cfg(token_server, graph_server, timeout=timeout), fax_message(tiff_bytes), "x@contoso.com")
    assert e.value.retry_after == timeout + 5 and str(e.value).startswith("503 ServiceUnavailable")


def test_503_without_retry_after_is_temporary(token_server, graph_server, tiff_bytes):
    graph_server.state.fail(503, "ServiceUnavailable", "The service is temporarily unavailable.")
    with pytest.raises(TemporaryDeliveryError) as e:
        send_graph(graph_cfg(token_server, graph_server), fax_message(tiff_bytes), "x@contoso.com")
    assert getattr(e.value, "retry_after", None) is None and "request-id" in str(e.value)


def test_retry_after_as_an_http_date():
    import requests
    r = requests.Response()
    r.headers["Retry-After"] = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert graph.retry_after(r) == 0.0
    r.headers["Retry-After"] = "soon"
    assert graph.retry_after(r) is None


# -- tokens -----------------------------------------------------------------------------------

def test_an_expired_token_is_renewed_once_and_the_fax_delivered(token_server, graph_server, tiff_bytes):
    cfg = graph_cfg(token_server, graph_server)
    send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")
    token_server.expire_all()  # MSAL's cache still thinks it is good for an hour
    reply = send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")
    assert reply.startswith("202 Accepted")
    assert graph_server.state.statuses() == [202, 401, 202]
    assert len(token_server.requests) == 2 and len(graph_server.state.sent) == 2


def test_a_second_401_is_permanent_with_advice_and_no_token_in_it(token_server, graph_server, tiff_bytes):
    graph_server.state.fail(401, "InvalidAuthenticationToken",
                            "Lifetime validation failed, the token is expired.", n=2)
    cfg = graph_cfg(token_server, graph_server)
    with pytest.raises(PermanentDeliveryError) as e:
        send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")
    text = str(e.value)
    assert text.startswith("401 InvalidAuthenticationToken: Lifetime validation failed")
    assert "https://graph.microsoft.com/.default" in advise_text(text).text
    assert all(t not in text for t in token_server.authority_state.tokens) and cfg.client_secret not in text
    assert len(token_server.requests) == 2


# -- refusals ---------------------------------------------------------------------------------

def test_403_access_denied_is_permanent_with_mail_send_advice(token_server, graph_server, tiff_bytes):
    graph_server.state.fail(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    with pytest.raises(PermanentDeliveryError) as e:
        send_graph(graph_cfg(token_server, graph_server), fax_message(tiff_bytes), "sales@contoso.com")
    assert str(e.value).startswith("403 ErrorAccessDenied: Access is denied. Check credentials and try again.")
    advice = advise_text(str(e.value))
    assert advice.permanent and "Mail.Send" in advice.text and "ApplicationAccessPolicy" in advice.text


def test_unknown_mailbox_is_permanent_naming_delivery_from(token_server, graph_server, tiff_bytes):
    cfg = graph_cfg(token_server, graph_server, from_="nobody@contoso.com")
    with pytest.raises(PermanentDeliveryError) as e:
        send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")
    assert str(e.value).startswith("404 ErrorInvalidUser:") and "nobody@contoso.com" in str(e.value)
    assert "delivery.from" in advise_text(str(e.value)).text


def test_untrusted_certificate_is_permanent(token_server, graph_server, tiff_bytes, tmp_path, monkeypatch):
    import trustme
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setattr(graph.oauth, "get_token", lambda cfg: "not-a-real-token")
    cfg = graph_cfg(token_server, graph_server, ca_file=str(other))
    with pytest.raises(PermanentDeliveryError, match="TLS certificate not trusted"):
        send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")
    assert graph_server.state.log == []


def test_nothing_listening_is_temporary(token_server, tiff_bytes):
    from smtp_harness import free_port
    cfg = oauth_cfg(token_server, backend="graph", from_=MAILBOX,
                    graph_url=f"https://127.0.0.1:{free_port()}/v1.0")
    with pytest.raises(TemporaryDeliveryError, match="cannot connect"):
        send_graph(cfg, fax_message(tiff_bytes), "sales@contoso.com")


# -- the queue and the command ------------------------------------------------------------------

def test_the_queue_delivers_through_graph(spool, token_server, graph_server, tiff_bytes):
    fax, (job,) = received_fax(spool, tiff_bytes, recipients=("sales@contoso.com",))
    worker = DeliveryWorker(spool, graph_cfg(token_server, graph_server), clock=Clock(T0 + 60),
                            rng=random.Random(1))
    assert asyncio.run(worker.run_once()) == 1
    j = spool.get_job(job.id)
    assert j.state == "delivered"
    assert spool.attempts(job.id)[0]["reply"].startswith("202 Accepted (graph request-id")
    (sent,) = graph_server.state.sent
    assert sent.message["Message-ID"] == job.message_id and attachment_bytes(sent.message)


def test_the_queue_waits_as_long_as_graph_asked(spool, token_server, graph_server, tiff_bytes):
    fax, (job,) = received_fax(spool, tiff_bytes, recipients=("sales@contoso.com",))
    clock = Clock(T0 + 60)
    cfg = graph_cfg(token_server, graph_server, retry_initial=30.0)
    worker = DeliveryWorker(spool, cfg, clock=clock, rng=random.Random(1))
    graph_server.state.throttle("900")
    asyncio.run(worker.run_once())
    j = spool.get_job(job.id)
    assert j.state == "failed_retrying" and "Retry-After: 900 s" in j.last_error and "throttling" in j.last_error
    assert j.next_attempt - clock.t == pytest.approx(900)  # not the 30 s backoff
    clock.t = j.next_attempt
    asyncio.run(worker.run_once())
    assert spool.get_job(job.id).state == "delivered"


def test_test_delivery_through_graph(tmp_path, token_server, graph_server):
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(
        f'[spool]\ndir = "spool"\n[delivery]\nbackend = "graph"\nfrom = "{MAILBOX}"\n'
        f'graph_url = "{graph_server.url}"\nauthority = "{token_server.authority}"\n'
        f'tenant = "{token_server.tenant}"\nclient_id = "{token_server.client_id}"\n'
        f'ca_file = "{token_server.ca_file}"\nadmin = "it@contoso.com"\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[delivery]\nclient_secret = "{token_server.client_secret}"\n')
    secrets.chmod(0o600)
    out = faxbridge("test-delivery", "--config", str(cfg))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"through graph ({graph_server.url} as {MAILBOX})" in out.stdout
    assert "accepted: 202 Accepted (graph request-id" in out.stdout
    (sent,) = graph_server.state.sent
    assert sent.message["To"] == "it@contoso.com" and sent.message["Content-Class"] == "fax-ca"
    assert token_server.client_secret not in out.stdout + out.stderr

    graph_server.state.fail(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    out = faxbridge("test-delivery", "--config", str(cfg))
    assert out.returncode == 1
    assert "FAILED: 403 ErrorAccessDenied" in out.stdout and "Mail.Send" in out.stdout
    assert token_server.client_secret not in out.stdout + out.stderr


# -- advice rows ------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, needle, permanent", [
    ("403 ErrorAccessDenied: Access is denied. Check credentials and try again. (graph POST /x)",
     "Mail.Send", True),
    ("404 ErrorInvalidUser: The requested user 'a@b' is invalid. (graph POST /x)", "delivery.from", True),
    ("404 MailboxNotEnabledForRESTAPI: The mailbox is either inactive, soft-deleted, or is hosted "
     "on-premise. (graph POST /x)", "Exchange Online", True),
    ("403 ErrorSendAsDenied: The user account which was used to submit this request does not have "
     "the right to send mail on behalf of the specified sending account. (graph POST /x)", "delivery.from", True),
    ("401 InvalidAuthenticationToken: Access token validation failure. (graph POST /x)",
     "graph.microsoft.com", True),
    ("429 TooManyRequests: slow down (graph POST /x); Retry-After: 60 s", "throttling", False),
    ("413 MessageTooLarge: message is 9 bytes, Graph accepts at most 8 (graph, not sent)",
     "bigger than Graph accepts", True),
    ("400 ErrorInvalidRecipients: At least one recipient is not valid. (graph POST /x)",
     "routing", True),
    ("400 ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content. (graph POST /x)",
     "Graph refused", True),
])
def test_graph_advice(reply, needle, permanent):
    advice = advise_text(reply)
    assert needle in advice.text and advice.permanent is permanent


def test_smtp_advice_unchanged_by_the_graph_rows():
    assert advise_text("451 4.3.0 try later").permanent is False
    assert "secrets.toml" in advise_text("535 5.7.8 Error: authentication failed").text
