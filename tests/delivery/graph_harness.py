"""A real HTTPS Microsoft Graph mail endpoint on 127.0.0.1, shaped like the documented API.

It checks the bearer token with the token server (scope https://graph.microsoft.com/.default,
expiry), and implements what the graph backend uses: MIME ``sendMail`` (base64 ``text/plain``,
4 MB request limit), drafts, small attachments, upload sessions (pre-authorised upload URL,
Content-Range checked, 416 for a wrong range, 200 with nextExpectedRanges, 201 at the end), send
and delete.  Failures can be queued for the next requests (429 with Retry-After, 503, 401, 403).
Everything delivered is kept, parsed, for the tests to look at.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import pytest

from oauth_harness import GRAPH_SCOPE, TokenServer, https_context

#: Graph's request size limit (sendMail MIME, attachment POST) and per-PUT upload limit
REQUEST_MAX = 4 * 1024 * 1024
UPLOAD_MIN = 3 * 1024 * 1024
UPLOAD_MAX = 150 * 1024 * 1024
MAX_CUSTOM_HEADERS = 5


@dataclass
class Fail:
    """One queued failure: status, Graph error code and message, extra headers."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    """A message Graph accepted: how it came (mime or draft), and its content."""

    mailbox: str
    via: str
    #: mime: the parsed MIME message; draft: None
    message: EmailMessage | None = None
    #: draft: the message resource as created
    draft: dict[str, Any] = field(default_factory=dict)
    #: (name, contentType, bytes) per attachment (draft path; for MIME look in ``message``)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class GraphState:
    tokens: TokenServer
    base: str = ""
    mailboxes: set[str] = field(default_factory=lambda: {"fax@contoso.com"})
    sent: list[Sent] = field(default_factory=list)
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: list[Fail] = field(default_factory=list)
    #: every request: (time, method, path without query, Authorization present, status answered)
    log: list[tuple[float, str, str, bool, int]] = field(default_factory=list)
    #: every upload PUT: (Content-Range, bytes)
    puts: list[tuple[str, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle(self, retry_after: str, n: int = 1, status: int = 429) -> None:
        code = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        for _ in range(n):
            self.fail_next.append(Fail(status, code, "Application is over its MailboxConcurrency limit.",
                                       {"Retry-After": retry_after}))

    def fail(self, status: int, code: str, message: str, n: int = 1) -> None:
        for _ in range(n):
            self.fail_next.append(Fail(status, code, message))

    def statuses(self) -> list[int]:
        return [s for *_, s in self.log]


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        st = self.server.state
        with st.lock:  # before answering: the client may look at the log as soon as it has the answer
            st.log.append((time.time(), self.command, urlsplit(self.path).path,
                           "Authorization" in self.headers, status))
        self.send_response(status)
        self.send_header("request-id", str(uuid.uuid4()))
        self.send_header("client-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message,
                                      "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                     "request-id": str(uuid.uuid4())}}}, headers)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self._error(401, "InvalidAuthenticationToken", "Access token is empty.",
                        {"WWW-Authenticate": 'Bearer realm=""'})
            return False
        why = self.server.state.tokens.check(auth[len("Bearer "):], GRAPH_SCOPE)
        if why is not None:
            self._error(401, "InvalidAuthenticationToken", why,
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return False
        return True

    def _api(self) -> list[str] | None:
        """The path's parts after /v1.0, once queued failures and the token are dealt with."""
        st = self.server.state
        path = urlsplit(self.path).path
        if not path.startswith("/v1.0/"):
            return None
        with st.lock:
            fail = st.fail_next.pop(0) if st.fail_next else None
        if fail is not None:
            self._body()
            self._error(fail.status, fail.code, fail.message, fail.headers)
            return []
        if not self._authorised():
            self._body()
            return []
        return [unquote(p) for p in path[len("/v1.0/"):].split("/")]

    def _mailbox(self, parts: list[str]) -> str | None:
        if len(parts) < 3 or parts[0] != "users":
            self._error(400, "BadRequest", "Resource not found for the segment.")
            return None
        if parts[1].lower() not in self.server.state.mailboxes:
            self._error(404, "ErrorInvalidUser", f"The requested user '{parts[1]}' is invalid.")
            return None
        return parts[1].lower()

    # -- requests -------------------------------------------------------------------------
    def do_POST(self) -> None:
        parts = self._api()
        if parts is None:
            self._body()
            self._error(404, "NotFound", "no such endpoint")
            return
        if not parts:
            return
        length = int(self.headers.get("Content-Length", "0"))
        if length > REQUEST_MAX:
            self.rfile.read(length)
            self._error(413, "RequestBodyTooLarge", "The maximum request length supported is 4MB.")
            return
        body = self._body()
        mailbox = self._mailbox(parts)
        if mailbox is None:
            return
        rest = parts[2:]
        if rest == ["sendMail"]:
            self._send_mail(mailbox, body)
        elif rest == ["messages"]:
            self._create_draft(mailbox, body)
        elif len(rest) == 3 and rest[0] == "messages" and rest[2] == "attachments":
            self._add_attachment(rest[1], body)
        elif len(rest) == 4 and rest[0] == "messages" and rest[2:] == ["attachments", "createUploadSession"]:
            self._create_session(rest[1], body)
        elif len(rest) == 3 and rest[0] == "messages" and rest[2] == "send":
            self._send_draft(mailbox, rest[1])
        else:
            self._error(400, "BadRequest", "Unsupported segment.")

    def do_DELETE(self) -> None:
        parts = self._api()
        if not parts:
            if parts is None:
                self._error(404, "NotFound", "no such endpoint")
            return
        if self._mailbox(parts) is None:
            return
        if len(parts) == 4 and parts[2] == "messages" and parts[3] in self.server.state.drafts:
            del self.server.state.drafts[parts[3]]
            self.server.state.deleted.append(parts[3])
            self._send(204)
        else:
            self._error(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _send_mail(self, mailbox: str, body: bytes) -> None:
        if not self.headers.get("Content-Type", "").startswith("text/plain"):
            self._error(400, "ErrorInvalidRequest", "expected a MIME message as base64 text/plain here")
            return
        try:
            mime = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            self._error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
            return
        msg = email.message_from_bytes(mime, policy=email.policy.default)
        if not msg.get("To") and not msg.get("Cc") and not msg.get("Bcc"):
            self._error(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
            return
        self.server.state.sent.append(Sent(mailbox, "mime", message=msg))  # type: ignore[arg-type]
        self._send(202)

    def _create_draft(self, mailbox: str, body: bytes) -> None:
        try:
            draft = json.loads(body)
        except ValueError:
            self._error(400, "BadRequest", "Unable to read JSON request payload.")
            return
        headers = draft.get("internetMessageHeaders") or []
        if len(headers) > MAX_CUSTOM_HEADERS:
            self._error(400, "InvalidInternetMessageHeaderCollection",
                        "Maximum number of headers in one message should be less than or equal to 5.")
            return
        for h in headers:
            if not str(h.get("name", "")).lower().startswith("x-"):
                self._error(400, "InvalidInternetMessageHeader",
                            f"The internet message header name '{h.get('name')}' should start with 'x-' or 'X-'.")
                return
        mid = draft.get("internetMessageId")
        if mid is not None and not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", mid):
            self._error(400, "InvalidInternetMessageId", "The internet message id is invalid.")
            return
        draft_id = "AAMkAD" + secrets.token_urlsafe(24) + "="
        self.server.state.drafts[draft_id] = {"mailbox": mailbox, "draft": draft, "attachments": []}
        self._send(201, {**draft, "id": draft_id, "isDraft": True})

    def _draft(self, draft_id: str) -> dict[str, Any] | None:
        d = self.server.state.drafts.get(draft_id)
        if d is None:
            self._error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return d

    def _add_attachment(self, draft_id: str, body: bytes) -> None:
        d = self._draft(draft_id)
        if d is None:
            return
        att = json.loads(body)
        if att.get("@odata.type") != "#microsoft.graph.fileAttachment":
            self._error(400, "ErrorInvalidRequest", "@odata.type must be fileAttachment")
            return
        data = base64.b64decode(att["contentBytes"])
        d["attachments"].append((att["name"], att.get("contentType", ""), data))
        self._send(201, {"id": secrets.token_urlsafe(8), "name": att["name"], "size": len(data)})

    def _create_session(self, draft_id: str, body: bytes) -> None:
        d = self._draft(draft_id)
        if d is None:
            return
        item = json.loads(body).get("AttachmentItem") or {}
        size = int(item.get("size", 0))
        if item.get("attachmentType") != "file" or not item.get("name"):
            self._error(400, "ErrorInvalidRequest", "AttachmentItem needs attachmentType file and a name")
            return
        if size < UPLOAD_MIN:
            self._error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                        "Attachment size must be greater than the minimum size.")
            return
        if size > UPLOAD_MAX:
            self._error(400, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
                        "Attachment size must be less than the maximum size.")
            return
        sid = secrets.token_urlsafe(16)
        self.server.state.sessions[sid] = {"draft": draft_id, "name": item["name"], "size": size,
                                           "contentType": item.get("contentType", ""), "data": bytearray()}
        self._send(201, {"@odata.context": f"{self.server.state.base}/v1.0/$metadata#microsoft.graph.uploadSession",
                         "uploadUrl": f"{self.server.state.base}/upload/{sid}?authtoken={secrets.token_urlsafe(32)}",
                         "expirationDateTime": "2030-01-01T00:00:00Z", "nextExpectedRanges": ["0-"]})

    def do_PUT(self) -> None:
        st = self.server.state
        path = urlsplit(self.path).path
        body = self._body()
        sid = path[len("/upload/"):] if path.startswith("/upload/") else ""
        s = st.sessions.get(sid)
        if s is None:
            self._error(404, "ErrorItemNotFound", "upload session not found")
            return
        if "Authorization" in self.headers:
            # the upload URL carries its own token; Outlook refuses a second one
            self._error(401, "InvalidAudience", "Do not send an Authorization header to the upload URL.")
            return
        crange = self.headers.get("Content-Range", "")
        st.puts.append((crange, len(body)))
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", crange)
        got = len(s["data"])
        if (m is None or int(m.group(1)) != got or int(m.group(3)) != s["size"]
                or int(m.group(2)) - int(m.group(1)) + 1 != len(body) or int(m.group(2)) >= s["size"]):
            self._error(416, "InvalidRange", f"The Content-Range {crange!r} is not valid; expected bytes {got}-.",
                        {"Content-Range": f"bytes */{s['size']}"})
            return
        if len(body) > REQUEST_MAX:
            self._error(413, "RequestBodyTooLarge", "A range must be at most 4 MB.")
            return
        s["data"] += body
        if len(s["data"]) < s["size"]:
            self._send(200, {"expirationDateTime": "2030-01-01T00:00:00Z",
                             "nextExpectedRanges": [f"{len(s['data'])}-"]})
            return
        del st.sessions[sid]
        d = st.drafts.get(s["draft"])
        if d is not None:
            d["attachments"].append((s["name"], s["contentType"], bytes(s["data"])))
        att_id = secrets.token_urlsafe(8)
        self._send(201, None, {"Location": f"{st.base}/v1.0/users/x/messages/{s['draft']}/attachments/{att_id}"})

    def _send_draft(self, mailbox: str, draft_id: str) -> None:
        d = self._draft(draft_id)
        if d is None:
            return
        del self.server.state.drafts[draft_id]
        self.server.state.sent.append(Sent(mailbox, "draft", draft=d["draft"], attachments=d["attachments"]))
        self._send(202)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: GraphState


@dataclass
class GraphServer:
    state: GraphState
    httpd: _Server

    @property
    def url(self) -> str:
        """What goes in delivery.graph_url."""
        return self.state.base + "/v1.0"


@pytest.fixture(name="graph_server")
def graph_server_fixture(token_server: TokenServer) -> Iterator[GraphServer]:
    state = GraphState(token_server)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = state
    ctx: ssl.SSLContext = https_context(token_server.ca)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    state.base = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield GraphServer(state, httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
