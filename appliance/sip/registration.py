"""Keeping one account registered at a PBX (RFC 3261 §10), sans-I/O.

`Registration` decides what to send and when; it never touches a socket or a clock. The driver
(SipEndpoint) sends `take_requests()` through `UserAgent.send_request` with `transaction_factory`
(so the UA's non-INVITE client transaction does retransmissions and Timer F), feeds final
responses or timeouts to `on_response`, and calls `handle_timer(now)` at `get_timer()`.

Behaviour: REGISTER with Contact and Expires; a 401/407 is answered once with digest credentials
(a new CSeq; again only if the server says the nonce was stale); 423 retries with Min-Expires;
a 2xx schedules the refresh at a random 50-90% of the granted time; anything else, or silence,
retries with exponential backoff (jittered). `stop` unregisters with Expires: 0.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from appliance.protocol import Transitions
from appliance.sip.digest import DigestClient, parse_challenges
from appliance.sip.errors import LocalProtocolError, SipParseError
from appliance.sip.events import Addr, Local
from appliance.sip.message import SipRequest, SipResponse
from appliance.sip.transaction import DEFAULT_TIMERS, NonInviteClientTransaction, Send, TimerConfig
from appliance.sip.uri import SipUri, format_host, host_address, parse_name_addr
from appliance.strictnum import is_uint

log = logging.getLogger("faxbridge.sip.registration")


class RegState(StrEnum):
    IDLE = "idle"  # not started
    REGISTERING = "registering"  # REGISTER out, no binding yet
    REGISTERED = "registered"  # a binding; refreshed before it lapses
    REFRESHING = "refreshing"  # REGISTER out while a binding stands
    FAILED = "failed"  # the last REGISTER failed: retried after a backoff
    UNREGISTERING = "unregistering"  # Expires: 0 out
    STOPPED = "stopped"  # unregistered (or never registered) and idle


#: every change of a registration's state; another is our bug (LocalProtocolError)
REG_STATES = Transitions(
    "registration",
    {
        RegState.IDLE: (RegState.REGISTERING, RegState.STOPPED),
        RegState.REGISTERING: (RegState.REGISTERED, RegState.FAILED, RegState.UNREGISTERING),
        RegState.REFRESHING: (RegState.REGISTERED, RegState.FAILED, RegState.UNREGISTERING),
        RegState.REGISTERED: (RegState.REFRESHING, RegState.REGISTERING, RegState.UNREGISTERING, RegState.STOPPED),
        RegState.FAILED: (RegState.REGISTERING, RegState.REFRESHING, RegState.UNREGISTERING, RegState.STOPPED),
        RegState.UNREGISTERING: (RegState.UNREGISTERING, RegState.STOPPED),
        RegState.STOPPED: (RegState.REGISTERING, RegState.STOPPED),
    },
    error=LocalProtocolError,
)

OnResponse = Callable[[SipResponse | None, float], None]

#: seconds before the first retry of a failed REGISTER, and the most the backoff grows to
RETRY_INITIAL = 30.0
RETRY_MAX = 1800.0


class RegistrationSettings(Protocol):
    """One account to keep registered (a [[sip.registrations]] entry: the application's config
    passes its own dataclass)."""

    @property
    def name(self) -> str: ...  # for logs and the status page ("" = the AoR)
    @property
    def registrar(self) -> str: ...  # a sip: URI, e.g. "sip:pbx.example:5060;transport=tcp"
    @property
    def user(self) -> str: ...
    @property
    def auth_user(self) -> str: ...  # "" = user
    @property
    def password(self) -> str: ...
    @property
    def domain(self) -> str: ...  # the AoR's host when not the registrar's
    @property
    def expires(self) -> int: ...
    @property
    def outbound_proxy(self) -> str: ...  # "" = send to the registrar itself
    @property
    def contact_user(self) -> str: ...  # "" = user


class ReportingTransaction(NonInviteClientTransaction):
    """A non-INVITE client transaction that tells its owner the final outcome (None = timeout)."""

    def __init__(
        self,
        request: SipRequest,
        send: Send,
        reliable: bool,
        now: float,
        config: TimerConfig = DEFAULT_TIMERS,
        *,
        on_response: OnResponse,
    ) -> None:
        super().__init__(request, send, reliable, now, config)
        self.on_response = on_response

    def receive_response(self, response: SipResponse, now: float) -> bool:
        passed = super().receive_response(response, now)
        if passed and response.status >= 200:
            self.on_response(response, now)
        return passed

    def _on_timer_F(self, now: float) -> None:
        super()._on_timer_F(now)
        self.on_response(None, now)


@dataclass
class RegistrationStatus:
    """For the status page; expires_at is in the driver's clock (SipEndpoint converts to wall time)."""

    name: str
    aor: str
    state: RegState
    registered: bool
    expires_at: float | None
    last_error: str


class Registration:
    """One [[sip.registrations]] entry: idle -> registering -> registered (-> refreshing) ...;
    stop() -> unregistering -> stopped."""

    def __init__(
        self,
        cfg: RegistrationSettings,
        local: Local,
        *,
        user_agent: str = "Faxbridge/0.1",
        rng: random.Random | None = None,
        retry_initial: float = RETRY_INITIAL,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.cfg = cfg
        self.local = local
        self.user_agent = user_agent
        self.rng = rng or random.Random()
        self.retry_initial, self.retry_max = retry_initial, retry_max
        registrar = SipUri.parse(cfg.registrar)
        self.transport = registrar.transport
        self.request_uri = str(
            SipUri(
                registrar.scheme,
                None,
                registrar.host,
                registrar.port,
                {k: v for k, v in registrar.params.items() if k == "transport"},
            )
        )
        self.aor = f"sip:{cfg.user}@{cfg.domain or registrar.host}"
        self.name = cfg.name or self.aor
        first_hop = SipUri.parse(cfg.outbound_proxy) if cfg.outbound_proxy else registrar
        #: where to send: (host, port); the host may be a name for the driver to resolve
        self.next_hop = (host_address(first_hop.host), first_hop.port or (5061 if self.transport == "tls" else 5060))
        self.route = f"<{cfg.outbound_proxy};lr>" if cfg.outbound_proxy else ""
        self.digest = DigestClient(cfg.auth_user or cfg.user, cfg.password)
        self.call_id = f"{self.rng.getrandbits(96):024x}@faxbridge"
        self.from_tag = f"{self.rng.getrandbits(48):012x}"
        self.cseq = self.rng.randrange(1, 10000)
        self.expires = cfg.expires
        self.state = RegState.IDLE  # changed only by _move()
        self.expires_at: float | None = None
        self.last_error = ""
        self.failures = 0
        self._outgoing: list[SipRequest] = []
        self._timers: dict[str, float] = {}
        self._current: SipRequest | None = None
        self._auth_sent = False
        #: realms this registrar challenged our REGISTER with: the only ones our credentials answer
        #: for requests in calls (ChallengeAnswerer)
        self.realms: set[str] = set()
        #: the resolved next hop (ip, port), set by the driver
        self.remote: tuple[str, int] | None = None

    def _move(self, to: RegState) -> None:
        self.state = REG_STATES.move(self.state, to)

    # --- driver interface ---------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self.state in (RegState.IDLE, RegState.STOPPED):
            self._register(now)

    def stop(self, now: float) -> None:
        """Unregister (Expires: 0) if we may be registered; afterwards `done` is True."""
        self._timers.clear()
        if self.expires_at is not None or self.state in (RegState.REGISTERING, RegState.REFRESHING):
            self._move(RegState.UNREGISTERING)
            self._send(now, expires=0)
        else:
            self._move(RegState.STOPPED)

    @property
    def done(self) -> bool:
        return self.state == RegState.STOPPED

    @property
    def registered(self) -> bool:
        """A binding is in place (it lasts until expires_at even while a refresh is failing)."""
        return self.expires_at is not None

    def take_requests(self) -> list[SipRequest]:
        out, self._outgoing = self._outgoing, []
        return out

    def transaction_factory(
        self, request: SipRequest, send: Send, reliable: bool, now: float, config: TimerConfig = DEFAULT_TIMERS
    ) -> ReportingTransaction:
        """For UserAgent.send_request(tx_class=...): reports outcomes to on_response."""
        return ReportingTransaction(request, send, reliable, now, config, on_response=self.on_response)

    def get_timer(self) -> float | None:
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> None:
        for name, deadline in sorted(self._timers.items(), key=lambda item: item[1]):
            if deadline <= now and self._timers.get(name) == deadline:
                del self._timers[name]
                if name == "expire":
                    self.expires_at = None
                    self.last_error = self.last_error or "binding expired"
                    log.warning("SIP registration %s: binding expired", self.name)
                else:  # "refresh" or "retry"
                    self._register(now)

    def status(self) -> RegistrationStatus:
        return RegistrationStatus(self.name, self.aor, self.state, self.registered, self.expires_at, self.last_error)

    # --- responses ----------------------------------------------------------------------------

    def on_response(self, resp: SipResponse | None, now: float) -> None:
        """The final response to our latest REGISTER, or None when its transaction timed out."""
        unregistering = self.state == RegState.UNREGISTERING
        if self._current is None or (resp is not None and resp.cseq[0] != self._current.cseq[0]):
            return  # a late answer to a REGISTER we already replaced or gave up on
        if resp is None:
            self._fail(now, "no response (timeout)")
        elif resp.status in (401, 407):
            self._challenged(resp, now)
        elif resp.status == 423:
            self._too_brief(resp, now)
        elif 200 <= resp.status < 300:
            if unregistering:
                self._finish_unregister("")
            else:
                self._registered(resp, now)
        else:
            self._fail(now, f"{resp.status} {resp.reason}".strip())

    def _challenged(self, resp: SipResponse, now: float) -> None:
        challenges = parse_challenges(resp.headers)
        stale = any(c.stale for c in challenges)
        if not challenges:
            return self._fail(now, f"{resp.status}: no supported digest challenge")
        if self._auth_sent and not stale:
            return self._fail(now, f"{resp.status}: credentials refused")
        assert self._current is not None
        if len(self.realms) < 4:  # a registrar has one realm (two with a proxy): never grow unbounded
            self.realms.update(c.realm for c in challenges[:4])
        headers = self.digest.authorize(resp, "REGISTER", self.request_uri)
        self._send(now, expires=0 if self.state == RegState.UNREGISTERING else self.expires, auth=headers)

    def _too_brief(self, resp: SipResponse, now: float) -> None:
        text = (resp.headers.get("Min-Expires") or "").strip()
        if not is_uint(text, 604800, min_value=self.expires + 1) or self.state == RegState.UNREGISTERING:
            return self._fail(now, f"423 with unusable Min-Expires {text[:20]!r}")
        self.expires = int(text)
        self._send(now, expires=self.expires)

    def _registered(self, resp: SipResponse, now: float) -> None:
        granted = self._granted(resp)
        if granted <= 0:
            return self._fail(now, "registrar kept no binding for our Contact")
        self._move(RegState.REGISTERED)
        self.failures, self.last_error = 0, ""
        self.expires_at = now + granted
        self._timers = {"refresh": now + granted * self.rng.uniform(0.5, 0.9), "expire": self.expires_at}
        log.info("SIP registration %s: registered for %d s", self.name, granted)

    def _granted(self, resp: SipResponse) -> int:
        """Our binding's expires (Contact param, else Expires header, else what we asked)."""
        header = (resp.headers.get("Expires") or "").strip()
        default = int(header) if is_uint(header, 2**31) else self.expires
        ours = self._contact_key(self._contact_uri())
        for value in resp.headers.get_all("Contact"):
            try:
                _, uri, params = parse_name_addr(value)
            except SipParseError:
                continue
            if self._contact_key(uri) == ours:
                text = (params.get("expires") or "").strip()
                return int(text) if is_uint(text, 2**31) else default
        return default if not resp.headers.get_all("Contact") else 0

    @staticmethod
    def _contact_key(uri: str) -> tuple:
        try:
            u = SipUri.parse(uri)
        except SipParseError:
            return ()
        return (u.user, host_address(u.host).lower(), u.port or 5060)

    def _fail(self, now: float, error: str) -> None:
        self.last_error = error
        if self.state == RegState.UNREGISTERING:
            return self._finish_unregister(error)
        self.failures += 1
        delay = min(self.retry_max, self.retry_initial * 2 ** (self.failures - 1)) * self.rng.uniform(0.8, 1.2)
        if self.expires_at is not None:
            delay = min(delay, max(1.0, (self.expires_at - now) / 2))  # try again before the binding lapses
        self._move(RegState.FAILED)
        self._current = None
        self._timers.pop("refresh", None)
        self._timers["retry"] = now + delay
        log.warning("SIP registration %s failed: %s; retrying in %.0f s", self.name, error, delay)

    def _finish_unregister(self, error: str) -> None:
        self._move(RegState.STOPPED)
        self.expires_at, self._current = None, None
        self._timers.clear()
        if error:
            log.info("SIP registration %s: unregister failed: %s", self.name, error)

    # --- requests -----------------------------------------------------------------------------

    def _register(self, now: float) -> None:
        self._move(RegState.REFRESHING if self.expires_at is not None else RegState.REGISTERING)
        self._send(now, expires=self.expires)

    def _contact_uri(self) -> str:
        transport = "" if self.local.transport == "udp" else f";transport={self.local.transport}"
        user = self.cfg.contact_user or self.cfg.user
        return f"sip:{user}@{format_host(self.local.host)}:{self.local.port}{transport}"

    def _send(self, now: float, expires: int, auth: Sequence[tuple[str, str]] = ()) -> None:
        self.cseq += 1
        branch = f"z9hG4bK{self.rng.getrandbits(64):016x}"
        local = self.local
        req = SipRequest("REGISTER", self.request_uri)
        req.headers.add(
            "Via", f"SIP/2.0/{local.transport.upper()} {format_host(local.host)}:{local.port};branch={branch};rport"
        )
        if self.route:
            req.headers.add("Route", self.route)
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", f"<{self.aor}>;tag={self.from_tag}")
        req.headers.add("To", f"<{self.aor}>")
        req.headers.add("Call-ID", self.call_id)
        req.headers.add("CSeq", f"{self.cseq} REGISTER")
        req.headers.add("Contact", f"<{self._contact_uri()}>")
        req.headers.add("Expires", str(expires))
        req.headers.add("User-Agent", self.user_agent)
        for name, value in auth:
            req.headers.add(name, value)
        self._current = req
        self._auth_sent = bool(auth)  # a 401 to a request with credentials means they are wrong
        self._outgoing.append(req)


def resolve_local(locals_: list[Local], transport: str, route_source: Callable[[str], str], dest_ip: str) -> Local:
    """The listener of `transport` to register from; a wildcard one advertises the routed address."""
    from appliance.netutil import is_unspecified

    for local in locals_:
        if local.transport == transport:
            if is_unspecified(local.host):
                return Local(local.transport, route_source(dest_ip), local.port)
            return local
    raise LookupError(f"no {transport} listener for the registration")


class ChallengeAnswerer:
    """A UserAgent.challenge_hook: answers a 401/407 to our INVITE, re-INVITE or BYE with the
    credentials of the registration whose registrar (or outbound proxy) the request went to,
    only for a realm that registrar itself challenged our REGISTER with, once per request (again
    only on stale=true).

    Why so narrow: anyone we send a request to can challenge it, with a realm and nonce of their
    choosing; answering with the PBX account would hand them an MD5 digest to crack offline. A
    caller's gateway that challenges our BYE gets no answer (the BYE then fails: the call is
    over anyway).
    """

    def __init__(
        self,
        registrations: Callable[[], Sequence[Registration]],
        resend: Callable[[str, SipRequest, list[tuple[str, str]], float], object],
    ) -> None:
        self._registrations = registrations
        self._resend = resend  # UserAgent.resend_request

    def _registration_for(self, dest: Addr, source: Addr) -> Registration | None:
        for reg in self._registrations():
            remote = getattr(reg, "remote", None)
            if remote is not None and tuple(remote) == tuple(dest) and source[0] == dest[0]:
                return reg
        return None

    def __call__(
        self, call_id: str, request: SipRequest, dest: Addr, response: SipResponse, source: Addr, now: float
    ) -> bool:
        reg = self._registration_for(dest, source)
        if reg is None or not reg.realms:
            return False
        had_credentials = "Authorization" in request.headers or "Proxy-Authorization" in request.headers
        if had_credentials and not any(c.stale for c in parse_challenges(response.headers)):
            return False  # our credentials were refused: let the UA fail the request
        answers = reg.digest.authorize(response, request.method, request.uri, realms=reg.realms)
        if not answers:
            return False
        self._resend(call_id, request, answers, now)
        return True
