"""A real HTTPS Microsoft Graph mail endpoint on 127.0.0.1, shaped like the documented API.

It checks the bearer token with the token server (scope https://graph.microsoft.com/.default,
expiry), and implements what the graph backend uses and, for the outbound mailbox watcher
(appliance/outbound/graphwatch.py), a mailbox: unread messages of the inbox ($filter isRead eq
false, $top), a message's MIME ($value) and headers, mail folders and child folders (found by
displayName, created), move (a new id unless the request asks for ImmutableId, as Graph does),
PATCH isRead, and reply. Besides those, MIME ``sendMail`` (base64 ``text/plain``,
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
import email.utils
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
from urllib.parse import parse_qs, unquote, urlsplit

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
class MailboxMessage:
    """A message in a watched mailbox: its MIME as delivered, where it is, whether it was read."""

    id: str
    mailbox: str
    mime: bytes
    folder: str = "inbox"
    is_read: bool = False

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.mime, policy=email.policy.default)  # type: ignore[return-value]

    def resource(self) -> dict[str, Any]:
        """The Graph message resource (the properties the watcher asks for)."""
        msg = self.parsed()
        sender = email.utils.parseaddr(str(msg.get("From", "")))[1]
        return {"id": self.id, "subject": str(msg.get("Subject", "")), "isRead": self.is_read,
                "parentFolderId": self.folder, "from": {"emailAddress": {"address": sender}},
                "internetMessageHeaders": [{"name": k, "value": str(v)} for k, v in msg.items()]}


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
    #: the mailbox side: messages by id, folders by id ({"mailbox", "parent", "displayName"}),
    #: replies sent ((message id, comment)), moves ((old id, new id, folder id))
    messages: dict[str, MailboxMessage] = field(default_factory=dict)
    folders: dict[str, dict[str, str]] = field(default_factory=dict)
    replies: list[tuple[str, str]] = field(default_factory=list)
    moves: list[tuple[str, str, str]] = field(default_factory=list)

    def deliver(self, mailbox: str, mime: bytes) -> str:
        """A message arrives in ``mailbox``'s inbox, unread; returns its id."""
        mid = "AAMkAG" + secrets.token_urlsafe(24) + "="
        with self.lock:
            self.messages[mid] = MailboxMessage(mid, mailbox.lower(), mime)
        return mid

    def folder_named(self, mailbox: str, *path: str) -> str | None:
        """The id of the folder at ``path`` under the mailbox's root, or None."""
        parent = "root"
        for name in path:
            found = [i for i, f in self.folders.items()
                     if f["mailbox"] == mailbox and f["parent"] == parent and f["displayName"] == name]
            if not found:
                return None
            parent = found[0]
        return parent

    def in_folder(self, mailbox: str, *path: str) -> list[MailboxMessage]:
        fid = "inbox" if path == ("inbox",) else self.folder_named(mailbox, *path)
        return [m for m in self.messages.values() if m.mailbox == mailbox and m.folder == fid]

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
        elif len(rest) == 3 and rest[0] == "messages" and rest[2] in ("move", "reply"):
            self._message_action(mailbox, rest[1], rest[2], body)
        elif rest == ["mailFolders"] or (len(rest) == 3 and rest[0] == "mailFolders" and rest[2] == "childFolders"):
            self._create_folder(mailbox, "root" if len(rest) == 1 else rest[1], body)
        else:
            self._error(400, "BadRequest", "Unsupported segment.")

    # -- the mailbox side (outbound's watcher) ------------------------------------------------
    def do_GET(self) -> None:
        parts = self._api()
        if not parts:
            if parts is None:
                self._error(404, "NotFound", "no such endpoint")
            return
        mailbox = self._mailbox(parts)
        if mailbox is None:
            return
        rest = parts[2:]
        query = parse_qs(urlsplit(self.path).query)
        st = self.server.state
        if rest == ["mailFolders", "inbox", "messages"]:
            flt = query.get("$filter", [""])[0]
            if flt not in ("", "isRead eq false"):
                self._error(400, "BadRequest", f"filter not supported here: {flt}")
                return
            top = int(query.get("$top", ["10"])[0])
            with st.lock:
                found = [m.resource() for m in st.messages.values()
                         if m.mailbox == mailbox and m.folder == "inbox" and not (flt and m.is_read)]
            self._send(200, {"value": found[:top]})
        elif len(rest) == 3 and rest[0] == "messages" and rest[2] == "$value":
            m = self._message(mailbox, rest[1])
            if m is not None:
                self._send_bytes(200, m.mime, "text/plain")
        elif len(rest) == 2 and rest[0] == "messages":
            m = self._message(mailbox, rest[1])
            if m is not None:
                self._send(200, m.resource())
        elif rest == ["mailFolders"] or (len(rest) == 3 and rest[0] == "mailFolders" and rest[2] == "childFolders"):
            parent = "root" if len(rest) == 1 else rest[1]
            flt = query.get("$filter", [""])[0]
            m = re.fullmatch(r"displayName eq '([^']*)'", flt)
            with st.lock:
                found = [{"id": i, "displayName": f["displayName"]} for i, f in st.folders.items()
                         if f["mailbox"] == mailbox and f["parent"] == parent
                         and (m is None or f["displayName"] == m.group(1))]
            self._send(200, {"value": found})
        else:
            self._error(400, "BadRequest", "Unsupported segment.")

    def do_PATCH(self) -> None:
        parts = self._api()
        if not parts:
            if parts is None:
                self._error(404, "NotFound", "no such endpoint")
            return
        body = self._body()
        mailbox = self._mailbox(parts)
        if mailbox is None:
            return
        rest = parts[2:]
        if len(rest) == 2 and rest[0] == "messages":
            m = self._message(mailbox, rest[1])
            if m is None:
                return
            change = json.loads(body)
            if "isRead" in change:
                m.is_read = bool(change["isRead"])
            self._send(200, m.resource())
        else:
            self._error(400, "BadRequest", "Unsupported segment.")

    def _message(self, mailbox: str, mid: str) -> MailboxMessage | None:
        m = self.server.state.messages.get(mid)
        if m is None or m.mailbox != mailbox:
            self._error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            return None
        return m

    def _message_action(self, mailbox: str, mid: str, action: str, body: bytes) -> None:
        st = self.server.state
        m = self._message(mailbox, mid)
        if m is None:
            return
        data = json.loads(body or b"{}")
        if action == "reply":
            st.replies.append((mid, str(data.get("comment", ""))))
            self._send(202)
            return
        dest = str(data.get("destinationId", ""))
        if dest not in st.folders and dest != "inbox":
            self._error(404, "ErrorItemNotFound", "The destination folder was not found.")
            return
        with st.lock:
            del st.messages[mid]
            # Graph's default ids change with the folder; ImmutableId ones do not
            if 'IdType="ImmutableId"' not in self.headers.get("Prefer", ""):
                m.id = "AAMkAG" + secrets.token_urlsafe(24) + "="
            m.folder = dest
            st.messages[m.id] = m
            st.moves.append((mid, m.id, dest))
        self._send(201, m.resource())

    def _create_folder(self, mailbox: str, parent: str, body: bytes) -> None:
        st = self.server.state
        name = str(json.loads(body or b"{}").get("displayName", ""))
        if parent != "root" and parent not in st.folders:
            self._error(404, "ErrorItemNotFound", "The parent folder was not found.")
            return
        with st.lock:
            if any(f["mailbox"] == mailbox and f["parent"] == parent and f["displayName"] == name
                   for f in st.folders.values()):
                self._error(409, "ErrorFolderExists", "A folder with the specified name already exists.")
                return
            fid = "AAMkAGF" + secrets.token_urlsafe(16) + "="
            st.folders[fid] = {"mailbox": mailbox, "parent": parent, "displayName": name}
        self._send(201, {"id": fid, "displayName": name})

    def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        st = self.server.state
        with st.lock:
            st.log.append((time.time(), self.command, urlsplit(self.path).path, "Authorization" in self.headers,
                           status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
