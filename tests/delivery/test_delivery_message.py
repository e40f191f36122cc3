"""The rendered mail: headers, body facts, exactly one TIFF attachment, and hostile call facts."""

from __future__ import annotations

import base64
import email
import email.policy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.delivery.message import render_message
from appliance.spool.store import FaxRecord

IMAGE = bytes(range(256)) * 40 + b"II*\x00"
HEADERS_WE_WRITE = {"from", "to", "date", "message-id", "subject", "x-faxnumberofpages",
                    "x-callingtelephonenumber", "x-callid", "content-class", "mime-version", "content-type"}


def fax(**kw) -> FaxRecord:
    base = dict(id=7, uid="0123456789abcdef", state="received", created=1_700_000_000.0,
                finished=1_700_000_060.0, complete=True, line="sip:udp:127.0.0.1:5060",
                call_id="c1", caller_number="+1 555 0100", caller_name="ACME Corp", called_number="5551000",
                remote_ident="+1 555 0100 ACME", pages=2, bad_rows=3, bit_rate=14400, ecm=True,
                resolution="204x196", duration=61.0, result_code=0, result_text="OK",
                image="faxes/0123456789abcdef.tif", extra={})
    base.update(kw)
    return FaxRecord(**base)


def render(f: FaxRecord, image: bytes = IMAGE):
    msg = render_message(f, "sales@example.com", from_addr="fax@example.com", image=image,
                         message_id="<0123456789abcdef.1@faxbridge>")
    wire = msg.as_bytes()
    return wire, email.message_from_bytes(wire, policy=email.policy.default)


def bodies(parsed) -> tuple[str, str]:
    return (parsed.get_body(("plain",)).get_content(), parsed.get_body(("html",)).get_content())


def test_headers_and_structure():
    wire, m = render(fax())
    assert m["From"] == "fax@example.com" and m["To"] == "sales@example.com"
    assert m["Message-ID"] == "<0123456789abcdef.1@faxbridge>"
    assert m["Subject"] == "Fax from +1 555 0100 (2 pages)"
    assert m["X-FaxNumberOfPages"] == "2"
    assert m["X-CallingTelephoneNumber"] == "+1 555 0100"
    assert m["Content-Class"] == "fax-ca"
    assert m["Date"].datetime.timestamp() == 1_700_000_000.0
    assert m.get_content_type() == "multipart/mixed"
    alt, att = m.get_payload()
    assert alt.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alt.get_payload()] == ["text/plain", "text/html"]
    assert wire.isascii()
    assert b"\r\n" in wire and b"\n" not in wire.replace(b"\r\n", b"")


def test_exactly_one_attachment_decodes_to_the_bytes():
    _, m = render(fax())
    atts = list(m.iter_attachments())
    assert len(atts) == 1
    (att,) = atts
    assert att.get_content_type() == "image/tiff"
    assert att.get_param("application") == "faxbw"
    assert att["Content-Transfer-Encoding"] == "base64"
    assert att.get_content_disposition() == "attachment"
    assert att.get_filename() == "fax-" + _stamp() + "-7.tif"  # the fax's number, as everywhere
    assert att.get_content() == IMAGE


def _stamp() -> str:
    import time
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(1_700_000_000.0))


@pytest.mark.parametrize("pages,subject", [(1, "Fax from +1 555 0100 (1 page)"),
                                           (3, "Fax from +1 555 0100 (3 pages)")])
def test_subject_page_plural(pages, subject):
    assert render(fax(pages=pages))[1]["Subject"] == subject


def test_caller_falls_back_to_tsi_then_unknown():
    assert render(fax(caller_number=""))[1]["Subject"] == "Fax from +1 555 0100 ACME (2 pages)"
    _, m = render(fax(caller_number="", remote_ident="  "))
    assert m["Subject"] == "Fax from unknown caller (2 pages)"
    assert m["X-CallingTelephoneNumber"] is None


def test_incomplete_fax_says_so():
    _, m = render(fax(complete=False, pages=1))
    assert m["Subject"] == "Incomplete fax from +1 555 0100 (1 page received)"
    plain, html = bodies(m)
    assert plain.startswith("INCOMPLETE FAX")
    assert "INCOMPLETE FAX" in html and "b00020" in html
    assert "INCOMPLETE" not in bodies(render(fax())[1])[0]


def test_body_lists_the_call_facts():
    plain, html = bodies(render(fax())[1])
    for fact in ("+1 555 0100", "ACME Corp", "5551000", "+1 555 0100 ACME", "14400 bit/s", "204x196",
                 "61 s", "OK", "Bad rows", "ECM", "yes"):
        assert fact in plain
        assert fact in html


def test_empty_image_is_refused():
    with pytest.raises(ValueError):
        render(fax(), image=b"")


HOSTILE = ["x\r\nBcc: evil@x", "x\nBcc: evil@x", "x\rBcc: evil@x", "x\x00\x1b[31m\x7f", "a\u2028Bcc: evil@x",
           "=?utf-8?q?Bcc=3A_evil=40x?=", "Ärzte \u202eGmbH 東京", "A" * 200, "\r\n\r\nbody injection"]


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_call_facts_never_make_headers(evil: str):
    wire, m = render(fax(caller_number=evil, caller_name=evil, remote_ident=evil, called_number=evil))
    assert set(k.lower() for k in m.keys()) <= HEADERS_WE_WRITE
    assert m["Bcc"] is None
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^bcc:", head, re.I | re.M)
    for line in head.split(b"\r\n"):
        assert line.isascii() and len(line) <= 998
        assert not any(c < 32 or c == 127 for c in line.replace(b"\t", b" "))
    assert len(list(m.iter_attachments())) == 1
    assert m["Subject"].startswith("Fax from ")
    assert "\r" not in m["Subject"] and "\n" not in m["Subject"]


def test_hostile_html_is_escaped():
    evil = "<script>alert(1)</script>&\"'"
    _, m = render(fax(caller_name=evil, remote_ident=evil))
    html = bodies(m)[1]
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;" in html


def test_non_ascii_is_encoded_and_round_trips():
    wire, m = render(fax(caller_number="", remote_ident="Ärzte 東京"))
    assert b"=?utf-8?" in wire.split(b"\r\n\r\n", 1)[0]
    assert m["Subject"] == "Fax from Ärzte 東京 (2 pages)"


def test_long_ident_is_shortened_in_headers():
    _, m = render(fax(caller_number="9" * 200))
    assert len(m["Subject"]) < 100
    assert len(m["X-CallingTelephoneNumber"]) <= 60


def test_filename_ignores_fax_supplied_text():
    _, m = render(fax(uid="../../etc/passwd\r\n", remote_ident="evil.exe"))
    (att,) = m.iter_attachments()
    assert re.fullmatch(r"fax-\d{8}-\d{6}-[0-9a-f]+\.tif", att.get_filename())


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.binary(min_size=1, max_size=2000))
def test_any_ident_or_name_yields_the_same_shape(ident: str, name: str, image: bytes):
    wire, m = render(fax(caller_number=ident, caller_name=name, remote_ident=ident), image=image)
    assert set(k.lower() for k in m.keys()) <= HEADERS_WE_WRITE
    (att,) = m.iter_attachments()
    assert att.get_content() == image
    assert base64.b64decode(att.get_payload()) == image


def test_every_time_in_the_mail_is_in_the_owners_zone():
    """The subject's {date}, the body's "Received", the attachment's name and the Date header's
    offset all follow system.timezone; the Date header is still the same instant."""
    from appliance import localtime

    f = fax(extra={"route": {"to": ["sales@example.com"], "subject": "Fax of {date}"}})
    msg = render_message(f, "sales@example.com", from_addr="fax@example.com", image=IMAGE,
                         message_id="<0123456789abcdef.1@faxbridge>", tz=localtime.zone("Asia/Tokyo"))
    m = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert m["Subject"] == "Fax of 2023-11-15 07:14 JST"
    plain, html_body = bodies(m)
    assert re.search(r"^Received: +2023-11-15 07:14:20 JST\r?$", plain, re.M) and "2023-11-15 07:14:20 JST" in html_body
    assert str(m["Date"]).endswith("+0900") and m["Date"].datetime.timestamp() == 1_700_000_000.0
    (att,) = m.iter_attachments()
    assert att.get_filename() == "fax-20231115-071320-7.tif"
