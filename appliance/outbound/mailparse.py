"""The one strict parser of mail submitted for faxing (sans-I/O: bytes in, a ``MailFax`` out).

Both mail ways in use it: the box's SMTP listener (``mailin.py``, the number is the recipient
``<number>@<outbound.domain>``) and the Exchange Online mailbox watcher (``graphwatch.py``, the
number is in ``fax+<number>@<mailbox domain>`` or the subject). Every refusal is a ``MailRefused``
whose text is a plain sentence for the sender: the listener puts it in its 550 reply (Exchange
turns that into the non-delivery report the user reads) and the watcher in its reply mail.

What becomes the fax (kept simple and predictable; the user documentation can quote this):

* **Attachments**, in the order of the message: PDF, TIFF, PNG, JPEG (decided by the file's own
  first bytes, never by its name or declared type) and plain text files. Anything else refuses
  the whole mail, naming the file and what is accepted; Outlook's ``winmail.dat`` (TNEF, "Rich
  Text" format) gets its own advice.
* **Inline images** (an image part with a Content-ID that is not marked as an attachment: the
  logo in an Outlook signature, a picture pasted into the body) are not faxed, unless they are
  the only content: no attachment and no text beyond the signature.
* **The body text** (text/plain, else text/html converted to text), cut at the signature
  (``-- ``, Outlook's ``<div id="Signature">`` / ``_MailAutoSig`` bookmark) and at quoted
  replies (``-----Original Message-----``, Outlook's reply header): with attachments, text left
  after the cut becomes the cover page note (``cover_note``); without attachments, it is the fax
  (``body_text``).
* Nothing left: refused ("nothing to fax").

Hostile input is bounded before and during the parse: the raw size, the number of multipart and
embedded-message containers (counted in the raw bytes before the parser sees them, so a 1000
deep nesting never reaches it), the part count, the header sizes; every transfer encoding is
checked strictly (broken base64 refuses the mail instead of faxing garbage); file names are
cleaned of paths, control and formatting characters (a CR LF or a bidi override never reaches a
file name or a header).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import email.utils
import fnmatch
import html
import re
import unicodedata
from dataclasses import dataclass, field, replace
from email.errors import HeaderParseError, MessageError
from email.message import EmailMessage, Message
from html.parser import HTMLParser

#: containers (multipart, message/*) a mail may have in all; nesting depth; parts in all
MAX_CONTAINERS = 64
MAX_DEPTH = 16
MAX_PARTS = 256
#: lines starting "--" (part boundaries, and the odd text line) before the parser is refused
MAX_DELIMITER_LINES = 4 * MAX_PARTS
#: one header's raw length, and headers per part
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 256
#: body text kept for the fax (characters); more is refused (it would be hundreds of pages)
MAX_TEXT_CHARS = 200_000
#: cleaned file names are at most this long
MAX_NAME = 96
#: a fax number as written in an address or a subject: digits, with +, -, . and spaces between
_NUMBER_CHARS = re.compile(r"\+?[0-9][0-9 ().\-/]{0,40}")

ACCEPTED_WORDS = "PDF, TIFF, PNG and JPEG files (and plain text)"

TNEF_ADVICE = (
    "winmail.dat: Outlook sent this mail in its own Rich Text format (TNEF), which cannot be faxed; "
    "send it as HTML or plain text (in Outlook: Format Text > HTML), or ask your Exchange "
    "administrator to turn TNEF off for the fax domain"
)


class MailRefused(ValueError):
    """The mail cannot become a fax; ``str()`` is one plain sentence for the sender."""


@dataclass(frozen=True)
class Attachment:
    """One file to fax: a cleaned name (never a path), its bytes, and its type as its bytes say."""

    name: str
    data: bytes
    content_type: str  # application/pdf, image/tiff, image/png, image/jpeg or text/plain


@dataclass(frozen=True)
class MailFax:
    """What a mail asks to fax. ``numbers`` are as the sender wrote them (``numbers.normalise``
    makes them E.164 in ``submit``); the listener hands one number per call of its submit."""

    numbers: tuple[str, ...]
    #: the address the report goes to (see mailin.py and graphwatch.py for which one that is)
    sender: str
    #: the From header's address, as written (for the log and the cover page)
    from_header: str
    subject: str
    attachments: tuple[Attachment, ...]
    #: the fax's text when there is no attachment; "" otherwise
    body_text: str = ""
    #: the text for the cover page's note when there are attachments; "" when none
    cover_note: str = ""
    message_id: str = ""
    #: facts for the queue (``submit(..., meta=...)``): source, how the sender was authenticated,
    #: the Graph message id and an idempotency key (graphwatch.py)
    meta: dict[str, str] = field(default_factory=dict)

    def for_number(self, number: str, **meta: str) -> MailFax:
        """This fax to one of its numbers, with ``meta`` added: one queue job per number."""
        return replace(self, numbers=(number,), meta={**self.meta, **meta})

    @property
    def number(self) -> str:
        return self.numbers[0]


@dataclass
class ParsedMail:
    """A parsed message before the numbers and the sender are decided (by the way in)."""

    from_header: str
    subject: str
    message_id: str
    attachments: list[Attachment]
    body_text: str
    cover_note: str
    #: To and Cc addresses (the Graph path reads fax+<number>@ there)
    recipients: list[str]
    #: Exchange's X-MS-Exchange-Organization-AuthAs ("Internal", "Anonymous", ...) or ""
    exchange_auth_as: str
    #: an automatic message (report, out-of-office, bounce): never answered
    automatic: bool

    def fax(self, numbers: tuple[str, ...], sender: str, **meta: str) -> MailFax:
        return MailFax(
            numbers=numbers,
            sender=sender,
            from_header=self.from_header,
            subject=self.subject,
            attachments=tuple(self.attachments),
            body_text=self.body_text,
            cover_note=self.cover_note,
            message_id=self.message_id,
            meta=dict(meta),
        )


def raw_limit(max_bytes: int) -> int:
    """The most raw message bytes taken for faxes of ``max_bytes``: base64 grows files by 4/3
    (plus line ends), and headers and a body need room."""
    return int(max_bytes * 1.4) + 64 * 1024


# -- numbers ------------------------------------------------------------------------------------
def clean_number(text: str) -> str:
    """A number as written ("+1 555 1234", "555-1234") checked for its characters only; the
    dial plan's checks come later (numbers.normalise). MailRefused when it is not a number."""
    text = text.strip()
    if not _NUMBER_CHARS.fullmatch(text) or sum(c.isdigit() for c in text) < 3:
        shown = _shown(text)
        raise MailRefused(f"{shown!r} is not a fax number: write digits only, e.g. 5551234 or +15551234")
    return text


def number_from_address(address: str, domain: str) -> str:
    """The number of ``<number>@<domain>`` (domain case-insensitive). MailRefused when the address
    is in the domain but its local part is not a number; ValueError("not ours") when it is not an
    address in the domain at all (the listener answers that as relaying refused)."""
    local, at, dom = address.strip().rpartition("@")
    if not at or dom.lower().rstrip(".") != domain.lower().rstrip("."):
        raise ValueError("not ours")
    return clean_number(local)


def number_from_plus_address(address: str, mailbox: str) -> str | None:
    """``fax+5551234@contoso.com`` for the mailbox ``fax@contoso.com``: the number, or None when
    the address is not a plus address of the mailbox. ``fax++15551234@`` is +15551234."""
    mlocal, _, mdomain = mailbox.lower().rpartition("@")
    local, at, dom = address.strip().rpartition("@")
    if not at or dom.lower() != mdomain or not local.lower().startswith(mlocal + "+"):
        return None
    return clean_number(local[len(mlocal) + 1 :])


#: "fax to +1 555 1234", "Fax: 5551234", "FAX 5551234 - contract": the subject starts with the
#: word fax (a reply's "RE: ..." never does: replying to a report must not send a fax again)
_SUBJECT = re.compile(
    r"\s*fax(?:\s+to\b|\s+an\b|\s*:|\s+number\b|\s*#|\s)\s*:?\s*(\+?[0-9][0-9 ().\-/]{1,40}[0-9])", re.I
)


def number_from_subject(subject: str) -> tuple[str, str] | None:
    """(number, the rest of the subject) when the subject starts "fax to <number>" or
    "fax: <number>" (case-insensitive; "fax <number>" too), else None."""
    m = _SUBJECT.match(subject)
    if m is None:
        return None
    rest = subject[m.end() :].strip(" \t-:,;")
    return clean_number(m.group(1)), rest


def sender_allowed(address: str, globs: list[str]) -> bool:
    """Whether an address matches one of ``outbound.allowed_senders`` (case-insensitive globs);
    no globs = every sender the authentication let in."""
    if not globs:
        return True
    address = address.lower()
    return any(fnmatch.fnmatchcase(address, g.lower()) for g in globs)


def reply_text(text: str, limit: int = 400) -> str:
    """A reason as an SMTP reply line carries it: one line, printable ASCII, bounded."""
    text = " ".join(text.split())
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- parsing ------------------------------------------------------------------------------------
_CONTAINER = re.compile(rb"boundary\s*(?:\*\d*)?\*?\s*=|^content-type\s*:\s*message\s*/", re.I | re.M)


def parse_message(raw: bytes, *, max_bytes: int) -> ParsedMail:
    """Parse one submitted message; MailRefused with the reason when it cannot be faxed."""
    if len(raw) > raw_limit(max_bytes):
        raise MailRefused(
            f"the mail is too large ({_mb(len(raw))}); the attachments of one fax may have at most {_mb(max_bytes)}"
        )
    containers = sum(1 for _ in _CONTAINER.finditer(raw))
    if containers > MAX_CONTAINERS:
        raise MailRefused(f"the mail is built of too many parts ({containers} containers, at most {MAX_CONTAINERS})")
    # every part starts on a line "--<boundary>": more such lines than this, and the parser (which
    # builds every part before we could count them) is not started; text lines starting "--" (a
    # signature, "-----Original Message-----") are few in any real mail
    lines = raw.count(b"\n--")
    if lines > MAX_DELIMITER_LINES:
        raise MailRefused(f"the mail has too many parts ({lines} part boundaries, at most {MAX_PARTS} parts)")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except (MessageError, RecursionError, ValueError) as e:
        raise MailRefused(f"the mail cannot be read ({type(e).__name__})") from None
    assert isinstance(msg, EmailMessage)
    walker = _Walker(max_bytes)
    try:
        _check_headers(msg)
        subject = _text_header(msg, "Subject")
        from_header = _first_address(msg, "From")
        recipients = _addresses(msg, "To") + _addresses(msg, "Cc")
        message_id = _text_header(msg, "Message-ID")[:300]
        auth_as = _text_header(msg, "X-MS-Exchange-Organization-AuthAs")[:40]
        automatic = _automatic(msg)
        walker.walk(msg, depth=0, related=False)
    except (HeaderParseError, RecursionError, LookupError) as e:
        raise MailRefused(f"the mail cannot be read ({type(e).__name__})") from None
    if walker.report:
        automatic = True
    text = _cut_signature("\n\n".join(t for t in walker.texts if t.strip()))
    if len(text) > MAX_TEXT_CHARS:
        raise MailRefused(f"the mail's text is too long to fax ({len(text)} characters, at most {MAX_TEXT_CHARS})")
    attachments = walker.attachments
    body_text = cover_note = ""
    if attachments:
        cover_note = text
    elif text:
        body_text = text
    elif walker.inline:
        attachments = walker.inline  # the images are all there is: fax them
    else:
        raise MailRefused(f"the mail has nothing to fax: attach {ACCEPTED_WORDS}, or write the text in the mail")
    total = sum(len(a.data) for a in attachments) + len(text.encode())
    if total > max_bytes:
        raise MailRefused(
            f"the attachments are too large together ({_mb(total)}); one fax may have at most {_mb(max_bytes)}"
        )
    return ParsedMail(
        from_header=from_header,
        subject=subject,
        message_id=message_id,
        attachments=attachments,
        body_text=body_text,
        cover_note=cover_note,
        recipients=recipients,
        exchange_auth_as=auth_as,
        automatic=automatic,
    )


class _Walker:
    """Collects the body texts, attachments and inline images of a message tree, in order."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.parts = 0
        self.texts: list[str] = []
        self.attachments: list[Attachment] = []
        self.inline: list[Attachment] = []
        self.report = False

    def walk(self, part: Message, *, depth: int, related: bool) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise MailRefused(f"the mail has too many parts (more than {MAX_PARTS})")
        if depth > MAX_DEPTH:
            raise MailRefused(f"the mail's parts are nested too deeply (more than {MAX_DEPTH} levels)")
        if depth:
            _check_headers(part)
        kind = part.get_content_type()
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            sub = part.get_content_subtype()
            if sub == "alternative":
                self._alternative(children, depth=depth, related=related)
            elif sub == "signed":  # S/MIME or PGP signature: the content is the first part
                if children:
                    self.walk(children[0], depth=depth + 1, related=related)
            elif sub == "encrypted":
                raise MailRefused("the mail is encrypted; send it unencrypted to fax it")
            else:
                if sub == "report":
                    self.report = True
                for child in children:
                    self.walk(child, depth=depth + 1, related=related or sub == "related")
            return
        self._leaf(part, kind, related=related)

    def _alternative(self, children: list[Message], *, depth: int, related: bool) -> None:
        """One of the alternatives: the HTML (its signature marks are the better cut), or the
        last multipart (Outlook's HTML with its inline images), else the plain text."""

        def text(want: str) -> Message | None:
            return next((c for c in children if c.get_content_type() == want and not _is_attachment(c)), None)

        best = text("text/html") or next((c for c in reversed(children) if c.is_multipart()), None)
        best = best or text("text/plain")
        if best is not None:
            self.walk(best, depth=depth + 1, related=related)

    def _leaf(self, part: Message, kind: str, *, related: bool) -> None:
        attached = _is_attachment(part)
        name = _file_name(part)
        if kind in _IGNORED or (kind.startswith("message/") and self.report):
            return
        if kind == "message/rfc822" or kind == "message/global":
            shown = clean_file_name(name or "", 0, None) if name else "a forwarded mail"
            raise MailRefused(f"{shown}: a mail attached to a mail cannot be faxed; attach its files instead")
        if kind in ("text/plain", "text/html") and not attached and not name:
            text = _decode_text(part)
            self.texts.append(html_to_text(text) if kind == "text/html" else text)
            return
        if kind == "application/ms-tnef" or (name or "").lower() == "winmail.dat":
            raise MailRefused(TNEF_ADVICE)
        if kind == "application/pkcs7-mime" or kind == "application/x-pkcs7-mime":
            raise MailRefused("the mail is encrypted (S/MIME); send it unencrypted to fax it")
        number = len(self.attachments) + len(self.inline) + 1
        data = _decode_bytes(part, name or f"attachment {number}")
        sniffed = _sniff(data)
        inline = not attached and kind.startswith("image/") and (bool(part.get("Content-ID")) or related)
        if sniffed is None and kind == "text/plain":
            data = _decode_text(part).encode("utf-8")
            sniffed = "text/plain"
        clean = clean_file_name(name or "", number, sniffed)
        if not data:
            raise MailRefused(f"{clean}: the file is empty")
        if sniffed is None:
            what = _what_it_is(name or "", kind)
            raise MailRefused(f"{clean}: {what}cannot be faxed; only {ACCEPTED_WORDS} can")
        if sum(len(a.data) for a in self.attachments + self.inline) + len(data) > self.max_bytes:
            raise MailRefused(f"the attachments are too large together; one fax may have at most {_mb(self.max_bytes)}")
        (self.inline if inline else self.attachments).append(Attachment(clean, data, sniffed))


#: parts that are neither text to fax nor files: signatures, calendar items, vCards, DSN bits
_IGNORED = frozenset(
    {
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-signature",
        "text/calendar",
        "message/delivery-status",
        "message/disposition-notification",
        "text/rfc822-headers",
    }
)


def _is_attachment(part: Message) -> bool:
    return (part.get_content_disposition() or "") == "attachment"


def _check_headers(part: Message) -> None:
    items = part.raw_items() if isinstance(part, EmailMessage) else part.items()
    for count, (_, value) in enumerate(items, 1):
        if count > MAX_HEADERS:
            raise MailRefused(f"the mail has too many header lines (more than {MAX_HEADERS} in one part)")
        if len(value) > MAX_HEADER_BYTES:
            raise MailRefused(f"the mail has a header line longer than {MAX_HEADER_BYTES // 1024} KiB")


def _text_header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    return " ".join(_printable(str(value)).split())


def _addresses(msg: Message, name: str) -> list[str]:
    values = [str(v) for v in msg.get_all(name, [])]
    return [a for _, a in email.utils.getaddresses(values) if a and "@" in a][:100]


def _first_address(msg: Message, name: str) -> str:
    found = _addresses(msg, name)
    return _printable(found[0]) if found else ""


def _automatic(msg: Message) -> bool:
    """A message no person wrote (RFC 3834 Auto-Submitted, Exchange's auto-reply marks, bounces):
    never answered, so two robots cannot mail each other for ever."""
    auto = _text_header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if _text_header(msg, "X-Auto-Response-Suppress") or _text_header(msg, "X-Autoreply"):
        return True
    if _text_header(msg, "Precedence").lower() in ("bulk", "junk", "list", "auto_reply"):
        return True
    sender = _first_address(msg, "From").lower()
    return sender.startswith(("mailer-daemon@", "postmaster@")) or msg.get_content_type() == "multipart/report"


def _decode_bytes(part: Message, shown: str) -> bytes:
    """The part's bytes under a strictly checked transfer encoding."""
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if cte == "base64":
        payload = part.get_payload(decode=False)
        if not isinstance(payload, str):
            raise MailRefused(f"{_shown(shown)}: the file cannot be read")
        text = re.sub(r"[ \t\r\n]+", "", payload)
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise MailRefused(
                f"{_shown(shown)}: its encoding (base64) is broken; the mail was damaged on the way, send it again"
            ) from None
    if cte in ("quoted-printable", "7bit", "8bit", "binary"):
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""
    raise MailRefused(f"{_shown(shown)}: unknown transfer encoding {_shown(cte)!r}")


def _decode_text(part: Message) -> str:
    """A text part as str: its charset if Python knows it as a text encoding, else UTF-8;
    undecodable bytes become U+FFFD (text is never refused for a wrong charset)."""
    data = _decode_bytes(part, "the mail's text")
    charset = str(part.get_content_charset() or "utf-8")
    try:
        info = codecs.lookup(charset)
        if not getattr(info, "_is_text_encoding", True):
            charset = "utf-8"
    except LookupError:
        charset = "utf-8"
    return data.decode(charset, errors="replace")


def _sniff(data: bytes) -> str | None:
    """The file's type from its first bytes (names and declared types lie)."""
    head = data[:1024]
    if b"%PDF-" in head:  # readers accept junk before the header within the first KiB
        return "application/pdf"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


_KINDS = {
    ".doc": "a Word document ",
    ".docx": "a Word document ",
    ".xls": "an Excel workbook ",
    ".xlsx": "an Excel workbook ",
    ".ppt": "a PowerPoint file ",
    ".pptx": "a PowerPoint file ",
    ".zip": "a ZIP archive ",
    ".gif": "a GIF image ",
    ".heic": "a HEIC photo ",
    ".pdf": "this file is not a PDF inside and ",
}


def _what_it_is(name: str, kind: str) -> str:
    for ext, words in _KINDS.items():
        if name.lower().endswith(ext):
            return words
    return f"a file of type {_shown(kind)} " if kind != "application/octet-stream" else "this file "


def _file_name(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (HeaderParseError, ValueError, LookupError):
        return None
    return str(name) if name else None


_EXT = {
    "application/pdf": ".pdf",
    "image/tiff": ".tif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "text/plain": ".txt",
}


def clean_file_name(name: str, number: int, content_type: str | None) -> str:
    """A name safe to show, log and put in a header or a file name: no path, no control or
    formatting character (CR, LF, NUL, bidi overrides), no leading dot, at most MAX_NAME
    characters (the extension kept); "attachment-N.ext" when nothing is left."""
    name = unicodedata.normalize("NFKC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    out = []
    for ch in name:
        cat = unicodedata.category(ch)
        if cat[0] in ("C", "Z") and ch != " ":
            out.append(" " if cat in ("Cc", "Zl", "Zp") else "")
        elif ch in "<>:\"|?*;=%`$'":
            out.append("_")
        else:
            out.append(ch)
    text = " ".join("".join(out).split()).lstrip(". ")
    if len(text) > MAX_NAME:
        stem, dot, ext = text.rpartition(".")
        text = stem[: MAX_NAME - len(ext) - 1] + "." + ext if dot and len(ext) <= 8 else text[:MAX_NAME]
    return text or f"attachment-{number}{_EXT.get(content_type or '', '')}"


def _printable(text: str) -> str:
    """Text from a header with control and formatting characters dropped."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch == " ")


def _shown(text: str) -> str:
    """Outside text as a refusal quotes it: printable, at most 60 characters."""
    text = _printable(text)
    return text if len(text) <= 60 else text[:57] + "..."


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


# -- text: HTML to text, the signature cut ------------------------------------------------------
_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    ]
)
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml", "o:p"})
#: ids and bookmark names that start an Outlook/OWA signature or a quoted reply
_SIGNATURE_IDS = frozenset({"signature", "divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container"})
_SIGNATURE_NAMES = frozenset({"_mailautosig"})


class _TextFromHtml(HTMLParser):
    """HTML to plain text: blocks on their own lines, scripts and styles dropped, stop at the
    signature (Outlook and OWA mark it) or a quoted reply. Entities decoded; nothing executed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        ident = values.get("id", "").lower()
        if ident.startswith("x_"):  # Outlook prefixes ids in replies and forwards
            ident = ident[2:]
        if ident in _SIGNATURE_IDS or values.get("name", "").lower() in _SIGNATURE_NAMES:
            self.stopped = True
            return
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append("  ")
        if tag == "li":
            self.out.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self.skip:
            self.skip -= 1
        elif tag in _BLOCK and not self.stopped:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip and not self.stopped:
            self.out.append(" ".join(data.split()) if data.strip() else (" " if data else ""))


def html_to_text(text: str) -> str:
    parser = _TextFromHtml()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        return html.unescape(re.sub(r"<[^>]*>", " ", text))
    lines = [" ".join(line.split()) for line in "".join(parser.out).replace("\xa0", " ").split("\n")]
    return "\n".join(lines)


_CUT = re.compile(r"^(?:-- ?|-{2,}\s*original message\s*-{2,}|_{10,}|from: .+\n(?:.*\n)?sent: .+)$", re.I | re.M)


def _cut_signature(text: str) -> str:
    """The text before the first signature mark or quoted reply, without quoted lines, trimmed;
    "" when no word is left (a signature alone is no fax)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    m = _CUT.search(text)
    if m is not None:
        text = text[: m.start()]
    lines = [line.rstrip() for line in text.split("\n") if not line.startswith(">")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return text if any(ch.isalnum() for ch in text) else ""
