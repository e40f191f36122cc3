"""Send one message through Microsoft Graph as the mailbox ``delivery.from`` (app-only, Mail.Send).

Why Graph: tenants that turned SMTP AUTH off still let an app registration send with the
``Mail.Send`` application permission over HTTPS.  Two ways in, chosen by size:

* small messages (the base64 request under Graph's 4 MB request limit): ``POST
  /users/{from}/sendMail`` with the whole MIME message base64-encoded as ``text/plain``, so the
  mailbox gets exactly the message ``message.py`` built (headers, TIFF, Content-Class);
* bigger ones: a draft (``POST /users/{from}/messages``, JSON), each attachment added (a POST
  under 3 MB, an upload session in chunks from 3 MB up to 150 MB, as Graph documents), then
  ``POST .../send``.  Graph builds that MIME itself: the subject, text body, Message-ID and our
  ``X-`` headers carry over, ``Content-Class`` cannot (Graph takes only ``x-`` custom headers).
  Drafts and upload sessions need ``Mail.ReadWrite`` besides ``Mail.Send``.

Graph delivers to every address in the message's To/Cc, while the queue holds one job per
recipient: each job's message is therefore addressed to its own recipient only, else every
addressee would get one copy per job.

Errors become the queue's two kinds with Graph's error code and message (never the token or
the upload URL, which carries its own token).  Throttling (429, 503/504 with Retry-After) is
waited out inside the attempt when the server asks for a short pause; a longer one is raised as
``ThrottledError`` whose ``retry_after`` the queue honours as the earliest next attempt.  A 401
for an expired or revoked token fetches a new token once.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import logging
import ssl
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from appliance.config import DeliveryConfig
from appliance.delivery import oauth
from appliance.delivery.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError

log = logging.getLogger("faxbridge.delivery.graph")

#: Graph refuses requests over 4 MB; the base64 MIME body must stay below, with room for headers
MIME_REQUEST_MAX = 4_000_000 - 64 * 1024
#: an attachment of this size or more must go through an upload session (and smaller ones must not)
UPLOAD_SESSION_MIN = 3 * 1024 * 1024
#: upload chunk: a multiple of 320 KiB and under Graph's 4 MB per PUT
CHUNK = 12 * 320 * 1024
#: a Retry-After up to this many seconds is waited out within the attempt; longer ones go back
#: to the queue (never longer than delivery.timeout either)
MAX_INLINE_WAIT = 30.0
#: throttled answers waited out per request before handing back to the queue
MAX_INLINE_RETRIES = 3
#: Graph keeps at most five custom headers on a message it builds
MAX_CUSTOM_HEADERS = 5
#: a server-given Retry-After beyond this is not believed (a day)
MAX_RETRY_AFTER = 86400.0

#: the sleep used for inline waits (tests may replace it)
sleep: Callable[[float], None] = time.sleep


class ThrottledError(TemporaryDeliveryError):
    """Graph asked us to come back later; ``retry_after`` (seconds) is the earliest useful retry."""

    def __init__(self, message: str, retry_after: float | None):
        super().__init__(message)
        self.retry_after = retry_after


class _TLS12Adapter(HTTPAdapter):
    """TLS 1.2 or newer, whatever the system's OpenSSL defaults say."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_minimum_version"] = ssl.TLSVersion.TLSv1_2
        super().init_poolmanager(*args, **kwargs)


def send_graph(cfg: DeliveryConfig, msg: EmailMessage, recipient: str) -> str:
    """Deliver ``msg`` to ``recipient`` as ``cfg.from_``; return Graph's acceptance."""
    msg = addressed_to(msg, recipient)
    mime = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if len(mime) > cfg.GRAPH_MAX_BYTES:
        raise PermanentDeliveryError(
            f"413 MessageTooLarge: message is {len(mime)} bytes, Graph accepts at most "
            f"{cfg.GRAPH_MAX_BYTES} (graph, not sent)"
        )
    body = base64.b64encode(mime)
    with _Client(cfg) as client:
        if len(body) <= MIME_REQUEST_MAX:
            r = client.call(
                "POST", client.user("sendMail"), data=body, headers={"Content-Type": "text/plain"}, expect=(202,)
            )
            return f"202 Accepted (graph request-id {_request_id(r)})"
        return client.send_as_draft(msg)


def addressed_to(msg: EmailMessage, recipient: str) -> EmailMessage:
    """The message with To: the job's recipient and no Cc (Graph sends to every header address)."""
    to = [a for _, a in email.utils.getaddresses([str(v) for v in msg.get_all("To", [])])]
    if to == [recipient] and "Cc" not in msg:
        return msg
    out = copy.deepcopy(msg)
    del out["To"]
    del out["Cc"]
    out["To"] = recipient
    return out


class _Client:
    """One delivery's HTTPS session: token, throttling and error wording in one place."""

    def __init__(self, cfg: DeliveryConfig):
        self.cfg = cfg
        self.base = cfg.graph_url.rstrip("/")
        self.mailbox = quote(cfg.from_, safe="@")
        self.session = requests.Session()
        self.session.mount("https://", _TLS12Adapter())
        # per request, not session.verify: requests lets REQUESTS_CA_BUNDLE override a session's
        self.verify: bool | str = (cfg.ca_file or True) if cfg.verify_tls else False

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()

    def user(self, path: str) -> str:
        return f"{self.base}/users/{self.mailbox}/{path}"

    def call(
        self,
        method: str,
        url: str,
        *,
        auth: bool = True,
        expect: tuple[int, ...] = (200, 201, 202),
        where: str | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        """One Graph request, with short throttling waits and one token renewal on 401."""
        where = where or f"{method} {urlsplit(url).path}"
        renewed = False
        waits = 0
        while True:
            sent = dict(headers or {})
            if auth:
                sent["Authorization"] = "Bearer " + oauth.get_token(self.cfg)
            r = self._request(method, url, sent, where, **kw)
            if r.status_code in expect:
                return r
            if r.status_code == 401 and auth and not renewed:
                # expired or revoked: MSAL's cache still believes in it, so drop it and ask again
                log.info("graph %s: 401 %s, fetching a new token", where, _graph_error(r)[0])
                oauth.forget_token(self.cfg)
                renewed = True
                continue
            wait = retry_after(r)
            if (
                r.status_code in (429, 503, 504)
                and wait is not None
                and waits < MAX_INLINE_RETRIES
                and wait <= min(MAX_INLINE_WAIT, float(self.cfg.timeout))
            ):
                log.info("graph %s: %d, waiting %.0f s as asked", where, r.status_code, wait)
                sleep(wait)
                waits += 1
                continue
            raise self.error(r, where)

    def _request(self, method: str, url: str, headers: dict[str, str], where: str, **kw: Any) -> requests.Response:
        host = urlsplit(url).netloc
        try:
            with warnings.catch_warnings():
                if self.verify is False:  # the admin's choice (delivery.verify_tls): not a warning per fax
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self.session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self.cfg.timeout,
                    verify=self.verify,
                    allow_redirects=False,
                    **kw,
                )
        except requests.exceptions.SSLError as e:
            if isinstance(_root(e), ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e):
                raise PermanentDeliveryError(f"https://{host}: TLS certificate not trusted ({where})") from None
            raise TemporaryDeliveryError(f"https://{host}: TLS handshake failed ({where})") from None
        except requests.Timeout:
            raise TemporaryDeliveryError(f"https://{host}: timed out after {self.cfg.timeout} s ({where})") from None
        except requests.ConnectionError as e:
            reason = _root(e)
            text = getattr(reason, "strerror", None) or type(reason).__name__
            raise TemporaryDeliveryError(f"https://{host}: cannot connect: {text} ({where})") from None
        except requests.RequestException as e:
            raise TemporaryDeliveryError(f"https://{host}: {type(e).__name__} ({where})") from None

    def error(self, r: requests.Response, where: str) -> DeliveryError:
        """Graph's answer as a DeliveryError: status, error code and message, request-id."""
        code, text = _graph_error(r)
        wait = retry_after(r)
        rid = _request_id(r)
        message = f"{r.status_code} {code}: {text} (graph {where}" + (f", request-id {rid}" if rid else "") + ")"
        if wait is not None:
            message += f"; Retry-After: {wait:.0f} s"
        message = self.cfg.scrub(message)
        if r.status_code in (408, 429) or r.status_code >= 500:
            return ThrottledError(message, wait)
        if 200 <= r.status_code < 400:  # an answer we did not expect, e.g. 200 for a send
            return TemporaryDeliveryError(message)
        return PermanentDeliveryError(message)

    # -- large messages: draft, attachments, send ---------------------------------------------
    def send_as_draft(self, msg: EmailMessage) -> str:
        r = self.call("POST", self.user("messages"), json=draft_json(msg), expect=(201,))
        draft_id = _json(r).get("id")
        if not isinstance(draft_id, str) or not draft_id:
            raise TemporaryDeliveryError(f"graph POST /users/{self.mailbox}/messages: no draft id in the answer")
        base = self.user(f"messages/{quote(draft_id, safe='')}")
        short = f"/users/{self.mailbox}/messages/(draft)"  # error texts: the draft id is noise
        try:
            for part in msg.iter_attachments():
                data = part.get_content()
                if isinstance(data, str):
                    data = data.encode()
                name = part.get_filename() or "fax.tif"
                if len(data) < UPLOAD_SESSION_MIN:
                    self.call(
                        "POST",
                        f"{base}/attachments",
                        expect=(201,),
                        where=f"POST {short}/attachments",
                        json={
                            "@odata.type": "#microsoft.graph.fileAttachment",
                            "name": name,
                            "contentType": attachment_type(part),
                            "contentBytes": base64.b64encode(data).decode(),
                        },
                    )
                else:
                    self.upload(base, short, name, attachment_type(part), data)
            r = self.call("POST", f"{base}/send", expect=(202,), where=f"POST {short}/send")
        except DeliveryError:
            self._discard(base)
            raise
        return f"202 Accepted (graph request-id {_request_id(r)}, sent from a draft)"

    def upload(self, base: str, short: str, name: str, content_type: str, data: bytes) -> None:
        """One attachment through an upload session: PUT ranges until Graph answers 201."""
        r = self.call(
            "POST",
            f"{base}/attachments/createUploadSession",
            expect=(200, 201),
            where=f"POST {short}/attachments/createUploadSession",
            json={
                "AttachmentItem": {
                    "attachmentType": "file",
                    "name": name,
                    "size": len(data),
                    "contentType": content_type,
                }
            },
        )
        url = _json(r).get("uploadUrl")
        if not isinstance(url, str) or not url.startswith("https://"):
            raise TemporaryDeliveryError(f"graph createUploadSession for {name}: no https uploadUrl")
        where = f"upload of {name}"  # never the URL: it carries a token
        pos, total, stalls = 0, len(data), 0
        while True:
            end = min(pos + CHUNK, total) - 1
            try:
                # the upload URL is pre-authorised: an Authorization header would be refused
                r = self.call(
                    "PUT",
                    url,
                    auth=False,
                    expect=(200, 201),
                    where=where,
                    data=data[pos : end + 1],
                    headers={"Content-Type": "application/octet-stream", "Content-Range": f"bytes {pos}-{end}/{total}"},
                )
            except PermanentDeliveryError as e:
                if str(e).startswith("413 "):
                    raise
                # an expired session or a lost range (416): the next attempt starts a new draft
                raise TemporaryDeliveryError(str(e)) from None
            if r.status_code == 201:
                if end + 1 < total:
                    raise TemporaryDeliveryError(f"graph {where}: finished at byte {end + 1} of {total}")
                return
            nxt = _next_expected(r)
            if nxt is None or nxt >= total:
                raise TemporaryDeliveryError(f"graph {where}: 200 without a usable nextExpectedRanges")
            stalls = stalls + 1 if nxt <= pos else 0
            if stalls > 2:
                raise TemporaryDeliveryError(f"graph {where}: no progress at byte {pos} of {total}")
            pos = nxt

    def _discard(self, base: str) -> None:
        """Best effort: do not leave a half-built draft in the mailbox for every failed attempt."""
        try:
            self.session.request(
                "DELETE",
                base,
                timeout=self.cfg.timeout,
                verify=self.verify,
                allow_redirects=False,
                headers={"Authorization": "Bearer " + oauth.get_token(self.cfg)},
            )
        except (DeliveryError, requests.RequestException) as e:
            log.warning("graph: could not delete a draft after a failed send: %s", type(e).__name__)


def attachment_type(part: EmailMessage) -> str:
    """The attachment's contentType for Graph, which builds the MIME of a draft itself: the
    type with the fax hint ``application=faxbw`` the TIFF part carries (reference/exchange.md
    section 4); the name goes in Graph's own ``name``."""
    kind = part.get_content_type()
    hint = part.get_param("application")
    if isinstance(hint, str) and hint in ("faxbw", "faxcolor"):
        return f"{kind}; application={hint}"
    return kind


def draft_json(msg: EmailMessage) -> dict[str, Any]:
    """The Graph message resource for ``msg``: subject, text body, To/Cc, Message-ID, X- headers."""
    body = msg.get_body(preferencelist=("plain", "html"))
    content = body.get_content() if body is not None else ""
    kind = "HTML" if body is not None and body.get_content_subtype() == "html" else "Text"
    draft: dict[str, Any] = {
        "subject": str(msg.get("Subject", "")),
        "body": {"contentType": kind, "content": content},
        "toRecipients": _recipients(msg, "To"),
    }
    cc = _recipients(msg, "Cc")
    if cc:
        draft["ccRecipients"] = cc
    if msg.get("Message-ID"):
        draft["internetMessageId"] = str(msg["Message-ID"])
    headers = [{"name": k, "value": str(v)} for k, v in msg.items() if k.lower().startswith("x-")]
    # Exchange UM partner headers first: without them the message is not a fax to Exchange
    headers.sort(key=lambda h: not h["name"].lower().startswith("x-ms-exchange-um-"))
    if len(headers) > MAX_CUSTOM_HEADERS:
        log.warning(
            "graph: only %d custom headers allowed, left out: %s",
            MAX_CUSTOM_HEADERS,
            ", ".join(h["name"] for h in headers[MAX_CUSTOM_HEADERS:]),
        )
        headers = headers[:MAX_CUSTOM_HEADERS]
    if headers:
        draft["internetMessageHeaders"] = headers
    return draft


def _recipients(msg: EmailMessage, header: str) -> list[dict[str, Any]]:
    pairs = email.utils.getaddresses([str(v) for v in msg.get_all(header, [])])
    return [{"emailAddress": {"address": a}} for _, a in pairs if a]


def retry_after(r: requests.Response) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = (r.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _graph_error(r: requests.Response) -> tuple[str, str]:
    """(code, message) from Graph's {"error": {"code", "message"}}, else the HTTP reason."""
    err = _json(r).get("error")
    if isinstance(err, dict):
        code = str(err.get("code") or r.reason or "Error")
        text = " ".join(str(err.get("message") or "").split())
        return code, text[:300]
    return (r.reason or "Error").replace(" ", ""), " ".join(r.text.split())[:200] if r.text else ""


def _json(r: requests.Response) -> dict[str, Any]:
    try:
        value = r.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _request_id(r: requests.Response) -> str:
    return r.headers.get("request-id") or r.headers.get("client-request-id") or "-"


def _next_expected(r: requests.Response) -> int | None:
    ranges = _json(r).get("nextExpectedRanges")
    if not isinstance(ranges, list) or not ranges:
        return None
    try:
        return int(str(ranges[0]).split("-")[0])
    except ValueError:
        return None


def _root(e: BaseException) -> BaseException:
    """The innermost cause (requests wraps urllib3 wraps the OSError or SSLError)."""
    seen = 0
    while seen < 10:
        nxt = e.__cause__ or e.__context__ or (e.args[0] if e.args and isinstance(e.args[0], BaseException) else None)
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            nxt = reason
        if nxt is None or nxt is e:
            return e
        e, seen = nxt, seen + 1
    return e
