"""Mail to fax: the box's own SMTP listener (aiosmtpd on the daemon's event loop).

Exchange on premises routes the fax domain (``outbound.domain``) to the box with a send
connector; mail to ``<number>@<domain>`` becomes a fax to that number. Who may submit:

* a client that authenticated with SMTP AUTH (PLAIN or LOGIN, offered only after STARTTLS with
  the box's certificate: the web UI's, ``web.cert_file`` or the generated one) as the web UI's
  user ``admin`` with its password; failed attempts back off per address as the web login does;
* a connector whose address is in ``outbound.trusted_relays`` (Exchange's send connector), with
  or without TLS and AUTH;
* and, in both cases, when ``outbound.allowed_senders`` lists globs, only senders that match:
  the envelope sender and the From header both.

Everyone else gets 530 at MAIL FROM; a recipient outside the fax domain 550 5.7.1 (never a
relay). One number per mail transaction: a second, different number is answered 452 4.5.3,
which every MTA (Exchange, Postfix) takes as "send the remaining recipients in another
transaction", so each fax has its own DATA reply.

The report goes to the envelope sender (MAIL FROM): the address the authenticated session or
the connector vouched for, and where the MTA sends its non-delivery reports too. The From
header may differ (send-as, delegates) but must pass ``allowed_senders`` as well.

Refusals are SMTP replies: a mail that cannot be faxed (``MailRefused``) or that ``submit``
refuses (any ``ValueError``: a forbidden number, a render refusal) is answered 550 with the
reason in plain words; Exchange turns a 550 into a non-delivery report to the user, which is
how the user is told. Temporary trouble (the queue's disk, any other exception) is 451: the MTA
tries again later. Bounds per connection: the SIZE limit (advertised and enforced), an idle
timeout, a whole-session time limit, per-command counts, concurrent connections in all and per
address.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from appliance.config import Config, parse_hostport
from appliance.outbound.mailparse import (
    MailFax,
    MailRefused,
    number_from_address,
    parse_message,
    raw_limit,
    reply_text,
    sender_allowed,
)
from appliance.tlskeys import load_chain

log = logging.getLogger("faxbridge.outbound.mailin")

#: what the listener hands an accepted mail to: (the fax to one number, the report address) ->
#: the queued job's uid; ValueError = refused (550 with its text), anything else = 451
Submit = Callable[[MailFax, str], Awaitable[str]]
#: (user, password) -> whether they are the web UI's; blocking (argon2): runs in an executor
PasswordCheck = Callable[[str, str], bool]

#: the web UI's one user: SMTP AUTH takes this name with the web password
WEB_USER = "admin"
#: a connection idle this long is closed; a whole session may last at most SESSION_SECONDS
IDLE_SECONDS = 60.0
SESSION_SECONDS = 15 * 60.0
#: connections at once, in all and from one address
MAX_CONNECTIONS = 32
MAX_PER_ADDRESS = 8
#: commands per connection (MAIL, RCPT, DATA and AUTH have their own smaller budgets)
COMMAND_LIMITS = {"*": 60, "MAIL": 20, "RCPT": 40, "DATA": 20, "AUTH": 3, "STARTTLS": 1, "EHLO": 4, "HELO": 4}
#: failed AUTH per address: this many are free, then each further one waits twice as long
FREE_AUTH_FAILURES = 3
MAX_AUTH_DELAY = 15 * 60.0


def stage_attachments(fax: MailFax, directory: Path) -> list[tuple[str, Path]]:
    """Write a fax's attachments into ``directory`` (made, 0700) for the renderer, in order:
    (the cleaned name to show, the file). The files are named by position and type only, so
    nothing the sender wrote becomes part of a path."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = []
    for i, att in enumerate(fax.attachments, 1):
        path = directory / f"{i:03d}{_SUFFIX.get(att.content_type, '.bin')}"
        path.write_bytes(att.data)
        out.append((att.name, path))
    return out


_SUFFIX = {
    "application/pdf": ".pdf",
    "image/tiff": ".tif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "text/plain": ".txt",
}


def box_tls_context(config: Config) -> ssl.SSLContext:
    """STARTTLS with the box's certificate, as the web UI serves it: ``web.cert_file`` when set,
    else an uploaded one, else the one generated on first start (made now if missing)."""
    from appliance.web.tls import active_paths

    if config.web.cert_file:
        cert, key = config.path(config.web.cert_file), config.path(config.web.key_file)
    else:
        host, _ = parse_hostport(config.web.listen, 8080)
        cert, key = active_paths(config.path(config.web.state_dir), host, config.system.hostname)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(ctx, cert, key)
    return ctx


def web_password_check(state_dir: Path) -> PasswordCheck:
    """The web UI's own password store (web/auth.py's AdminStore: argon2, its own bound on
    concurrent checks). Importing it loads Flask (~0.1 s, once, only when a listener starts)."""
    from appliance.web.auth import AdminStore, Busy

    store = AdminStore(state_dir)

    def check(user: str, password: str) -> bool:
        if user.lower() != WEB_USER:
            return False
        try:
            return store.verify(password)
        except Busy:
            return False

    return check


def _networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            log.warning("outbound.trusted_relays: %r is not an address or network; ignored", item)
    return out


def _address_of(peer: Any) -> str:
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass
class _Backoff:
    failures: int = 0
    last: float = 0.0


@dataclass
class ListenerStats:
    """What the status page and the log show of the listener."""

    connections: int = 0
    accepted: int = 0
    refused: int = 0
    temporary: int = 0
    auth_failed: int = 0
    last_refusal: str = ""
    history: list[str] = field(default_factory=list)


class _Handler:
    """aiosmtpd's hooks: who may send, which recipients, and the DATA decision."""

    def __init__(self, listener: MailInListener) -> None:
        self.listener = listener

    async def handle_MAIL(
        self, server: _Protocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        lst = self.listener
        who = server.identity()
        if who is None:
            if not server.tls_active():
                return "530 5.7.0 Must issue a STARTTLS command first, then AUTH"
            return "530 5.7.0 Authentication required"
        if not address or address == "<>":  # the null sender: a bounce or delivery report
            return "550 5.7.1 A delivery report cannot be faxed"
        if not sender_allowed(address, lst.config.outbound.allowed_senders):
            lst.refused(f"sender {address} not in outbound.allowed_senders")
            return f"550 5.7.1 Sender {reply_text(address, 200)} may not send faxes through this box"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: _Protocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        domain = self.listener.config.outbound.domain
        try:
            number = number_from_address(address, domain) if domain else ""
        except MailRefused as e:
            return f"550 5.1.1 {reply_text(str(e))}"
        except ValueError:
            number = ""
        if not number:
            return f"550 5.7.1 Relaying denied: this box takes only mail to <number>@{reply_text(domain or '-', 100)}"
        if envelope.rcpt_tos:
            if any(number_from_address(a, domain) == number for a in envelope.rcpt_tos):
                return "250 2.1.5 OK (same number)"
            return "452 4.5.3 One fax number per message: the others go in the next message"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _Protocol, session: Session, envelope: Envelope) -> str:
        lst = self.listener
        who = server.identity() or "?"
        raw = envelope.original_content or b""
        sender = envelope.mail_from or ""
        domain = lst.config.outbound.domain
        try:
            number = number_from_address(envelope.rcpt_tos[0], domain)
            # off the event loop (a large message takes a while, and the loop is the media clock), and
            # one at a time (a 20 MB fax's mail needs ~130 MB while it is parsed)
            async with lst.parsing:
                parsed = await asyncio.to_thread(parse_message, raw, max_bytes=lst.config.outbound.max_bytes)
            globs = lst.config.outbound.allowed_senders
            if globs and not sender_allowed(parsed.from_header, globs):
                raise MailRefused(f"the From address {parsed.from_header or '(none)'} may not send faxes")
        except (MailRefused, IndexError) as e:
            lst.refused(f"{sender} to {envelope.rcpt_tos}: {e}")
            return f"550 5.6.0 Not faxed: {reply_text(str(e))}"
        fax = parsed.fax((number,), sender, source="mail", auth=who, message_id=parsed.message_id)
        try:
            uid = await lst.submit(fax, sender)
        except ValueError as e:  # the number, route or document refused: for good
            lst.refused(f"{sender} to {number}: {e}")
            return f"550 5.7.0 Not faxed: {reply_text(str(e))}"
        except Exception as e:  # noqa: BLE001 - any other trouble is temporary: the MTA tries again
            lst.stats.temporary += 1
            log.warning(
                "mail from %s to %s: could not queue it (%s: %s); answered 451", sender, number, type(e).__name__, e
            )
            return "451 4.3.0 The fax could not be queued just now; try again later"
        lst.stats.accepted += 1
        log.info("mail from %s (%s) queued as fax %s to %s", sender, who, uid, number)
        return f"250 2.0.0 Queued as fax job {reply_text(uid, 64)}"


class _Protocol(SMTP):
    """aiosmtpd's SMTP with the box's bounds: connections in all and per address, a whole
    session limit, and AUTH checked off the event loop with a back-off per address."""

    def __init__(self, listener: MailInListener, **kwargs: Any) -> None:
        super().__init__(_Handler(listener), **kwargs)
        self.listener = listener
        self._deadline: asyncio.TimerHandle | None = None
        self._peer_address = ""
        self._counted = False

    # -- who is this ------------------------------------------------------------------------
    def tls_active(self) -> bool:
        return self._tls_protocol is not None

    def identity(self) -> str | None:
        """How the client is allowed in ("user admin", "relay 10.0.0.5"), or None."""
        if self.session is not None and self.session.authenticated:
            return f"user {self.session.auth_data}"
        if self.listener.trusted(self._peer_address):
            return f"relay {self._peer_address}"
        return None

    # -- connection bounds --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = not self._counted and self._original_transport is None
        if first:
            self._peer_address = _address_of(transport.get_extra_info("peername"))
            refusal = self.listener.admit(self)
            if refusal:
                transport.write(f"421 4.7.0 {refusal}\r\n".encode())  # type: ignore[attr-defined]  # BaseTransport: asyncio hands a stream transport here
                transport.close()
                return
            self._counted = True
            self._deadline = self.loop.call_later(SESSION_SECONDS, self._session_over)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self.listener.release(self)
            self._counted = False
            if self._deadline is not None:
                self._deadline.cancel()
        if self.session is None:
            return
        super().connection_lost(error)

    def _session_over(self) -> None:
        log.info("smtp %s: session longer than %.0f s, closed", self._peer_address, SESSION_SECONDS)
        if self.transport is not None:
            self.transport.close()

    # -- AUTH: PLAIN and LOGIN, checked in an executor ------------------------------------------
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = blob.split(b"\x00")
        if len(fields) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._check(fields[1], fields[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            user = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(user, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                user = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check(user, password)

    async def _check(self, user_b: bytes, password_b: bytes) -> AuthResult:
        lst = self.listener
        wait = lst.auth_wait(self._peer_address)
        if wait > 0:
            return AuthResult(
                success=False,
                handled=False,
                message=f"454 4.7.0 Too many failed logins; try again in {int(wait) + 1} s",
            )
        try:
            user, password = user_b.decode("utf-8"), password_b.decode("utf-8")
        except UnicodeDecodeError:
            user, password = "", ""
        ok = bool(user) and await asyncio.get_running_loop().run_in_executor(None, lst.check_password, user, password)
        if not ok:
            lst.auth_failed(self._peer_address)
            log.warning("smtp %s: AUTH failed for %r", self._peer_address, reply_text(user, 64))
            return AuthResult(success=False, handled=False)
        lst.auth_succeeded(self._peer_address)
        return AuthResult(success=True, auth_data=user.lower())


class MailInListener:
    """The SMTP listener(s) of ``outbound.smtp_listen``, on the running event loop.

    ``submit(fax, report_address)`` queues one fax (``fax.numbers`` has exactly one number) and
    returns the job's uid; ``fax.meta`` carries ``source="mail"``, ``auth`` (how the sender got
    in) and ``message_id``. ``tls_context`` and ``check_password`` default to the box's
    certificate and the web UI's password store."""

    def __init__(
        self,
        config: Config,
        submit: Submit,
        *,
        tls_context: ssl.SSLContext | None = None,
        check_password: PasswordCheck | None = None,
        hostname: str = "",
    ) -> None:
        self.config = config
        self.submit = submit
        self.tls_context = tls_context if tls_context is not None else box_tls_context(config)
        self.check_password = check_password or web_password_check(config.path(config.web.state_dir))
        self.hostname = hostname or config.system.hostname or "faxbridge"
        self.relays = _networks(config.outbound.trusted_relays)
        self.stats = ListenerStats()
        self.parsing = asyncio.Semaphore(1)
        self._servers: list[asyncio.Server] = []
        self._open: set[_Protocol] = set()
        self._backoff: dict[str, _Backoff] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> list[tuple[str, int]]:
        """Listen on every ``outbound.smtp_listen`` address; returns what is bound (port 0 gets one)."""
        loop = asyncio.get_running_loop()
        bound: list[tuple[str, int]] = []
        for item in self.config.outbound.smtp_listen:
            host, port = parse_hostport(item, 25)
            server = await loop.create_server(self._protocol, host=host, port=port)
            self._servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                bound.append((str(name[0]), int(name[1])))
        log.info(
            "mail to fax: listening on %s for <number>@%s",
            ", ".join(f"{h}:{p}" for h, p in bound),
            self.config.outbound.domain,
        )
        return bound

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for proto in list(self._open):
            if proto.transport is not None:
                proto.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _protocol(self) -> _Protocol:
        return _Protocol(
            self,
            hostname=self.hostname,
            ident="Faxbridge mail to fax",
            tls_context=self.tls_context,
            data_size_limit=raw_limit(self.config.outbound.max_bytes),
            auth_require_tls=True,
            auth_exclude_mechanism=["CRAM-MD5"],
            timeout=IDLE_SECONDS,
            command_call_limit=COMMAND_LIMITS,
            loop=asyncio.get_running_loop(),
        )

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "listening": [
                f"{sock.getsockname()[0]}:{sock.getsockname()[1]}" for srv in self._servers for sock in srv.sockets
            ],
            "connections": len(self._open),
            "accepted": s.accepted,
            "refused": s.refused,
            "temporary": s.temporary,
            "auth_failed": s.auth_failed,
            "last_refusal": s.last_refusal,
        }

    # -- decisions the protocol asks for -------------------------------------------------------
    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.relays)

    def admit(self, proto: _Protocol) -> str:
        """ "" to serve a new connection, else why not (answered 421)."""
        if len(self._open) >= MAX_CONNECTIONS:
            return "Too many connections; try again later"
        if sum(1 for p in self._open if p._peer_address == proto._peer_address) >= MAX_PER_ADDRESS:
            return "Too many connections from your address; try again later"
        self._open.add(proto)
        self.stats.connections += 1
        return ""

    def release(self, proto: _Protocol) -> None:
        self._open.discard(proto)

    def refused(self, why: str) -> None:
        self.stats.refused += 1
        self.stats.last_refusal = why[:300]
        log.info("mail to fax refused: %s", why)

    def auth_wait(self, address: str, now: float | None = None) -> float:
        rec = self._backoff.get(address)
        if rec is None or rec.failures < FREE_AUTH_FAILURES:
            return 0.0
        delay = min(MAX_AUTH_DELAY, 2.0 ** min(rec.failures - FREE_AUTH_FAILURES, 20))
        now = time.monotonic() if now is None else now
        return max(0.0, rec.last + delay - now)

    def auth_failed(self, address: str) -> None:
        self.stats.auth_failed += 1
        rec = self._backoff.pop(address, None) or _Backoff()
        rec.failures += 1
        rec.last = time.monotonic()
        self._backoff[address] = rec
        while len(self._backoff) > 4096:  # the least recently failed go first
            del self._backoff[next(iter(self._backoff))]

    def auth_succeeded(self, address: str) -> None:
        self._backoff.pop(address, None)
