"""The mail per route (format, TIFF flavour, To/Cc, subject template) and Exchange UM partner mode."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import json
import re
import unicodedata

import pytest
from PIL import Image, ImageSequence

from appliance.delivery.message import render_message, um_status
from appliance.routing.um import is_um_notice
from appliance.spandsp.t30 import CALL_DROPPED as T30_CALL_DROPPED
from appliance.spandsp.t30 import OK as T30_OK
from tiff_check import check_profile_s
from smtp_harness import make_tiff
from test_delivery_message import fax

CONTEXT = base64.b64encode(json.dumps({"CallId": "abc-123", "CallerId": "+15550100"}).encode()).decode()
UM = {"recipient": "user@example.com", "context": {"CallId": "abc-123"}, "context_raw": CONTEXT, "notes": ""}


def render(f, image: bytes | None = None, recipient: str = "sales@example.com"):
    image = image if image is not None else make_tiff(2)
    msg = render_message(f, recipient, from_addr="fax@example.com", image=image,
                         message_id="<0123456789abcdef.1@faxbridge>")
    wire = msg.as_bytes()
    return wire, email.message_from_bytes(wire, policy=email.policy.default)


def pixels(tiff: bytes) -> list[bytes]:
    with Image.open(io.BytesIO(tiff)) as im:
        return [f.convert("1").tobytes() for f in ImageSequence.Iterator(im)]


def types(m) -> list[str]:
    return [p.get_content_type() for p in m.iter_attachments()]


def test_default_is_the_received_g4_tiff_and_callid():
    wire, m = render(fax())
    assert types(m) == ["image/tiff"]
    (att,) = m.iter_attachments()
    assert att.get_content() == make_tiff(2)
    assert m["X-CallID"] == "c1" and m["Content-Class"] == "fax-ca"


@pytest.mark.parametrize("fmt,want", [("tiff", ["image/tiff"]), ("pdf", ["application/pdf"]),
                                      ("both", ["image/tiff", "application/pdf"]),
                                      ("bogus", ["image/tiff"])])
def test_route_format_picks_the_attachments(fmt, want):
    _, m = render(fax(extra={"route": {"format": fmt}}))
    assert types(m) == want
    for att in m.iter_attachments():
        data = att.get_content()
        assert data[:4] in (b"II*\x00", b"MM\x00*") if att.get_content_type() == "image/tiff" else data[:5] == b"%PDF-"
    assert att.get_filename().endswith(".pdf" if want[-1] == "application/pdf" else ".tif")
    plain = m.get_body(("plain",)).get_content()
    assert ("PDF" in plain) == ("application/pdf" in want)


def test_route_profile_s_attachment_is_profile_s_and_pixel_equal():
    image = make_tiff(2)
    _, m = render(fax(extra={"route": {"tiff": "profile-s"}}), image)
    (att,) = m.iter_attachments()
    assert check_profile_s(att.get_content()) == []
    assert pixels(att.get_content()) == pixels(image)


def test_pdf_route_with_undecodable_image_still_carries_the_image():
    junk = b"II*\x00" + b"\x01" * 100
    _, m = render(fax(extra={"route": {"format": "pdf"}}), junk)
    (att,) = m.iter_attachments()
    assert att.get_content_type() == "image/tiff" and att.get_content() == junk


def test_route_to_and_cc_are_the_headers_of_every_routed_copy():
    f = fax(extra={"route": {"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"]}})
    for job_recipient in ("a@example.com", "B@Example.com", "c@example.com"):
        _, m = render(f, recipient=job_recipient)
        assert m["To"] == "a@example.com, b@example.com"
        assert m["Cc"] == "c@example.com"


def test_a_copy_for_another_address_is_addressed_to_it_alone():
    """A resend to an address the route never named ("Send to this address"): To is that address,
    and the route's addressees appear nowhere (it was not sent to them)."""
    f = fax(extra={"route": {"to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"]}})
    wire, m = render(f, recipient="other@example.org")
    assert m["To"] == "other@example.org" and m["Cc"] is None
    assert b"a@example.com" not in wire and b"c@example.com" not in wire


def test_route_addresses_cannot_inject():
    _, m = render(fax(extra={"route": {"to": ["x@example.com\r\nBcc: evil@x.com", "Evil <e@x.com>"],
                                       "cc": "y@example.com, z@example.com"}}))
    assert m["To"] == "sales@example.com"  # nothing usable: the job's recipient
    assert m["Cc"] is None and m["Bcc"] is None


def test_subject_template_filled_with_cleaned_values():
    f = fax(caller_number="+1 555\r\nBcc: evil@x.com", remote_ident="ACME\x1b[2J\nX-Evil: 1",
            called_number="5551000", extra={"route": {"subject": "Fax {caller} -> {called} [{tsi}] {pages}p"}})
    wire, m = render(f)
    assert m["Subject"] == "Fax +1 555 Bcc: evil@x.com -> 5551000 [ACME [2J X-Evil: 1] 2p"
    assert m["Bcc"] is None and m["X-Evil"] is None
    assert b"\r\nBcc:" not in wire and b"\r\nX-Evil" not in wire


@pytest.mark.parametrize("template", ["{caller.__class__}", "{0}", "{nope}", "{caller!r}", "{caller:>999999}",
                                      "{unclosed"])
def test_subject_template_beyond_plain_names_falls_back(template):
    _, m = render(fax(extra={"route": {"subject": template}}))
    assert m["Subject"] == "Fax from +1 555 0100 (2 pages)"


def test_incomplete_fax_says_so_with_a_template():
    _, m = render(fax(complete=False, pages=1, extra={"route": {"subject": "Fax {caller}"}}))
    assert m["Subject"].startswith("Incomplete fax")
    assert "INCOMPLETE FAX" in m.get_body(("plain",)).get_content()


@pytest.mark.parametrize("complete,pages,status", [(True, 2, "2.0"), (False, 1, "2.6")])
def test_exchange_um_partner_message(complete, pages, status):
    image = make_tiff(pages)
    f = fax(complete=complete, pages=pages, extra={"exchange_um": UM, "route": {"format": "both"}})
    wire, m = render(f, image)
    assert m["Content-Class"] == "MS-Exchange-UM-Partner"
    assert m["X-MS-Exchange-UM-PartnerContent"] == "fax"
    assert m["X-MS-Exchange-UM-PartnerStatus"] == status
    assert m["X-MS-Exchange-UM-PartnerContext"] == CONTEXT
    assert json.loads(base64.b64decode(m["X-MS-Exchange-UM-PartnerContext"]))["CallId"] == "abc-123"
    assert m["X-FaxNumberOfPages"] == str(pages)
    assert wire.count(b"Content-Class:") == 1
    atts = list(m.iter_attachments())
    assert types(m) == ["image/tiff"]  # the route's PDF is not allowed here
    assert check_profile_s(atts[0].get_content()) == []
    assert pixels(atts[0].get_content()) == pixels(image)


def test_um_status_values():
    assert um_status(fax(pages=3, complete=True)) == "2.0"
    assert um_status(fax(pages=3, complete=False)) == "2.6"
    # no page: the caller hung up (or the call ended cleanly without a fax) -> cancelled
    assert um_status(fax(pages=0, complete=False, state="no_fax", result_code=T30_CALL_DROPPED)) == "2.4"
    assert um_status(fax(pages=0, complete=False, state="no_fax", result_code=T30_OK)) == "2.4"
    # no page because the fax session failed (training, timeouts, ...) -> error
    assert um_status(fax(pages=0, complete=False, state="no_fax", result_code=T30_CALL_DROPPED + 5)) == "5.0"


@pytest.mark.parametrize("code, status", [(T30_CALL_DROPPED, "2.4"), (T30_CALL_DROPPED - 1, "5.0")])
def test_um_call_without_a_page_is_a_missed_call_notice_without_attachment(code, status):
    f = fax(state="no_fax", pages=0, complete=False, image=None, result_code=code,
            extra={"exchange_um": UM})
    assert is_um_notice(f)
    wire, m = render(f, b"")
    assert m["Content-Class"] == "MS-Exchange-UM-Partner"
    assert m["X-MS-Exchange-UM-PartnerStatus"] == status
    assert m["X-FaxNumberOfPages"] == "0"
    assert m["X-MS-Exchange-UM-PartnerContext"] == CONTEXT
    assert list(m.iter_attachments()) == []
    assert m["Subject"].startswith("Missed fax call from")
    assert "MISSED FAX CALL" in m.get_body(("plain",)).get_content()


def test_no_page_without_um_is_never_a_message():
    f = fax(state="no_fax", pages=0, complete=False, image=None)
    assert not is_um_notice(f)
    with pytest.raises(ValueError, match="without the image"):
        render(f, b"")


def test_um_fax_with_pages_but_no_image_is_still_refused():
    with pytest.raises(ValueError, match="without the image"):
        render(fax(extra={"exchange_um": UM}), b"")


@pytest.mark.parametrize("raw", ["", "not base64!", "abc\r\nBcc: x@y", "@@@@"])
def test_bad_um_context_sends_generic_mail_not_a_broken_partner_message(raw):
    _, m = render(fax(extra={"exchange_um": {**UM, "context_raw": raw}}))
    assert m["Content-Class"] == "fax-ca"
    assert m["X-MS-Exchange-UM-PartnerContext"] is None and m["Bcc"] is None


def test_long_um_context_stays_one_unfolded_line():
    raw = base64.b64encode(json.dumps({"CallId": "x" * 300}).encode()).decode()
    wire, m = render(fax(extra={"exchange_um": {**UM, "context_raw": raw}}))
    assert f"X-MS-Exchange-UM-PartnerContext: {raw}\r\n".encode() in wire
    assert max(len(line) for line in wire.split(b"\r\n")) <= 998


def test_hostile_call_id_and_caller_name_stay_in_one_header():
    evil = "c1\r\nBcc: evil@x.com\r\n\r\nbody"
    wire, m = render(fax(call_id=evil, caller_name=evil, extra={"exchange_um": UM}))
    assert m["X-CallID"] == "c1 Bcc: evil@x.com body"
    assert m["Bcc"] is None
    assert b"\r\nBcc:" not in wire
    (att,) = m.iter_attachments()
    assert "evil" not in att.get_filename()


#: what a caller controls and may try to smuggle into the Subject: CR/LF and other breaks, an
#: encoded-word that would decode to a header, bidi controls, non-ASCII, and sheer length
SUBJECT_HOSTILE = ["x\r\nBcc: evil@x.com", "x\nSubject: second", "x\r\n\r\nbody", "a\u2028Bcc: evil@x.com",
                   "\x00\x1b[2J\x7f", "=?utf-8?q?Bcc=3A_evil=40x.com?=", "Ärzte \u202eGmbH 東京 " * 3,
                   "東" * 500, "A" * 5000, "x\tBcc: evil@x.com"]
TEMPLATE = "Fax {caller} to {called} [{tsi}] on {line}, {pages}p {date}"


@pytest.mark.parametrize("evil", SUBJECT_HOSTILE)
@pytest.mark.parametrize("kind", ["template", "default", "um-fax", "um-notice"])
def test_caller_chosen_text_never_breaks_out_of_the_subject(evil: str, kind: str):
    """Caller number and name, TSI, called number, line and the UM context all come from the far
    end; in every kind of message they stay inside one Subject (or their own header), on lines
    of at most 998 ASCII characters, never as a header of their own."""
    context = base64.b64encode(f"CallId=c1&CallerIdDisplayName={evil}".encode()).decode()
    um = {**UM, "context": {"CallId": "c1", "CallerIdDisplayName": evil}, "context_raw": context[:800]}
    facts = dict(caller_number=evil, caller_name=evil, remote_ident=evil, called_number=evil, line=evil)
    route = {"subject": TEMPLATE} if kind == "template" else {}
    if kind == "um-notice":
        f = fax(state="no_fax", pages=0, complete=False, image=None, result_code=T30_CALL_DROPPED,
                extra={"exchange_um": um, "route": route}, **facts)
        wire, m = render(f, b"")
    else:
        wire, m = render(fax(extra={"route": route, **({"exchange_um": um} if kind == "um-fax" else {})},
                             **facts))
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^(bcc|subject: second)", head, re.I | re.M) and m["Bcc"] is None
    assert len(m.get_all("Subject")) == 1
    for line in head.split(b"\r\n"):
        assert line.isascii() and len(line) <= 998, line[:80]
        assert not any(c < 32 or c == 127 for c in line.replace(b"\t", b" "))
    subject = m["Subject"]
    assert not any(unicodedata.category(c)[0] == "C" for c in subject)  # no controls, no bidi overrides
    assert len(subject) <= 200
    assert subject.startswith({"template": "Fax ", "default": "Fax from ", "um-fax": "Fax from ",
                               "um-notice": "Missed fax call from "}[kind])


def test_a_refused_um_recipient_makes_ordinary_mail_and_no_notice():
    """Routing refused the UM recipient (outside routing.accepted_domains): what goes to the routing
    result is a plain fax mail, and a call without pages owes nobody a message."""
    refused = {"to": ["faxes@example.com"], "um_refused": "bob@evil.example",
               "refused": ["'bob@evil.example' is outside routing.accepted_domains (example.com)"]}
    _, m = render(fax(extra={"exchange_um": UM, "route": refused}), recipient="faxes@example.com")
    assert m["Content-Class"] == "fax-ca" and m["X-MS-Exchange-UM-PartnerContext"] is None
    assert m["To"] == "faxes@example.com"
    f = fax(state="no_fax", pages=0, complete=False, image=None, result_code=T30_CALL_DROPPED,
            extra={"exchange_um": UM, "route": refused})
    assert not is_um_notice(f)
    with pytest.raises(ValueError, match="without the image"):
        render(f, b"")
