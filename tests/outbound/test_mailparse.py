"""mailparse: the shapes real mail clients send, and hostile ones, each with its outcome."""

from __future__ import annotations

import time

import pytest

from appliance.outbound.mailparse import (
    MAX_PARTS,
    TNEF_ADVICE,
    MailRefused,
    clean_file_name,
    number_from_address,
    number_from_plus_address,
    number_from_subject,
    parse_message,
    raw_limit,
)
from tests.outbound.mailshapes import PNG_LOGO, b64, image_bytes, outlook_pdf, pdf_bytes, simple

MAX = 20_000_000


def test_outlook_pdf_with_html_signature_logo_and_text_gives_the_pdf_and_a_cover_note() -> None:
    pdf = pdf_bytes()
    got = parse_message(outlook_pdf(pdf), max_bytes=MAX)
    assert [(a.name, a.content_type) for a in got.attachments] == [("contract.pdf", "application/pdf")]
    assert got.attachments[0].data == pdf
    # the HTML alternative is read (its _MailAutoSig bookmark cuts the signature); the logo is not faxed
    assert got.cover_note == "Please find the contract attached."
    assert got.body_text == ""
    assert got.subject == "Contract" and got.from_header == "alice@example.com"
    assert not got.automatic


def test_outlook_pdf_with_only_a_signature_has_no_cover_note() -> None:
    got = parse_message(outlook_pdf(pdf_bytes(), body=""), max_bytes=MAX)
    assert len(got.attachments) == 1 and got.cover_note == ""


def test_several_attachments_keep_their_order_and_types_come_from_the_bytes() -> None:
    files = [
        ("b-second.png", "image/png", image_bytes("PNG", mark=1)),
        ("a-first.pdf", "application/octet-stream", pdf_bytes()),  # a wrong declared type is fine
        ("scan.tiff", "image/tiff", image_bytes("TIFF")),
        ("photo.jpg", "image/jpeg", image_bytes("JPEG")),
        ("notes.txt", "text/plain", b"line one\nline two\n"),
    ]
    got = parse_message(simple(body="", files=files), max_bytes=MAX)
    assert [a.name for a in got.attachments] == ["b-second.png", "a-first.pdf", "scan.tiff", "photo.jpg", "notes.txt"]
    assert [a.content_type for a in got.attachments] == [
        "image/png", "application/pdf", "image/tiff", "image/jpeg", "text/plain"]
    assert got.attachments[1].data == files[1][2]
    assert got.attachments[4].data == b"line one\nline two\n"


def test_no_attachment_the_body_is_the_fax() -> None:
    got = parse_message(simple(body="Dear Sir,\n\nplease deliver 20 boxes.\n\n-- \nAlice\n+1 555 0100\n"),
                        max_bytes=MAX)
    assert got.attachments == []
    assert got.body_text == "Dear Sir,\n\nplease deliver 20 boxes."
    assert got.cover_note == ""


def test_html_only_body_is_converted_safely() -> None:
    html = ("<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
            "<p>Order&nbsp;#12 &amp; invoice</p><ul><li>one</li><li>two</li></ul>"
            "<table><tr><td>a</td><td>b</td></tr></table>"
            "<div id=\"Signature\"><p>Alice</p><img src=\"cid:logo\"></div></body></html>")
    got = parse_message(simple(body=None, html=html), max_bytes=MAX)
    text = got.body_text
    assert "Order #12 & invoice" in text and "- one" in text and "- two" in text
    assert "alert" not in text and "color" not in text and "Alice" not in text


def test_owa_reply_history_is_cut() -> None:
    html = ('<div>Please fax this.</div><div id="appendonsend"></div><hr>'
            '<div id="divRplyFwdMsg"><b>From:</b> Bob<br><b>Sent:</b> Monday</div><div>old text</div>')
    assert parse_message(simple(body=None, html=html), max_bytes=MAX).body_text == "Please fax this."
    plain = "New text\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nold\n"
    assert parse_message(simple(body=plain), max_bytes=MAX).body_text == "New text"


def test_signature_image_alone_with_text_is_not_faxed() -> None:
    got = parse_message(simple(body="Text", html="<p>Text</p><img src=\"cid:logo1\">", inline=[("logo1", PNG_LOGO)]),
                        max_bytes=MAX)
    assert got.attachments == [] and got.body_text == "Text"


def test_inline_images_are_faxed_when_they_are_the_only_content() -> None:
    shot = image_bytes("PNG", (400, 300), 5)
    got = parse_message(simple(body="", html="<div><img src=\"cid:shot\"></div><div id=\"Signature\">Al</div>",
                               inline=[("shot", shot)]), max_bytes=MAX)
    assert [(a.content_type, a.data) for a in got.attachments] == [("image/png", shot)]
    assert got.attachments[0].name == "attachment-1.png"


def test_nothing_to_fax_is_refused() -> None:
    with pytest.raises(MailRefused, match="nothing to fax: attach PDF, TIFF, PNG and JPEG"):
        parse_message(simple(body="\n-- \nAlice\n"), max_bytes=MAX)


def test_tnef_winmail_dat_is_refused_with_advice() -> None:
    with pytest.raises(MailRefused) as e:
        parse_message(simple(body="x", files=[("winmail.dat", "application/ms-tnef", b"\x78\x9f\x3e\x22" + b"\0" * 50)]),
                      max_bytes=MAX)
    assert str(e.value) == TNEF_ADVICE
    assert "Rich Text" in str(e.value) and "HTML" in str(e.value)


def test_a_word_document_is_refused_naming_it_and_what_is_accepted() -> None:
    docx = b"PK\x03\x04" + b"\0" * 100
    with pytest.raises(MailRefused) as e:
        parse_message(simple(files=[("ok.pdf", "application/pdf", pdf_bytes()),
                                    ("report.docx", "application/vnd.openxmlformats-officedocument"
                                     ".wordprocessingml.document", docx)]), max_bytes=MAX)
    assert str(e.value) == "report.docx: a Word document cannot be faxed; only PDF, TIFF, PNG and JPEG files " \
                           "(and plain text) can"


def test_a_file_named_pdf_that_is_not_one_is_refused() -> None:
    with pytest.raises(MailRefused, match=r"^fake\.pdf: this file is not a PDF inside"):
        parse_message(simple(files=[("fake.pdf", "application/pdf", b"MZ\x90\x00 not a pdf")]), max_bytes=MAX)


def test_a_forwarded_mail_attachment_is_refused() -> None:
    inner = simple(body="inner")
    raw = simple(body="see attached", files=[("fwd.eml", "message/rfc822", inner)])
    with pytest.raises(MailRefused, match="a mail attached to a mail cannot be faxed"):
        parse_message(raw, max_bytes=MAX)


def test_bad_base64_is_refused_not_faxed_as_garbage() -> None:
    raw = (b"From: a@example.com\r\nTo: 5551234@fax.example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK!!!*&^\r\n--b--\r\n")
    with pytest.raises(MailRefused, match=r"^x\.pdf: its encoding \(base64\) is broken"):
        parse_message(raw, max_bytes=MAX)


def test_unknown_transfer_encoding_is_refused() -> None:
    raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n"
           b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n")
    with pytest.raises(MailRefused, match="unknown transfer encoding 'x-uuencode'"):
        parse_message(raw, max_bytes=MAX)


def test_header_injection_and_paths_in_file_names_are_cleaned() -> None:
    pdf = pdf_bytes()
    for raw_name, expected in [
        ("=?utf-8?q?evil=0D=0ABcc=3A_victim=40example=2Ecom.pdf?=", "evil Bcc_ victim@example.com.pdf"),
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("C:\\Users\\x\\report.pdf", "C_Usersxreport.pdf"),  # a quoted-string drops the backslashes
        ("\u202eevil\u202dfdp.pdf", "evilfdp.pdf"),
        ("...", "attachment-1.pdf"),
    ]:
        raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\""
               + raw_name.encode() + b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(pdf).encode()
               + b"\r\n--b--\r\n")
        (att,) = parse_message(raw, max_bytes=MAX).attachments
        assert att.name == expected, raw_name
        assert not any(ord(c) < 32 or c in "/\\" for c in att.name)
    # RFC 2231 with an encoded CR LF
    raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
           b"filename*=utf-8''a%0D%0AX-Evil%3A%201%00.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + b64(pdf).encode() + b"\r\n--b--\r\n")
    (att,) = parse_message(raw, max_bytes=MAX).attachments
    assert att.name == "a X-Evil_ 1 .pdf"  # CR LF and NUL became spaces


def test_clean_file_name_keeps_the_extension_of_a_long_name() -> None:
    assert clean_file_name("C:\\Users\\x\\report.pdf", 1, None) == "report.pdf"
    name = clean_file_name("x" * 500 + ".pdf", 1, "application/pdf")
    assert len(name) == 96 and name.endswith(".pdf")


def test_thousand_nested_multiparts_are_refused_before_parsing() -> None:
    head = b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    body = b""
    for i in range(1000):
        body += f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode()
    raw = head + body + b"Content-Type: text/plain\r\n\r\nhi\r\n"
    t = time.monotonic()
    with pytest.raises(MailRefused, match=r"too many parts \(1000 containers, at most 64\)"):
        parse_message(raw, max_bytes=MAX)
    assert time.monotonic() - t < 1.0


def test_nesting_within_the_container_count_is_still_bounded_in_depth() -> None:
    head = b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    body = b"".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode() for i in range(40))
    with pytest.raises(MailRefused, match="nested too deeply"):
        parse_message(head + body + b"Content-Type: text/plain\r\n\r\nhi\r\n", max_bytes=MAX)


def test_ten_thousand_parts_are_refused_quickly() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
    raw = b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    t = time.monotonic()
    with pytest.raises(MailRefused, match="too many parts \\(10001 part boundaries"):
        parse_message(raw, max_bytes=MAX)
    assert time.monotonic() - t < 1.0


def test_a_million_tiny_parts_are_refused_before_the_parser_builds_them() -> None:
    parts = b"--b\r\n\r\n" * 1_000_000
    raw = b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts
    t = time.monotonic()
    with pytest.raises(MailRefused, match=r"too many parts \(1000000 part boundaries, at most 256 parts\)"):
        parse_message(raw, max_bytes=MAX)
    assert time.monotonic() - t < 1.0


def test_parts_just_under_the_bound_are_parsed_and_then_counted() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(MAX_PARTS + 5))
    raw = b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts
    with pytest.raises(MailRefused, match=f"too many parts \\(more than {MAX_PARTS}\\)"):
        parse_message(raw + b"--b--\r\n", max_bytes=MAX)


def test_nested_message_rfc822_chain_is_refused_before_parsing() -> None:
    raw = b"From: a@example.com\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 2000 + b"hi\r\n"
    with pytest.raises(MailRefused, match="too many parts"):
        parse_message(raw, max_bytes=MAX)


def test_too_large_is_refused_before_parsing() -> None:
    with pytest.raises(MailRefused, match=r"too large \(0\.2 MB\); .* at most 0\.1 MB"):
        parse_message(b"x" * (raw_limit(100_000) + 1), max_bytes=100_000)


def test_attachments_over_max_bytes_together_are_refused() -> None:
    big = image_bytes("PNG", (800, 800))
    raw = simple(files=[("a.png", "image/png", big), ("b.png", "image/png", big)])
    with pytest.raises(MailRefused, match="too large together"):
        parse_message(raw, max_bytes=len(big) + 10)


def test_a_huge_header_is_refused() -> None:
    raw = b"From: a@example.com\r\nSubject: " + b"x " * 20_000 + b"\r\n\r\nhi\r\n"
    with pytest.raises(MailRefused, match="header line longer than 16 KiB"):
        parse_message(raw, max_bytes=MAX)


def test_unknown_charset_is_read_as_utf8_with_replacements() -> None:
    raw = (b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-nonsense\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe \xff\r\n")
    assert parse_message(raw, max_bytes=MAX).body_text == "Grüße \ufffd"
    raw = raw.replace(b"x-nonsense", b"windows-1252").replace(b"\xc3\xbc\xc3\x9f", b"\xfc\xdf").replace(b" \xff", b"")
    assert parse_message(raw, max_bytes=MAX).body_text == "Grüße"


def test_automatic_messages_are_marked() -> None:
    assert parse_message(simple(headers={"Auto-Submitted": "auto-replied"}), max_bytes=MAX).automatic
    assert parse_message(simple(sender="MAILER-DAEMON@example.com"), max_bytes=MAX).automatic
    assert not parse_message(simple(headers={"Auto-Submitted": "no"}), max_bytes=MAX).automatic


def test_exchange_auth_header_is_read() -> None:
    got = parse_message(simple(headers={"X-MS-Exchange-Organization-AuthAs": "Internal"}), max_bytes=MAX)
    assert got.exchange_auth_as == "Internal"


def test_signed_mail_is_faxed_and_encrypted_mail_refused() -> None:
    pdf = pdf_bytes()
    inner = simple(body="signed text", files=[("s.pdf", "application/pdf", pdf)])
    inner_body = inner.split(b"\r\n\r\n", 1)  # keep the inner Content-Type header
    ctype = [l for l in inner.split(b"\r\n") if l.lower().startswith(b"content-type: multipart")][0].strip()
    signed = (b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; "
              b"protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s\r\n\r\n--s\r\n" + ctype
              + b"\r\n\r\n" + inner_body[1] + b"\r\n--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n")
    got = parse_message(signed, max_bytes=MAX)
    assert [a.name for a in got.attachments] == ["s.pdf"] and got.cover_note == "signed text"
    enc = (b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data;"
           b" name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\r\n")
    with pytest.raises(MailRefused, match="encrypted"):
        parse_message(enc, max_bytes=MAX)


def test_numbers_from_addresses_and_subjects() -> None:
    assert number_from_address("5551234@FAX.Example.com", "fax.example.com") == "5551234"
    assert number_from_address("+15551234@fax.example.com", "fax.example.com") == "+15551234"
    with pytest.raises(MailRefused, match="'sales' is not a fax number"):
        number_from_address("sales@fax.example.com", "fax.example.com")
    with pytest.raises(ValueError, match="not ours"):
        number_from_address("5551234@example.org", "fax.example.com")
    assert number_from_plus_address("Fax+5551234@Contoso.com", "fax@contoso.com") == "5551234"
    assert number_from_plus_address("fax++4930123456@contoso.com", "fax@contoso.com") == "+4930123456"
    assert number_from_plus_address("fax@contoso.com", "fax@contoso.com") is None
    assert number_from_plus_address("faxes+5551234@contoso.com", "fax@contoso.com") is None
    assert number_from_subject("fax to +1 555 1234") == ("+1 555 1234", "")
    assert number_from_subject("Fax: 5551234 - contract") == ("5551234", "contract")
    assert number_from_subject("FAX 030-123456 order 17") == ("030-123456", "order 17")
    assert number_from_subject("RE: fax to 5551234") is None
    assert number_from_subject("Faxed yesterday 5551234") is None
    assert number_from_subject("Invoice 5551234") is None
