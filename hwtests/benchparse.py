"""What bench.py reads from the box, parsed and judged without touching the network.

Each function takes what arrived (a page, a JSON answer, a command's output, a certificate's
bytes) and returns facts or a verdict; bench.py does the I/O. Everything here is tested in
tests/hwbench/ with answers shaped like the box's own.

Slots come from RAUC's own JSON (``rauc status --detailed --output-format=json``), the format
RAUC documents and keeps: the booted slot is the one whose ``state`` is ``booted`` (its top-level
``booted`` field is a boot name, and some back-ends put a device path there), the committed one
is ``boot_primary``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hwtests.benchreport import Status


class BenchParseError(ValueError):
    """What the box sent is not what bench.py expects; the message says what and where."""


# -- the web UI ----------------------------------------------------------------------------------
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(page: str) -> str | None:
    """The session's CSRF token from any page of the web UI (base.html's meta tag)."""
    m = _CSRF.search(page)
    return m.group(1) if m else None


def api_version(openapi: Any) -> str:
    """The appliance's version from /api/openapi.json (info.version: the installed package's)."""
    try:
        version = openapi["info"]["version"]
    except (KeyError, TypeError):
        raise BenchParseError("/api/openapi.json has no info.version") from None
    if not isinstance(version, str) or not version:
        raise BenchParseError(f"/api/openapi.json: info.version is {version!r}")
    return version


def status_problems(status: Any) -> tuple[bool, list[str], list[str]]:
    """From /api/status: (daemon up, lines that are not working, the 'bad' alerts)."""
    if not isinstance(status, dict) or "daemon_up" not in status:
        raise BenchParseError("/api/status: not the dashboard's JSON (no daemon_up)")
    bad_lines = [f"{l.get('kind')} {l.get('name')}: {l.get('state')} {l.get('detail') or ''}".strip()
                 for l in status.get("lines") or [] if isinstance(l, dict) and l.get("tone") == "bad"]
    alerts = [str(a.get("text")) for a in status.get("alerts") or []
              if isinstance(a, dict) and a.get("level") == "bad"]
    return bool(status["daemon_up"]), bad_lines, alerts


# -- faxes -----------------------------------------------------------------------------------------
def find_fax(listing: Any, caller: str) -> dict[str, Any] | None:
    """The newest fax from ``caller`` in an /api/faxes answer (bench.py gives each run a caller
    number of its own, so an older fax never passes for this one)."""
    if not isinstance(listing, dict) or not isinstance(listing.get("faxes"), list):
        raise BenchParseError("/api/faxes: no 'faxes' list in the answer")
    mine = [f for f in listing["faxes"] if isinstance(f, dict) and f.get("caller_number") == caller]
    return max(mine, key=lambda f: f.get("id", 0)) if mine else None


#: fax states after which the reception is over (decision: the spool's state names)
RECEIVED_STATES = {"received", "routed", "delivering", "delivered", "failed_retrying", "dead"}


def reception_verdict(fax: dict[str, Any], pages_sent: int) -> tuple[Status, str] | None:
    """Whether the call brought the whole fax; None while it is still being received."""
    state = fax.get("state")
    if state == "receiving":
        return None
    facts = (f"fax {fax.get('id')}: {fax.get('pages')} page(s), {fax.get('bit_rate') or '?'} bit/s, "
             f"ECM {'on' if fax.get('ecm') else 'off'}, {fax.get('bad_rows', 0)} bad row(s), "
             f"{fax.get('resolution') or '?'}, {fax.get('duration', 0):.0f} s")
    if state == "no_fax":
        return Status.FAIL, f"fax {fax.get('id')}: the call brought no fax ({fax.get('result_text') or 'no reason'})"
    if not fax.get("complete"):
        return Status.FAIL, f"{facts}; incomplete: {fax.get('result_text') or 'no reason given'}"
    if fax.get("pages") != pages_sent:
        return Status.FAIL, f"{facts}; {pages_sent} sent"
    return Status.PASS, facts


def delivery_verdict(fax: dict[str, Any]) -> tuple[Status, str] | None:
    """Whether every recipient got the fax; None while delivery goes on (a retry is not yet a
    failure: the box retries for hours, and the bench's timeout decides)."""
    jobs = [j for j in fax.get("jobs") or [] if isinstance(j, dict)]
    state = fax.get("state")
    if state == "dead" or any(j.get("state") == "dead" for j in jobs):
        why = "; ".join(f"{j.get('recipient')}: {j.get('last_error')}" for j in jobs if j.get("state") == "dead")
        return Status.FAIL, f"fax {fax.get('id')}: delivery failed for good ({why or state})"
    if state == "delivered" and jobs and all(j.get("state") == "delivered" for j in jobs):
        return Status.PASS, f"fax {fax.get('id')} delivered to " + ", ".join(str(j.get("recipient")) for j in jobs)
    return None


def delivery_pending(fax: dict[str, Any]) -> str:
    """Why a delivery has not finished yet, for the FAIL line when the bench stops waiting."""
    jobs = [j for j in fax.get("jobs") or [] if isinstance(j, dict)]
    if not jobs:
        return f"fax {fax.get('id')} is {fax.get('state')} with no delivery job"
    return f"fax {fax.get('id')} is {fax.get('state')}: " + "; ".join(
        f"{j.get('recipient')} {j.get('state')} after {j.get('attempts')} attempt(s)"
        + (f" ({j.get('last_error')})" if j.get("last_error") else "") for j in jobs)


def sender_result(output: str) -> tuple[bool, str]:
    """``faxbridge send-test-fax`` ends with one line "OK: ..." or "FAILED: ..."."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith(("OK:", "FAILED:")):
            return line.startswith("OK:"), line
    tail = output.strip().splitlines()[-1] if output.strip() else "no output"
    return False, f"send-test-fax printed no result line (last: {tail[:200]})"


def compare_pages(sent: Sequence[Any], got: Sequence[Any], skip_top: int = 0, shift: int = 0) -> list[str]:
    """Every page the same, pixel for pixel (PIL images). The problems, or [] when equal.

    A digital path (send-test-fax over SIP) must give the very page: same size, every pixel. A
    fax program that adds its header line (efax: ``shift`` = 20 rows pushed down, compared from
    ``skip_top`` = 40, as tests/modem does) leaves the rows below its header equal, and may end a
    row or two early."""
    from PIL import ImageChops

    problems = []
    if len(got) != len(sent):
        problems.append(f"{len(got)} page(s) received, {len(sent)} sent")
    for n, (s, g) in enumerate(zip(sent, got), 1):
        size = f"{g.size[0]}x{g.size[1]} received, {s.size[0]}x{s.size[1]} sent"
        if s.width != g.width or (not shift and s.height != g.height):
            problems.append(f"page {n}: {size}")
            continue
        rows = min(s.height, g.height - shift)
        if s.height - rows > 2:
            problems.append(f"page {n}: {s.height - rows} rows missing at the bottom ({size}, {shift} added on top)")
            continue
        a = s.convert("L").crop((0, skip_top, s.width, rows))
        b = g.convert("L").crop((0, skip_top + shift, g.width, rows + shift))
        box = ImageChops.difference(a, b).getbbox()
        if box is not None:
            x0, y0, x1, y1 = box
            problems.append(f"page {n} differs in the box {(x0, y0 + skip_top, x1, y1 + skip_top)} (sent page's rows)")
    return problems


def read_tiff_pages(data: bytes) -> list[Any]:
    from appliance.fax.pages import read_pages

    return read_pages(io.BytesIO(data))


# -- TLS -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertFacts:
    sha256: str
    subject: str
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    self_signed: bool

    def names_host(self, host: str) -> bool:
        """Whether a browser would accept the certificate for ``host`` (exact names, or a
        one-label wildcard); an address must be listed as an IP name."""
        import ipaddress

        try:
            return f"IP:{ipaddress.ip_address(host)}" in self.names
        except ValueError:
            pass
        host = host.lower().rstrip(".")
        for n in self.names:
            if not n.startswith("DNS:"):
                continue
            name = n[4:].lower()
            if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:] and "." in name[2:]):
                return True
        return False


def cert_facts(der: bytes) -> CertFacts:
    """Fingerprint, names and validity of the certificate the box presented (DER)."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise BenchParseError(f"the box's certificate cannot be read: {e}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple([f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
                      + [f"IP:{n}" for n in san.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        names = ()
    return CertFacts(sha256=hashlib.sha256(der).hexdigest(), subject=cert.subject.rfc4514_string(), names=names,
                     not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                     self_signed=cert.issuer == cert.subject)


def fingerprint_matches(expected: str, actual_hex: str) -> bool:
    """A pin as people copy it: hex with or without colons, any case ("AB:CD:..." or "abcd...")."""
    return re.sub(r"[^0-9a-f]", "", expected.lower()) == actual_hex.lower()


# -- mDNS ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MdnsService:
    name: str
    hostname: str
    address: str
    port: int


def avahi_services(output: str) -> list[MdnsService]:
    """Resolved services from ``avahi-browse --parsable --resolve --terminate _https._tcp``
    ("=;iface;proto;name;type;domain;host;address;port;txt"; avahi escapes ';' in names)."""
    found = []
    for line in output.splitlines():
        if not line.startswith("="):
            continue
        parts = re.split(r"(?<!\\);", line)
        if len(parts) < 9 or not parts[8].isdigit():
            continue
        name = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), parts[3]).replace("\\;", ";")
        found.append(MdnsService(name, parts[6], parts[7], int(parts[8])))
    return found


# -- slots (RAUC) ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    name: str
    bootname: str
    state: str
    boot_status: str
    version: str


@dataclass(frozen=True)
class Slots:
    """The root slots as RAUC sees them: which one runs, which one the next normal boot takes."""

    booted: str
    primary: str
    slots: dict[str, Slot] = field(default_factory=dict)

    @property
    def committed(self) -> bool:
        """The running slot is the one the box boots by default, and marked good."""
        slot = self.slots.get(self.booted)
        return self.booted == self.primary and slot is not None and slot.boot_status == "good"

    def version(self, name: str | None = None) -> str:
        slot = self.slots.get(name or self.booted)
        return slot.version if slot else ""

    def describe(self) -> str:
        slot = self.slots.get(self.booted)
        boot = f" ({slot.bootname})" if slot and slot.bootname else ""
        version = f", version {slot.version}" if slot and slot.version else ""
        state = "committed" if self.committed else f"not committed (primary {self.primary or 'unknown'}" + (
            f", {slot.boot_status}" if slot and slot.boot_status else "") + ")"
        return f"booted {self.booted}{boot}{version}, {state}"


def parse_rauc_status(text: str) -> Slots:
    """``rauc status --detailed --output-format=json`` → the root slots (class ``rootfs``)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BenchParseError(f"rauc status: not JSON ({e}); first line: {text.strip()[:120]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("slots"), list):
        raise BenchParseError("rauc status: no 'slots' list in the JSON")
    slots: dict[str, Slot] = {}
    booted = ""
    for entry in data["slots"]:
        if not isinstance(entry, dict):
            continue
        for name, s in entry.items():
            if not isinstance(s, dict) or s.get("class") not in (None, "rootfs"):
                continue
            status = s.get("slot_status") if isinstance(s.get("slot_status"), dict) else {}
            bundle = status.get("bundle") if isinstance(status.get("bundle"), dict) else {}
            slot = Slot(name=str(name), bootname=str(s.get("bootname") or ""), state=str(s.get("state") or ""),
                        boot_status=str(s.get("boot_status") or ""), version=str(bundle.get("version") or ""))
            slots[slot.name] = slot
            if slot.state == "booted":
                booted = slot.name
    if not slots:
        raise BenchParseError("rauc status: no rootfs slot listed")
    if not booted:
        raise BenchParseError("rauc status: no slot is in state 'booted' (is the root a RAUC slot?)")
    primary = data.get("boot_primary")
    return Slots(booted=booted, primary=str(primary) if isinstance(primary, str) else "", slots=slots)


#: one poll while an update goes on: seconds since it started, and the slots (None: no answer)
Observation = tuple[float, "Slots | None"]


def timeline(before: Slots, seen: Sequence[Observation]) -> str:
    """What the box did, in order, each step once: "down at 12 s, rootfs.1 (trial) at 95 s, ..."."""
    steps: list[str] = []
    last = ""
    for t, s in seen:
        if s is None:
            step = "no answer"
        elif s.booted == before.booted:
            step = f"{s.booted} ({'committed' if s.committed else 'not committed'})"
        else:
            step = f"{s.booted} ({'committed' if s.committed else 'trial'})"
        if step != last:
            steps.append(f"{step} at {t:.0f} s")
            last = step
    return ", ".join(steps) if steps else "nothing observed"


def update_verdict(expect: str, before: Slots, seen: Sequence[Observation]) -> tuple[Status, str] | None:
    """Where an installed update stands: None while it is open, else the verdict.

    ``expect`` is "commit" (a good bundle: the other slot, tried, then committed) or "rollback"
    (a bundle whose daemon cannot start: back on the old slot by itself). A rollback passes only
    when the box was seen on the new slot or left it marked bad: coming back to the old slot
    without ever having tried the new one proves nothing about rollback."""
    if expect not in ("commit", "rollback"):
        raise ValueError(f"expect must be commit or rollback, not {expect!r}")
    went_down = any(s is None for _, s in seen)
    tried = any(s is not None and s.booted != before.booted for _, s in seen)
    last = seen[-1][1] if seen else None
    story = timeline(before, seen)
    if last is None or not went_down:
        return None
    if last.booted != before.booted:
        if not last.committed:
            return None  # the trial boot: the health check has not decided yet
        if expect == "commit":
            return Status.PASS, f"committed {last.booted} (version {last.version() or '?'}): {story}"
        return Status.FAIL, f"the bundle that should fail was committed on {last.booted}: {story}"
    if not last.committed:
        return None  # back on the old slot, the firmware's one-shot boot over; wait for its health
    other = last.slots.get(next((s.booted for _, s in seen if s is not None and s.booted != before.booted), ""))
    marked_bad = any(s.boot_status == "bad" for n, s in last.slots.items() if n != before.booted)
    if expect == "commit":
        return Status.FAIL, f"rolled back to {last.booted}: the update was not committed: {story}"
    if not (tried or marked_bad):
        return Status.FAIL, (f"back on {last.booted}, but the new slot was never seen running nor marked bad, so "
                             f"nothing shows it was tried (tryboot?): {story}")
    how = "tried, then left" if tried else "marked bad"
    return Status.PASS, f"rolled back to {last.booted} ({how}{'' if other is None else ' ' + other.name}): {story}"


# -- the data partition --------------------------------------------------------------------------
#: what grow-data leaves unused at most (it does nothing for less than 16 MiB), in 512-byte sectors
GROW_SLACK_SECTORS = 32768


def data_partition_verdict(output: str) -> tuple[Status, str]:
    """From "PART DISK START SIZE TOTAL" (sectors, /sys/class/block): does the data partition
    reach the end of the card?"""
    fields = output.split()
    if len(fields) != 5 or not all(f.isdigit() for f in fields[2:]):
        return Status.FAIL, f"could not read the partition sizes: {output.strip()[:200]!r}"
    part, disk = fields[0], fields[1]
    start, size, total = (int(f) for f in fields[2:])
    free = total - start - size
    mib = lambda sectors: sectors * 512 // (1024 * 1024)  # noqa: E731
    facts = f"{part} is {mib(size)} MiB, ends {mib(max(free, 0))} MiB before the end of {disk} ({mib(total)} MiB)"
    if free < 0:
        return Status.FAIL, f"{part} ends beyond the end of {disk}: {facts}"
    if free >= GROW_SLACK_SECTORS:
        return Status.FAIL, f"not grown: {facts}"
    return Status.PASS, facts


# -- update bundles --------------------------------------------------------------------------------
#: a RAUC bundle ends with its CMS signature and the signature's size (8 bytes, big-endian)
MAX_SIGNATURE = 1024 * 1024


def signature_span(file_size: int, trailer: bytes) -> tuple[int, int]:
    """(offset, length) of a RAUC bundle's CMS signature from its last 8 bytes."""
    if len(trailer) != 8:
        raise BenchParseError("a bundle ends with 8 bytes of signature size; this file is shorter")
    length = int.from_bytes(trailer, "big")
    if not 0 < length <= min(MAX_SIGNATURE, file_size - 8):
        raise BenchParseError(f"not a RAUC bundle: its last 8 bytes give a signature of {length} bytes "
                              f"in a file of {file_size}")
    return file_size - 8 - length, length
