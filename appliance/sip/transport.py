"""asyncio glue for the sans-I/O UserAgent: sockets in, `flush()` out, one loop timer.

Like aioquic's asyncio/protocol.py this only moves bytes: every SIP decision lives in UserAgent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypedDict, cast

from appliance.netutil import is_unspecified, route_source
from appliance.sip.errors import LocalProtocolError, SipParseError
from appliance.sip.events import Addr, Event, Local
from appliance.sip.framing import KeepAlive, StreamFramer
from appliance.sip.message import MAX_MESSAGE_SIZE, SipRequest
from appliance.sip.messagelog import MessageLog
from appliance.sip.policy import CallGate, ConnectionLimiter
from appliance.sip.registration import (
    RETRY_INITIAL,
    RETRY_MAX,
    Registration,
    RegistrationSettings,
    RegistrationStatus,
    resolve_local,
)
from appliance.sip.tls import TlsSettings
from appliance.sip.useragent import UserAgent

#: a TLS peer that has not finished its handshake by then is dropped (slow-loris guard)
TLS_HANDSHAKE_TIMEOUT = 10.0
#: a message begun on a stream must be complete within this many seconds (slow-loris guard)
PARTIAL_MESSAGE_TIMEOUT = 30.0
#: bytes we may have queued for a peer that does not read; beyond that the connection is dropped
MAX_WRITE_BUFFER = 256 * 1024
#: how often accepted connections are checked for idleness and stalled messages
SWEEP_INTERVAL = 5.0

log = logging.getLogger("faxbridge.sip.transport")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.local: Local | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # typeshed's BaseProtocol signature; a datagram endpoint is given a DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.local is None or (len(data) <= 4 and not data.strip(b"\r\n")):
            return  # not started yet, or a CRLF keep-alive (no pong on datagrams)
        self.endpoint._received(data, (addr[0], addr[1]), self.local)


class _TcpProtocol(asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened by us; frames the stream and answers pings.

    An accepted connection is first admitted (a peer's address, under the connection limits);
    only then does a TLS listener start its handshake, so strangers cost us no TLS work. After
    that this sees plaintext, so framing, pongs and the "any framing doubt closes the connection"
    rule are the same as TCP's.
    """

    def __init__(
        self, endpoint: SipEndpoint, local: Local, *, accepted: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self.endpoint = endpoint
        self.local = local
        self.accepted = accepted
        self.tls = tls
        self.framer = StreamFramer(MAX_MESSAGE_SIZE)
        self.transport: asyncio.Transport | None = None
        self.remote: Addr = ("", 0)
        self.admitted = False
        self.last_message = 0.0  # loop time of the last complete message (or of the accept)
        self.partial_since: float | None = None  # when the unfinished message in the framer began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # typeshed's BaseProtocol signature; a stream connection is given a Transport
        self.transport = stream = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = (peer[0], peer[1])
        if is_unspecified(self.local.host):  # a wildcard listener: this connection's own address
            self.local = Local(self.local.transport, transport.get_extra_info("sockname")[0], self.local.port)
        self.last_message = self.endpoint._loop.time()
        if self.accepted:
            refusal = self.endpoint._admit(self.remote, self.local)
            if refusal:
                self.endpoint.stats[refusal] += 1
                stream.abort()
                return
            self.admitted = True
            if self.tls is not None:
                stream.pause_reading()
                self.endpoint._spawn(self._start_tls())
                return
        self.endpoint._connections[self.remote] = self

    async def _start_tls(self) -> None:
        raw = self.transport
        assert raw is not None and self.tls is not None
        try:
            self.transport = await self.endpoint._loop.start_tls(
                raw, self, self.tls, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            self.endpoint.stats["tls_handshake_failed"] += 1
            log.info("SIP: TLS handshake with %s failed: %s", self.remote, exc)
            raw.abort()
            self._release()
            return
        self.last_message = self.endpoint._loop.time()
        self.endpoint._connections[self.remote] = self

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.framer.feed(data)
        try:
            for item in self.framer:
                if isinstance(item, KeepAlive):
                    self._write(b"\r\n")
                else:
                    self.last_message = self.endpoint._loop.time()
                    self.endpoint._received(item, self.remote, self.local)
        except SipParseError as exc:
            log.info("SIP: closing %s connection from %s: %s", self.local.transport.upper(), self.remote, exc.reason)
            self.endpoint.ua.stats["closed_streams"] += 1
            self.endpoint.stats["closed_streams"] += 1
            self.transport.abort()
            return
        if self.framer.buffered:
            if self.partial_since is None:
                self.partial_since = self.endpoint._loop.time()
        else:
            self.partial_since = None

    def _write(self, data: bytes) -> None:
        """Queue bytes; a peer that stops reading while we queue more than MAX_WRITE_BUFFER is cut."""
        assert self.transport is not None
        if self.transport.get_write_buffer_size() + len(data) > MAX_WRITE_BUFFER:
            self.endpoint.stats["write_buffer_full"] += 1
            log.info("SIP: %s does not read what we send: connection dropped", self.remote)
            self.transport.abort()
            return
        self.transport.write(data)

    def expired(self, now: float) -> str:
        """Why the sweep should close this accepted connection now ("" = keep it)."""
        if self.partial_since is not None and now - self.partial_since > PARTIAL_MESSAGE_TIMEOUT:
            return "stalled_message"
        if now - self.last_message > self.endpoint.idle_timeout and not self.endpoint.ua_calls_via(self.remote):
            return "idle_connection"
        return ""

    def _release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.endpoint.conn_limiter.release(self.remote[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if self.endpoint._connections.get(self.remote) is self:
            del self.endpoint._connections[self.remote]
        self._release()


class SipEndpoint:
    """Owns a UserAgent, its listeners and connections, and feeds its events to `events`.

    `tls` (certificate, key, CA) enables "tls" listeners and outgoing TLS; `gate` (policy.CallGate)
    sees every message before the UA and may answer or drop it (who may call, floods);
    `connections` limits accepted TCP/TLS connections, which close after `idle_timeout` seconds
    without a message while no call uses them.
    """

    def __init__(
        self,
        ua: UserAgent | None = None,
        *,
        tls: TlsSettings | None = None,
        gate: CallGate | None = None,
        connections: ConnectionLimiter | None = None,
        idle_timeout: float = 120.0,
    ) -> None:
        self.ua = ua or UserAgent()
        self.tls = tls
        self._server_ssl: ssl.SSLContext | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self.gate = gate
        if gate is not None:
            gate.state = self.ua
        self.conn_limiter = connections or ConnectionLimiter()
        self.idle_timeout = idle_timeout
        #: what the transport refused or cut (connections, streams); the gate counts messages
        self.stats: Counter[str] = Counter()
        self._sweep: asyncio.TimerHandle | None = None
        self.registrations: list[Registration] = []
        self._reg_timer: asyncio.TimerHandle | None = None
        #: TLS server names to verify, by address (set when a name was resolved for a registrar)
        self.tls_names: dict[Addr, str] = {}
        self.locals: list[Local] = []
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._started_loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._udp: dict[Local, asyncio.DatagramTransport] = {}
        self._udp_by_port: dict[int, asyncio.DatagramTransport] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: dict[Addr, _TcpProtocol] = {}
        self._pending: dict[Addr, list[bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        #: each admitted call's messages, for its diagnostics (taken by the daemon when it ends)
        self.messages = MessageLog()

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        """The running loop start() was called in (the clock of every SIP timer)."""
        if self._started_loop is None:
            raise LocalProtocolError("the SIP endpoint is not started")
        return self._started_loop

    async def start(self, listeners: Iterable[tuple[str, str, int]]) -> None:
        """Bind ("udp"|"tcp", host, port) listeners; port 0 picks a free port (see `locals`)."""
        self._started_loop = asyncio.get_running_loop()
        for kind, host, port in listeners:
            if kind == "udp":
                transport, protocol = await self._loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, port)
                )
                local = Local("udp", host, transport.get_extra_info("sockname")[1])
                protocol.local = local
                self._udp[local] = transport
                self._udp_by_port[local.port] = transport
            elif kind in ("tcp", "tls"):
                holder: list[Local] = []
                ctx = self._tls_server() if kind == "tls" else None  # the handshake starts once admitted
                server = await self._loop.create_server(self._acceptor(holder, ctx), host, port)
                local = Local(kind, host, server.sockets[0].getsockname()[1])
                holder.append(local)
                self._servers.append(server)
                if self._sweep is None:
                    self._sweep = self._loop.call_later(SWEEP_INTERVAL, self._sweep_connections)
            elif kind == "tls-client":
                # outgoing TLS only (a test-fax sender has no certificate of its own): no listener;
                # everything in the call, its BYE included, travels on the connection we open, so the
                # port in Via/Contact is only nominal (the TLS default)
                local = Local("tls", host, port or 5061)
            else:
                raise LocalProtocolError(f"unknown SIP transport {kind!r}")
            self.locals.append(local)

    def _acceptor(self, holder: list[Local], tls: ssl.SSLContext | None) -> Callable[[], _TcpProtocol]:
        """The protocol factory of one stream listener, bound to its own `holder` (its Local, once
        the port is known) and TLS context: a lambda in start()'s loop would see the last
        listener's."""
        return lambda: _TcpProtocol(self, holder[0], accepted=True, tls=tls)

    def _tls_server(self) -> ssl.SSLContext:
        if self.tls is None:
            raise LocalProtocolError("a tls listener needs TLS settings (sip.tls_cert, sip.tls_key)")
        if self._server_ssl is None:
            self._server_ssl = self.tls.server_context()
        return self._server_ssl

    def _tls_client(self) -> ssl.SSLContext:
        if self._client_ssl is None:
            self._client_ssl = (self.tls or TlsSettings()).client_context()
        return self._client_ssl

    async def close(self) -> None:
        if self._sweep:
            self._sweep.cancel()
            self._sweep = None
        if self._timer:
            self._timer.cancel()
        if self._reg_timer:
            self._reg_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for transport in self._udp.values():
            transport.close()
        for conn in list(self._connections.values()):
            if conn.transport:
                conn.transport.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._udp.clear()
        self._udp_by_port.clear()

    # --- moving bytes -------------------------------------------------------------------------

    def _received(self, data: bytes, remote: Addr, local: Local) -> None:
        if is_unspecified(local.host):
            # a wildcard UDP listener: Contact and SDP need the address the peer reaches us on
            local = Local(local.transport, route_source(remote[0]), local.port)
        now = self._loop.time()
        if self.gate is None:
            self.ua.receive(data, remote, local, now)
        else:
            verdict = self.gate.check(data, remote, local, now)
            for reply, dest in verdict.replies:  # answered or dropped before the UA saw it
                self._send(reply, dest, local)
            if verdict.message is None:
                return
            msg = verdict.message
            if verdict.admission is not None and isinstance(msg, SipRequest) and msg.method == "INVITE":
                self.messages.follow(msg.call_id)
            self.messages.received(msg.call_id, data, remote, local, time.time())
            self.ua.receive_message(msg, remote, local, now, verdict.admission)
        self.flush()

    def _admit(self, remote: Addr, local: Local) -> str:
        """Why an accepted connection is refused at once ("" = admitted): a source that is no
        peer (it could not place a call anyway), or the connection limits."""
        if (
            self.gate is not None
            and self.gate.peers.match(remote[0], local.transport) is None
            and not self.gate.self_test.pending(remote[0], local, self._loop.time())
        ):
            return "connections_unknown"
        if not self.conn_limiter.admit(remote[0]):
            return "connections_over_limit"
        return ""

    def ua_calls_via(self, remote: Addr) -> bool:
        calls_via = getattr(self.ua, "calls_via", None)
        return bool(calls_via(remote)) if calls_via is not None else False

    def _sweep_connections(self) -> None:
        """Close accepted connections that stalled in a message or stayed idle without a call."""
        now = self._loop.time()
        for conn in list(self._connections.values()):
            why = conn.expired(now) if conn.accepted else ""
            if why and conn.transport is not None:
                self.stats[why] += 1
                log.info(
                    "SIP: closing %s connection from %s: %s",
                    conn.local.transport.upper(),
                    conn.remote,
                    why.replace("_", " "),
                )
                conn.transport.abort()
        self._sweep = self._loop.call_later(SWEEP_INTERVAL, self._sweep_connections)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def security_stats(self) -> dict[str, int]:
        """Every refusal so far, by reason: the gate's, the transport's and the UA's."""
        out: Counter[str] = Counter(self.stats)
        out.update(self.conn_limiter.stats)
        if self.gate is not None:
            out.update(self.gate.status()["refused"])
        out.update(self.ua.status()["errors"])
        return dict(out)

    def connection_count(self) -> int:
        return len(self._connections)

    def _send(self, data: bytes, dest: Addr, local: Local) -> None:
        if self.messages.following:
            self.messages.sent(data, dest, local, time.time())
        if local.transport == "udp":
            transport = self._udp.get(local) or self._udp_by_port.get(local.port)
            if transport is not None:
                transport.sendto(data, dest)
        elif dest in self._connections and self._connections[dest].transport is not None:
            self._connections[dest]._write(data)
        else:
            first = dest not in self._pending
            self._pending.setdefault(dest, []).append(data)
            if first:
                self._spawn(self._connect(dest, local))

    def flush(self) -> None:
        """Send what the core produced, hand over its events and re-arm the timer."""
        self._drive_registrations()
        for data, dest, local in self.ua.datagrams_to_send():
            self._send(data, dest, local)
        while (event := self.ua.next_event()) is not None:
            self.events.put_nowait(event)
        if self._timer:
            self._timer.cancel()
            self._timer = None
        deadline = self.ua.get_timer()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.ua.handle_timer(self._loop.time())
        self.flush()

    async def _connect(self, dest: Addr, local: Local) -> None:
        """Open an outgoing TCP/TLS connection; lost messages are left to the transactions' timers.

        TLS verifies the server certificate against sip.tls_ca or the system store, for the name
        we resolved (tls_names) or else the IP address itself."""
        tls = local.transport == "tls"
        try:
            transport, _ = await self._loop.create_connection(
                lambda: _TcpProtocol(self, local),
                dest[0],
                dest[1],
                ssl=self._tls_client() if tls else None,
                server_hostname=self.tls_names.get(dest, dest[0]) if tls else None,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if tls else None,
            )
        except (TimeoutError, OSError) as exc:
            log.warning("SIP: cannot connect to %s: %s", dest, exc)
            self._pending.pop(dest, None)
            return
        for data in self._pending.pop(dest, []):
            transport.write(data)

    # --- application actions ------------------------------------------------------------------

    def _local(self, transport: str) -> Local:
        for local in self.locals:
            if local.transport == transport:
                return local
        raise LocalProtocolError(f"no {transport} listener")

    def send_provisional(self, call_id: str, status: int, sdp: str | None = None) -> None:
        self.ua.send_provisional(call_id, status, self._loop.time(), sdp)
        self.flush()

    def answer_call(self, call_id: str, sdp: str) -> None:
        self.ua.answer_call(call_id, sdp, self._loop.time())
        self.flush()

    def reject_call(
        self, call_id: str, status: int, reason: str, extra_headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.ua.reject_call(call_id, status, reason, self._loop.time(), extra_headers)
        self.flush()

    def hangup(self, call_id: str) -> None:
        self.ua.hangup(call_id, self._loop.time())
        self.flush()

    def invite(
        self,
        target: str,
        *,
        from_uri: str,
        sdp: str,
        remote: Addr,
        transport: str = "udp",
        from_display: str = "",
        headers: Iterable[tuple[str, str]] = (),
    ) -> str:
        call_id = self.ua.invite(
            target,
            from_uri=from_uri,
            sdp=sdp,
            local=self._local(transport),
            remote=remote,
            now=self._loop.time(),
            from_display=from_display,
            headers=headers,
        )
        self.flush()
        return call_id

    def cancel(self, call_id: str) -> None:
        self.ua.cancel(call_id, self._loop.time())
        self.flush()

    def answer_reinvite(self, call_id: str, sdp: str) -> None:
        self.ua.answer_reinvite(call_id, sdp, self._loop.time())
        self.flush()

    def reject_reinvite(
        self, call_id: str, status: int, reason: str, extra_headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.ua.reject_reinvite(call_id, status, reason, self._loop.time(), extra_headers)
        self.flush()

    def reinvite(self, call_id: str, sdp: str) -> None:
        self.ua.reinvite(call_id, sdp, self._loop.time())
        self.flush()

    # --- registrations ------------------------------------------------------------------------

    async def add_registration(
        self,
        reg_cfg: RegistrationSettings,
        *,
        rng: random.Random | None = None,
        retry_initial: float = RETRY_INITIAL,
        retry_max: float = RETRY_MAX,
    ) -> Registration:
        """Resolve the first hop (A/AAAA only: no NAPTR/SRV), pick our listener and start REGISTERing.

        The keywords go to Registration; call after start()."""
        probe = Registration(reg_cfg, Local("udp", "0.0.0.0", 0))
        host, port = probe.next_hop
        infos = await self._loop.getaddrinfo(host, port, type=0, proto=0)
        ip = str(infos[0][4][0])  # an AF_INET/AF_INET6 sockaddr: (host, port, ...)
        local = resolve_local(self.locals, probe.transport, route_source, ip)
        reg = Registration(
            reg_cfg,
            local,
            user_agent=self.ua.user_agent,
            rng=rng,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        reg.remote = (ip, port)
        if ip != host:
            self.tls_names[(ip, port)] = host
        self.registrations.append(reg)
        reg.start(self._loop.time())
        self.flush()
        return reg

    async def unregister_all(self, timeout: float = 5.0) -> None:
        """Send Expires: 0 for every binding and wait (at most `timeout`) for the answers."""
        now = self._loop.time()
        for reg in self.registrations:
            reg.stop(now)
        self.flush()
        deadline = now + timeout
        # polled: a sans-I/O Registration tells nobody when it is done (and this runs at shutdown only)
        while not all(r.done for r in self.registrations) and self._loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def registration_status(self) -> list[RegistrationStatus]:
        """For the status page; expires_at as wall-clock time (time.time())."""
        offset = time.time() - self._loop.time()
        out = []
        for reg in self.registrations:
            st = reg.status()
            if st.expires_at is not None:
                st.expires_at += offset
            out.append(st)
        return out

    def _drive_registrations(self) -> None:
        if not self.registrations:
            return
        now = self._loop.time()
        for reg in self.registrations:
            for req in reg.take_requests():
                assert reg.remote is not None, "add_registration resolves the next hop before it starts one"
                self.ua.send_request(req, reg.local, reg.remote, now, tx_class=reg.transaction_factory)
        if self._reg_timer:
            self._reg_timer.cancel()
            self._reg_timer = None
        deadline = min((t for r in self.registrations if (t := r.get_timer()) is not None), default=None)
        if deadline is not None:
            self._reg_timer = self._loop.call_at(deadline, self._on_reg_timer)

    def _on_reg_timer(self) -> None:
        self._reg_timer = None
        now = self._loop.time()
        for reg in self.registrations:
            timer = reg.get_timer()
            if timer is not None and timer <= now:
                reg.handle_timer(now)
        self.flush()

    @property
    def started(self) -> bool:
        """start() has run: listeners are bound and registrations can be driven."""
        return self._started_loop is not None

    def status(self) -> SipStatus:
        """For the status page: listeners, registrations (wall-clock expiry), refusals, connections."""
        return SipStatus(
            listeners=[ListenerStatus(transport=l.transport, host=l.host, port=l.port) for l in self.locals],
            registrations=self.registration_status() if self.started else [],
            refused=self.security_stats(),
            connections=self.connection_count(),
        )


class ListenerStatus(TypedDict):
    transport: str
    host: str
    port: int


class SipStatus(TypedDict):
    listeners: list[ListenerStatus]
    registrations: list[RegistrationStatus]
    refused: dict[str, int]  # security_stats(): every refusal so far, by reason
    connections: int  # TCP/TLS connections open now
