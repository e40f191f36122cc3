"""Real-world mail shapes for the mail-to-fax tests: what Outlook, OWA and others send.

Files are real (a PDF, TIFF, PNG and JPEG made by Pillow), so the parser's sniffing sees what
it sees in production."""

from __future__ import annotations

import base64
import io
from email.message import EmailMessage

from PIL import Image, ImageDraw


def image_bytes(fmt: str, size: tuple[int, int] = (200, 120), mark: int = 0) -> bytes:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).rectangle((10 + mark, 10, 120, 80), fill="black")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def pdf_bytes(mark: int = 0) -> bytes:
    return image_bytes("PDF", (300, 400), mark)


PNG_LOGO = image_bytes("PNG", (80, 30))


def b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def outlook_pdf(pdf: bytes, *, body: str = "Please find the contract attached.", to: str = "5551234@fax.example.com",
                sender: str = "alice@example.com", name: str = "contract.pdf", logo: bool = True) -> bytes:
    """Outlook 365 desktop: mixed[alternative[plain, related[html, logo]], pdf], with the
    signature marked by the _MailAutoSig bookmark, as Outlook writes it."""
    related_logo = (
        f"""--rel_
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"; size={len(PNG_LOGO)}
Content-ID: <image001.png@01DA0000.5F5E1000>
Content-Transfer-Encoding: base64

{b64(PNG_LOGO)}
"""
        if logo
        else ""
    )
    raw = f"""From: Alice Example <{sender}>
To: "5551234@fax.example.com" <{to}>
Subject: Contract
Date: Mon, 7 Dec 2026 10:00:00 +0000
Message-ID: <DB9PR01MB0001@DB9PR01MB0001.eurprd01.prod.outlook.com>
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach: yes
X-MS-TNEF-Correlator:
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix_"

--mix_
Content-Type: multipart/alternative; boundary="alt_"

--alt_
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

{body}

Alice Example
Sales | Example Corp

--alt_
Content-Type: multipart/related; boundary="rel_"; type="text/html"

--rel_
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html xmlns:o=3D"urn:schemas-microsoft-com:office:office"><head><style><!--p.MsoNormal {{margin:0cm;}}--></style></head>
<body lang=3D"EN-US"><div class=3D"WordSection1"><p class=3D"MsoNormal">{body}<o:p></o:p></p>
<p class=3D"MsoNormal"><o:p>&nbsp;</o:p></p>
<p class=3D"MsoNormal"><a name=3D"_MailAutoSig">Alice Example<br>Sales | Example Corp<br><img width=3D"80" height=3D"30" src=3D"cid:image001.png@01DA0000.5F5E1000"></a><o:p></o:p></p>
</div></body></html>

{related_logo}--rel_--

--alt_--

--mix_
Content-Type: application/pdf; name="{name}"
Content-Description: {name}
Content-Disposition: attachment; filename="{name}"; size={len(pdf)}
Content-Transfer-Encoding: base64

{b64(pdf)}

--mix_--
"""
    return raw.replace("\n", "\r\n").encode()


def simple(*, body: str | None = "Hello", html: str | None = None,
           files: list[tuple[str, str, bytes]] | tuple = (), inline: list[tuple[str, bytes]] | tuple = (),
           subject: str = "Fax", sender: str = "alice@example.com", to: str = "5551234@fax.example.com",
           headers: dict[str, str] | None = None) -> bytes:
    """A message built by Python's email package (how Thunderbird and scripts shape it)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<test.1@example.com>"
    for k, v in (headers or {}).items():
        msg[k] = v
    if body is not None:
        msg.set_content(body)
    if html is not None:
        if body is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    if inline:
        target = msg.get_body(("html",)) or msg
        for cid, data in inline:
            target.add_related(data, "image", "png", cid=f"<{cid}>")
    for name, ctype, data in files:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
