"""The automated part of the bench (hwtests/BENCH.md): a laptop on the box's LAN checks a real box.

    FAXBRIDGE_BENCH_PASSWORD=... .venv/bin/python -m hwtests.bench --box faxbridge.local \\
        --ssh admin@faxbridge.local --smtp-listen 192.168.1.20:2525 \\
        --bad-signature-from faxbridge-0.2.0-arm64.raucb --update faxbridge-0.2.0-arm64.raucb \\
        --rollback faxbridge-0.2.0-broken-arm64.raucb --report bench-report.md

(`make hwbench BOX=faxbridge.local` runs the first checks; BENCH_ARGS="..." adds the rest.)

Each check prints PASS, FAIL or SKIPPED(reason) as it ends; a summary table follows, and the exit
status is 1 when any check failed. What is checked, in order: the name resolves (mDNS) and the box
announces its web UI; TLS (certificate, names, pin) and /healthz; the login, or, on a box not set
up yet, that the first-start page refuses a wrong setup code; the version and the dashboard's
status through the JSON API; over SSH, the root slots (RAUC) and the data partition's size; a test
fax sent over SIP to the box with ``faxbridge send-test-fax``, found through the API, its image
compared pixel for pixel, its delivery followed and, when the box delivers to this laptop, the mail
caught here and its attachment compared; then update bundles: one with a broken signature must be
refused, a good one installed and followed through the reboot to its commit, a broken one (its
daemon cannot start) followed until the box is back on the old slot by itself.

The I/O lives here; what is read and judged is in benchparse.py and benchreport.py (tested in
tests/hwbench/, also against a local ``faxbridge run``).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import http.client
import ipaddress
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from hwtests import benchparse as bp
from hwtests.benchreport import Check, Report, Status, failed, markdown, passed, skipped, table

PASSWORD_ENV = "FAXBRIDGE_BENCH_PASSWORD"
#: where an uploaded bundle waits on the box: the data partition (the root is read-only, with
#: its changes in RAM); removed after each update
REMOTE_DIR = "/data/bench"
SLOTS_COMMAND = "sudo rauc status --detailed --output-format=json"
#: prints "PART DISK START SIZE TOTAL" (sectors) for the partition under /var/lib/faxbridge
DATA_PARTITION_COMMAND = (
    'p=$(basename "$(readlink -f "$(findmnt -nvo SOURCE --target /var/lib/faxbridge)")"); '
    'd=$(basename "$(readlink -f "/sys/class/block/$p/..")"); '
    'echo "$p $d $(cat /sys/class/block/$p/start) $(cat /sys/class/block/$p/size) $(cat /sys/class/block/$d/size)"')


class BenchError(Exception):
    """A step could not be done (the box did not answer as expected); the message says what."""


# -- HTTPS to the box ------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise BenchError(f"HTTP {self.status}: not JSON: {self.body[:200]!r}") from None


@dataclass
class WebClient:
    """The browser's part: HTTPS to one address, the certificate pinned by its SHA-256 (the box's
    is self-signed), a cookie jar, no redirects followed."""

    host: str
    port: int
    server_name: str
    pin: str = ""
    timeout: float = 20.0
    cookies: dict[str, str] = field(default_factory=dict)

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check
        return ctx

    def peer_certificate(self) -> tuple[bytes, str]:
        """The certificate the box presents (DER) and the TLS version it spoke."""
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as raw:
            with self._context().wrap_socket(raw, server_hostname=self.server_name) as tls:
                der = tls.getpeercert(binary_form=True)
                return der or b"", tls.version() or "?"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float | None = None) -> Reply:
        sent = {"Host": self.server_name if self.port == 443 else f"{self.server_name}:{self.port}",
                **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout or self.timeout,
                                           context=self._context())
        try:
            conn.connect()
            der = conn.sock.getpeercert(binary_form=True) if conn.sock else None  # type: ignore[union-attr]
            actual = hashlib.sha256(der or b"").hexdigest()
            if self.pin and not bp.fingerprint_matches(self.pin, actual):
                raise BenchError(f"the box presented another certificate (SHA-256 {actual}, pinned {self.pin})")
            conn.request(method, path, body=body, headers=sent)
            r = conn.getresponse()
            reply = Reply(r.status, r.headers, r.read())
        finally:
            conn.close()
        for value in reply.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                self.cookies[name] = morsel.value
        return reply

    def get_json(self, path: str) -> Any:
        r = self.request("GET", path)
        if r.status != 200:
            raise BenchError(f"GET {path}: HTTP {r.status}: {r.body[:200].decode('utf-8', 'replace')}")
        return r.json()

    def csrf(self, path: str) -> str:
        token = bp.csrf_token(self.request("GET", path).body.decode("utf-8", "replace"))
        if not token:
            raise BenchError(f"GET {path}: no CSRF token on the page")
        return token

    def post_form(self, path: str, fields: dict[str, str]) -> Reply:
        return self.request("POST", path, urllib.parse.urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def login(self, password: str) -> Reply:
        return self.post_form("/login", {"password": password, "csrf_token": self.csrf("/login")})


# -- SSH to the box --------------------------------------------------------------------------------
@dataclass
class Ssh:
    """``ssh`` to the box's admin account (key only). Host keys are kept in the run's own file:
    the first connection learns the key, and a key that changes later (after a reboot or an
    update) is refused by ssh itself, which the check then reports."""

    target: str
    known_hosts: Path
    options: list[str] = field(default_factory=list)

    def command(self, remote: str, timeout: float = 15.0) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", *self.options, self.target, remote]

    def run(self, remote: str, timeout: float = 60.0, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(self.command(remote), stdin=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, "", f"no answer within {timeout:.0f} s")

    def slots(self) -> bp.Slots | None:
        """The slots, or None when the box does not answer (rebooting)."""
        r = self.run(SLOTS_COMMAND, timeout=30)
        if r.returncode == 255 or r.returncode == 124:
            if "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr:
                raise BenchError("the box's SSH host key changed (the data partition should keep it)")
            return None
        if r.returncode != 0:
            raise BenchError(f"{SLOTS_COMMAND}: exit {r.returncode}: {last_line(r.stderr or r.stdout)}")
        return bp.parse_rauc_status(r.stdout)


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else "(no output)"


# -- the mail sink ---------------------------------------------------------------------------------
class MailSink:
    """An SMTP server on this laptop (aiosmtpd) that keeps what the box delivers to it."""

    def __init__(self, host: str, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
                with sink.lock:
                    sink.messages.append(msg)  # type: ignore[arg-type]
                return "250 2.0.0 Ok: kept by the bench"

        self.controller = Controller(Handler(), hostname=host, port=port, server_hostname="bench.faxbridge.test")

    def __enter__(self) -> "MailSink":
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def find(self, caller: str) -> email.message.EmailMessage | None:
        with self.lock:
            return next((m for m in self.messages if m.get("X-CallingTelephoneNumber") == caller), None)


# -- the run ---------------------------------------------------------------------------------------
def wait_for(check: Callable[[], Any], budget: float, every: float = 2.0) -> Any:
    """Poll until ``check`` returns something true, or return its last answer after ``budget``."""
    deadline = time.monotonic() + budget
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(every)


@dataclass
class Bench:
    args: argparse.Namespace
    report: Report = field(default_factory=Report)
    web: WebClient | None = None
    ssh: Ssh | None = None
    logged_in: bool = False
    set_up: bool = True
    out: Path = Path(".")
    #: seconds between two looks at the slots while an update goes on
    poll_every: float = 3.0

    def record(self, check: Check) -> Check:
        self.report.add(check)
        seconds = "" if check.seconds is None else f" [{check.seconds:.0f} s]"
        detail = f": {check.detail}" if check.detail and check.status is not Status.SKIPPED else ""
        print(f"{check.label:<8} {check.name}{detail}{seconds}", flush=True)
        return check

    def fact(self, key: str, value: str) -> None:
        self.report.facts[key] = value
        print(f"         {key}: {value}", flush=True)

    # -- reaching the box ---------------------------------------------------------------------------
    def resolve(self) -> str | None:
        box = self.args.box
        try:
            ipaddress.ip_address(box)
            self.record(skipped("resolve", f"{box} is an address, not a name"))
            return box
        except ValueError:
            pass
        t0 = time.monotonic()
        try:
            infos = socket.getaddrinfo(box, self.args.web_port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            hint = " (mDNS: does this laptop run avahi-daemon with libnss-mdns? or give the address)" \
                if box.endswith(".local") else ""
            self.record(failed("resolve", f"{box} does not resolve: {e}{hint}"))
            return None
        addrs = list(dict.fromkeys(str(i[4][0]) for i in infos))
        self.record(passed("resolve", f"{box} -> {', '.join(addrs)}", time.monotonic() - t0))
        ipv4 = [a for a in addrs if ":" not in a]
        return (ipv4 or addrs)[0]

    def mdns(self) -> None:
        if not self.args.box.endswith(".local"):
            self.record(skipped("mdns-service", "the box was not given by its .local name"))
            return
        if not shutil.which("avahi-browse"):
            self.record(skipped("mdns-service", "avahi-browse is not installed here (apt install avahi-utils)"))
            return
        try:
            r = subprocess.run(["avahi-browse", "--parsable", "--resolve", "--terminate", "_https._tcp"],
                               capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            self.record(failed("mdns-service", "avahi-browse did not finish within 30 s"))
            return
        services = bp.avahi_services(r.stdout)
        host = self.args.box.lower()
        mine = [s for s in services if s.hostname.lower() == host]
        if not mine:
            seen = ", ".join(f"{s.name} ({s.hostname})" for s in services) or "none"
            self.record(failed("mdns-service", f"no _https._tcp service on {host}; seen: {seen}"))
            return
        s = mine[0]
        ok = s.port == self.args.web_port
        self.record((passed if ok else failed)("mdns-service", f"'{s.name}' at {s.address}:{s.port}"))

    def tls(self, address: str) -> bool:
        assert self.web is not None
        t0 = time.monotonic()
        try:
            der, version = self.web.peer_certificate()
            facts = bp.cert_facts(der)
        except (OSError, bp.BenchParseError) as e:
            self.record(failed("tls", f"no TLS on {address}:{self.args.web_port}: {e}"))
            return False
        self.fact("certificate SHA-256", facts.sha256)
        self.fact("certificate names", ", ".join(facts.names) or "none")
        now = time.time()
        problems = []
        if facts.not_before.timestamp() > now + 300:
            problems.append(f"not valid before {facts.not_before:%Y-%m-%d %H:%M} (is the box's clock right?)")
        if facts.not_after.timestamp() < now:
            problems.append(f"expired on {facts.not_after:%Y-%m-%d}")
        if version not in ("TLSv1.2", "TLSv1.3"):
            problems.append(f"spoke {version}")
        if self.args.cert_sha256 and not bp.fingerprint_matches(self.args.cert_sha256, facts.sha256):
            problems.append(f"SHA-256 {facts.sha256} is not the pinned {self.args.cert_sha256}")
        detail = (f"{version}, {'self-signed' if facts.self_signed else 'issued by a CA'}, "
                  f"valid until {facts.not_after:%Y-%m-%d}")
        self.record((failed("tls", "; ".join(problems)) if problems else passed("tls", detail, time.monotonic() - t0)))
        self.web.pin = self.args.cert_sha256 or facts.sha256  # every later request must see the same one
        if self.args.box == address:
            self.record(skipped("tls-name", "the box was given by address; the certificate names the host"))
        elif facts.names_host(self.args.box):
            self.record(passed("tls-name", f"the certificate names {self.args.box}"))
        else:
            self.record(failed("tls-name", f"{self.args.box} is not among the certificate's names "
                                           f"({', '.join(facts.names)}): browsers will say it is another site"))
        return not problems

    def healthz(self, name: str = "healthz") -> bool:
        assert self.web is not None
        t0 = time.monotonic()
        try:
            r = self.web.request("GET", "/healthz")
        except (OSError, http.client.HTTPException, BenchError) as e:
            self.record(failed(name, f"/healthz: {e}"))
            return False
        ok = r.status == 200 and r.body.strip() == b"ok"
        self.record((passed if ok else failed)(name, f"/healthz: HTTP {r.status} {r.body[:40]!r}",
                                               time.monotonic() - t0))
        return ok

    def login(self) -> None:
        assert self.web is not None
        status = self.web.request("GET", "/api/status")
        if status.status == 401 and b"no administrator password" in status.body:
            self.set_up = False
            self.setup_guard()
            self.record(skipped("login", "the box is not set up yet: finish the wizard (BENCH.md W), then run again"))
            return
        password = os.environ.get(PASSWORD_ENV, "")
        if self.args.password_file:
            password = Path(self.args.password_file).read_text(encoding="utf-8").strip()
        if not password:
            self.record(skipped("login", f"no password: set {PASSWORD_ENV} or give --password-file"))
            return
        t0 = time.monotonic()
        r = self.web.login(password)
        if r.status == 302 and self.web.request("GET", "/api/status").status == 200:
            self.logged_in = True
            self.record(passed("login", "the administrator password opens the API", time.monotonic() - t0))
        else:
            self.record(failed("login", f"HTTP {r.status}: the password was refused or the session did not hold"))

    def setup_guard(self) -> None:
        """On a box without a password, the first-start page must refuse a wrong setup code."""
        assert self.web is not None
        r = self.web.post_form("/setup", {"setup_code": "WRONG-CODE-00", "password": "bench-not-a-password",
                                          "confirm": "bench-not-a-password", "csrf_token": self.web.csrf("/setup")})
        ok = r.status == 403 and self.web.request("GET", "/api/status").status == 401
        self.record((passed if ok else failed)("setup-guard", f"a wrong setup code got HTTP {r.status}"
                                               + ("" if ok else " and the password may have been set")))

    def needs_login(self, name: str) -> bool:
        if self.logged_in:
            return True
        self.record(skipped(name, "not logged in" if self.set_up else "the box is not set up yet"))
        return False

    def version_and_status(self) -> None:
        assert self.web is not None
        if self.needs_login("version"):
            try:
                version = bp.api_version(self.web.get_json("/api/openapi.json"))
            except (BenchError, bp.BenchParseError) as e:
                self.record(failed("version", str(e)))
            else:
                self.fact("version", version)
                want = self.args.expect_version
                self.record((passed if not want or want == version else failed)(
                    "version", version + (f" (expected {want})" if want and want != version else "")))
        if self.needs_login("daemon"):
            try:
                up, bad_lines, alerts = bp.status_problems(self.web.get_json("/api/status"))
            except (BenchError, bp.BenchParseError) as e:
                self.record(failed("daemon", str(e)))
                return
            self.record((passed if up else failed)("daemon", "the fax daemon is up" if up else
                                                    "the dashboard says the daemon is not running"))
            self.record(failed("lines", "; ".join(bad_lines)) if bad_lines else passed("lines", "every line works"))
            self.record(failed("alerts", "; ".join(alerts)) if alerts else passed("alerts", "no alert on the dashboard"))

    # -- SSH: slots and the data partition ---------------------------------------------------------
    def slots(self, name: str = "slots") -> bp.Slots | None:
        if self.ssh is None:
            self.record(skipped(name, "no --ssh given"))
            return None
        try:
            s = self.ssh.slots()
        except (BenchError, bp.BenchParseError) as e:
            self.record(failed(name, str(e)))
            return None
        if s is None:
            self.record(failed(name, f"ssh {self.ssh.target} does not answer"))
            return None
        self.fact("slots", s.describe())
        self.record((passed if s.committed else failed)(name, s.describe()))
        r = self.ssh.run("sudo faxbridge update --status", timeout=30)
        if r.returncode == 0:
            self.fact("faxbridge update --status", " / ".join(l.strip() for l in r.stdout.splitlines() if l.strip()))
        return s

    def data_partition(self) -> None:
        if self.ssh is None:
            self.record(skipped("data-partition", "no --ssh given"))
            return
        r = self.ssh.run(DATA_PARTITION_COMMAND, timeout=30)
        if r.returncode != 0:
            self.record(failed("data-partition", f"exit {r.returncode}: {last_line(r.stderr or r.stdout)}"))
            return
        status, detail = bp.data_partition_verdict(r.stdout)
        self.record(Check("data-partition", status, detail))

    # -- a fax over SIP ----------------------------------------------------------------------------
    def fax(self, address: str) -> None:
        if self.args.no_fax:
            for name in ("fax-sent", "fax-received", "fax-image", "fax-delivered", "fax-mail"):
                self.record(skipped(name, "--no-fax"))
            return
        from appliance.fax.pages import write_fax_tiff
        from appliance.fax.testpages import demo_pages

        pages = demo_pages(self.args.fax_pages)
        tiff = self.out / "bench-sent.tif"
        write_fax_tiff(pages, tiff)
        sent_pages = bp.read_tiff_pages(tiff.read_bytes())
        caller = "555" + time.strftime("%H%M%S")  # this run's own: an older fax never counts
        self.fact("test fax caller number", caller)
        target = f"sip:fax@{address}:{self.args.sip_port}" + (
            f";transport={self.args.sip_transport}" if self.args.sip_transport != "udp" else "")
        sink = MailSink(*split_hostport(self.args.smtp_listen)) if self.args.smtp_listen else None
        if sink:
            sink.__enter__()
        try:
            t0 = time.monotonic()
            cmd = [sys.executable, "-m", "appliance", "send-test-fax", "--to", target, str(tiff),
                   "--caller", caller, "--ident", "FAXBRIDGE BENCH", "--timeout", str(self.args.fax_timeout)]
            cmd += ["--t38", self.args.t38] if self.args.t38 != "off" else []
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.fax_timeout + 60)
            ok, line = bp.sender_result(r.stdout + r.stderr)
            if not ok and ("timed out" in line or "call failed: 403" in line):
                line += " (is this laptop's address a SIP peer on the box? BENCH.md W-5)"
            self.record((passed if ok else failed)("fax-sent", f"to {target}: {line}", time.monotonic() - t0))
            if not ok:
                for name in ("fax-received", "fax-image", "fax-delivered", "fax-mail"):
                    self.record(skipped(name, "the fax was not sent"))
                return
            fax = self.fax_on_box(caller, len(sent_pages), t0)
            if fax is not None:
                self.fax_image(fax, sent_pages)
                self.fax_delivered(fax["id"], t0)
            self.fax_mail(sink, caller, sent_pages, t0)
        finally:
            if sink:
                sink.__exit__()

    def fax_on_box(self, caller: str, pages: int, t0: float) -> dict[str, Any] | None:
        if not self.needs_login("fax-received"):
            self.record(skipped("fax-image", "not logged in"))
            self.record(skipped("fax-delivered", "not logged in"))
            return None
        assert self.web is not None
        path = "/api/faxes?" + urllib.parse.urlencode({"caller": caller, "limit": 5})

        def done() -> dict[str, Any] | None:
            fax = bp.find_fax(self.web.get_json(path), caller)  # type: ignore[union-attr]
            return fax if fax is not None and bp.reception_verdict(fax, pages) is not None else None

        fax = wait_for(done, self.args.fax_timeout)
        if fax is None:
            self.record(failed("fax-received", f"no finished fax from {caller} in /api/faxes after "
                                               f"{self.args.fax_timeout:.0f} s"))
            self.record(skipped("fax-image", "no fax"))
            self.record(skipped("fax-delivered", "no fax"))
            return None
        status, detail = bp.reception_verdict(fax, pages) or (Status.FAIL, "still receiving")
        self.record(Check("fax-received", status, detail, time.monotonic() - t0))
        return fax

    def fax_image(self, fax: dict[str, Any], sent: list[Any]) -> None:
        assert self.web is not None
        r = self.web.request("GET", f"/faxes/{fax['id']}.tif")
        if r.status != 200:
            self.record(failed("fax-image", f"GET /faxes/{fax['id']}.tif: HTTP {r.status}"))
            return
        (self.out / f"bench-received-{fax['id']}.tif").write_bytes(r.body)
        problems = bp.compare_pages(sent, bp.read_tiff_pages(r.body))
        self.record(failed("fax-image", "; ".join(problems)) if problems else
                    passed("fax-image", f"{len(sent)} page(s) pixel-equal to the sent ones"))

    def fax_delivered(self, fax_id: int, t0: float) -> None:
        assert self.web is not None
        last: dict[str, Any] = {}

        def done() -> tuple[Status, str] | None:
            last.update(self.web.get_json(f"/api/faxes/{fax_id}"))  # type: ignore[union-attr]
            return bp.delivery_verdict(last)

        verdict = wait_for(done, self.args.delivery_timeout)
        if verdict is None:
            self.record(failed("fax-delivered", f"not within {self.args.delivery_timeout:.0f} s: "
                                                + bp.delivery_pending(last)))
            return
        self.record(Check("fax-delivered", verdict[0], verdict[1], time.monotonic() - t0))

    def fax_mail(self, sink: MailSink | None, caller: str, sent: list[Any], t0: float) -> None:
        if sink is None:
            self.record(skipped("fax-mail", "no --smtp-listen: check the test mailbox by hand (BENCH.md M-4, A-3)"))
            return
        msg = wait_for(lambda: sink.find(caller), self.args.delivery_timeout, every=1.0)
        if msg is None:
            self.record(failed("fax-mail", f"no mail from caller {caller} reached {self.args.smtp_listen} within "
                                           f"{self.args.delivery_timeout:.0f} s"))
            return
        tiffs = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
        if len(tiffs) != 1:
            self.record(failed("fax-mail", f"{len(tiffs)} TIFF attachments in '{msg['Subject']}'"))
            return
        problems = bp.compare_pages(sent, bp.read_tiff_pages(tiffs[0].get_content()))
        self.record(failed("fax-mail", "; ".join(problems)) if problems else
                    passed("fax-mail", f"'{msg['Subject']}' to {msg['To']}: attachment pixel-equal",
                           time.monotonic() - t0))

    # -- updates -----------------------------------------------------------------------------------
    def upload(self, bundle: Path) -> str:
        assert self.ssh is not None
        remote = f"{REMOTE_DIR}/{bundle.name}"
        with bundle.open("rb") as f:
            r = self.ssh.run(f"sudo install -d -m 0700 {REMOTE_DIR} && sudo tee {shlex.quote(remote)} >/dev/null",
                             timeout=600, stdin=f)
        if r.returncode != 0:
            raise BenchError(f"upload of {bundle.name}: exit {r.returncode}: {last_line(r.stderr)}")
        return remote

    def bad_signature(self, bundle: Path) -> None:
        name = "update-bad-signature"
        if self.ssh is None:
            self.record(skipped(name, "no --ssh given"))
            return
        before = self.ssh.slots()
        if before is None:
            self.record(failed(name, f"ssh {self.ssh.target} does not answer"))
            return
        bad = self.out / (bundle.stem + "-bad-signature.raucb")
        corrupt_signature(bundle, bad)
        t0 = time.monotonic()
        remote = self.upload(bad)
        r = self.ssh.run(f"sudo faxbridge update {shlex.quote(remote)}", timeout=600)
        self.ssh.run(f"sudo rm -f {shlex.quote(remote)}")
        after = self.ssh.slots()
        said = last_line(r.stderr or r.stdout)
        if r.returncode in (0, 255):
            self.record(failed(name, f"accepted (exit {r.returncode}): {said}", time.monotonic() - t0))
        elif after is None or (after.booted, after.primary) != (before.booted, before.primary):
            self.record(failed(name, f"refused, but the box changed: {before.describe()} -> "
                                     f"{after.describe() if after else 'no answer over ssh'}"))
        else:
            self.record(passed(name, f"refused (exit {r.returncode}): {said}", time.monotonic() - t0))

    def install(self, bundle: Path, expect: str) -> None:
        name = "update-commit" if expect == "commit" else "update-rollback"
        if self.ssh is None:
            self.record(skipped(name, "no --ssh given"))
            return
        before = self.ssh.slots()
        if before is None or not before.committed:
            self.record(failed(name, "the box is not on a committed slot before the update: "
                                     + (before.describe() if before else "no answer")))
            return
        t0 = time.monotonic()
        remote = self.upload(bundle)
        r = self.ssh.run(f"sudo faxbridge update {shlex.quote(remote)}", timeout=900)
        if r.returncode not in (0, 255):  # 255: the reboot closed the connection
            self.ssh.run(f"sudo rm -f {shlex.quote(remote)}")
            self.record(failed(name, f"refused (exit {r.returncode}): {last_line(r.stderr or r.stdout)}"))
            return
        seen: list[bp.Observation] = []
        verdict = None
        deadline = time.monotonic() + self.args.update_timeout
        while verdict is None and time.monotonic() < deadline:
            try:
                now = self.ssh.slots()
            except bp.BenchParseError as e:
                now = None
                print(f"         (rauc status unreadable for now: {e})", flush=True)
            seen.append((time.monotonic() - t0, now))
            verdict = bp.update_verdict(expect, before, seen)
            if verdict is None:
                time.sleep(self.poll_every)
        if verdict is None:
            rebooted = any(s is None for _, s in seen)
            why = "" if rebooted else f"the box did not reboot after the install (it said: {last_line(r.stdout)}); "
            self.record(failed(name, f"no outcome within {self.args.update_timeout:.0f} s: {why}"
                                     f"{bp.timeline(before, seen)}", time.monotonic() - t0))
        else:
            self.record(Check(name, verdict[0], verdict[1], time.monotonic() - t0))
        self.ssh.run(f"sudo rm -f {shlex.quote(remote)}")
        if self.web is not None and self.healthz(f"{name}-healthz") and self.logged_in:
            try:
                self.fact(f"version after {name}", bp.api_version(self.web.get_json("/api/openapi.json")))
            except (BenchError, bp.BenchParseError) as e:
                self.fact(f"version after {name}", f"unreadable: {e}")


def corrupt_signature(bundle: Path, out: Path) -> None:
    """A copy of ``bundle`` with one byte of its CMS signature changed (the last: inside the
    signature value itself), which RAUC must refuse."""
    size = bundle.stat().st_size
    with bundle.open("rb") as f:
        f.seek(max(0, size - 8))
        offset, length = bp.signature_span(size, f.read(8))
    shutil.copyfile(bundle, out)
    with out.open("r+b") as f:
        f.seek(offset + length - 1)
        byte = f.read(1)
        f.seek(offset + length - 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def split_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: give HOST:PORT, e.g. 192.168.1.20:2525")
    return host.strip("[]"), int(port)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hwtests.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"The administrator password comes from ${PASSWORD_ENV} or --password-file "
                                       "(never the command line: it would show in ps). See hwtests/BENCH.md.")
    p.add_argument("--box", required=True, help="the box's name (faxbridge.local) or address")
    p.add_argument("--web-port", type=int, default=443)
    p.add_argument("--sip-port", type=int, default=5060)
    p.add_argument("--sip-transport", choices=["udp", "tcp"], default="udp")
    p.add_argument("--cert-sha256", default="", help="the web certificate's SHA-256 to insist on (from the System "
                                                     "page or an earlier run)")
    p.add_argument("--password-file", help="a file holding the administrator password")
    p.add_argument("--expect-version", default="", help="fail unless the box runs this version")
    p.add_argument("--ssh", metavar="USER@HOST", help="SSH to the box (admin@faxbridge.local) for slots, the data "
                                                      "partition and updates")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="passed to ssh as -o OPT, e.g. IdentityFile=~/.ssh/bench (repeatable)")
    p.add_argument("--no-fax", action="store_true", help="skip the test fax")
    p.add_argument("--fax-pages", type=int, default=2)
    p.add_argument("--t38", choices=["off", "reinvite", "initial"], default="off",
                   help="send the test fax over T.38 (default: G.711 audio)")
    p.add_argument("--smtp-listen", metavar="HOST:PORT", help="catch the box's mail here (the box's delivery must "
                                                              "point at this laptop, without TLS: BENCH.md W-4)")
    p.add_argument("--fax-timeout", type=float, default=300.0)
    p.add_argument("--delivery-timeout", type=float, default=180.0)
    p.add_argument("--bad-signature-from", type=Path, metavar="BUNDLE",
                   help="install a copy of BUNDLE with a broken signature: it must be refused")
    p.add_argument("--update", type=Path, metavar="BUNDLE", help="install BUNDLE; it must be tried and committed")
    p.add_argument("--rollback", type=Path, metavar="BUNDLE",
                   help="install BUNDLE (made with make image BROKEN_BUNDLE=1); the box must come back on its old slot")
    p.add_argument("--update-timeout", type=float, default=900.0)
    p.add_argument("--out", type=Path, default=None, help="where to keep the sent and received TIFFs, the bad "
                                                          "bundle and known_hosts (default: a new temp dir)")
    p.add_argument("--report", type=Path, help="also write the results as Markdown here (for the bench report)")
    args = p.parse_args(argv)
    if args.smtp_listen:
        split_hostport(args.smtp_listen)
    for bundle in (args.bad_signature_from, args.update, args.rollback):
        if bundle is not None and not bundle.is_file():
            p.error(f"{bundle}: no such file")
    return args


def run(args: argparse.Namespace) -> Report:
    """Every check in order; a check that cannot run because an earlier one failed says so."""
    out = args.out or Path(tempfile.mkdtemp(prefix="faxbridge-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, out=out)
    print(f"bench run against {args.box}; files in {out}", flush=True)
    address = bench.resolve()
    bench.mdns()
    if address is None:
        return bench.report
    bench.web = WebClient(address, args.web_port, args.box)
    if args.ssh:
        bench.ssh = Ssh(args.ssh, out / "known_hosts", [x for o in args.ssh_option for x in ("-o", o)])
    try:
        if bench.tls(address) and bench.healthz():
            bench.login()
            bench.version_and_status()
        bench.slots()
        bench.data_partition()
        bench.fax(address)
        if args.bad_signature_from:
            bench.bad_signature(args.bad_signature_from)
        if args.update:
            bench.install(args.update, "commit")
        if args.rollback:
            bench.install(args.rollback, "rollback")
    except (BenchError, bp.BenchParseError, OSError, http.client.HTTPException, subprocess.TimeoutExpired) as e:
        bench.record(failed("bench", f"stopped: {e}"))
    except KeyboardInterrupt:
        bench.record(failed("bench", "interrupted: the checks after this did not run"))
    return bench.report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print()
    print(table(report.checks))
    if args.report:
        args.report.write_text(markdown(report, args.box), encoding="utf-8")
        print(f"Markdown for the bench report: {args.report}")
    return report.exit_status()


if __name__ == "__main__":
    sys.exit(main())
