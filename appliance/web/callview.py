"""One fax's call as a person reads it: who called, when, how, how it ended, where it went.

The fax page and the diagnostics file read a FaxRecord through here, never its raw ``extra``
dictionary: every fact becomes a label and plain text (times and durations are left to the
page's own filters), a fact the call did not report is left out rather than shown empty, the T.30
trace is decoded (``appliance.fax.t30decode``) and the media counters become small tables.  What
comes from the call (numbers, names, TSI, SIP values) stays text: the templates escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.fax.t30decode import (
    Capabilities,
    Frame,
    ImageData,
    Line,
    Note,
    TraceItem,
    chosen_settings,
    frames_only,
    parse_trace,
    result_in_words,
)
from appliance.spool.store import FaxRecord, Job

#: ``extra`` keys this module reads (anything else is shown under "Other facts", in words)
KNOWN_EXTRA = frozenset(
    {
        "remote",
        "diversion",
        "peer",
        "exchange_um",
        "um_referral_ignored",
        "route",
        "trace",
        "page_stats",
        "refused_pages",
        "remote_vendor",
        "remote_model",
        "hangup_reason",
        "end_reason",
        "mode",
        "switches",
        "rtp",
        "udptl",
        "capture",
        "device",
        "rings",
        "caller_id",
        "modem_class",
        "class1",
        "call_seconds",
        "modem_history",
        "bit_order_reversed",
    }
)

_RESOLUTIONS = {
    "204x98": "standard (204x98 dpi)",
    "204x196": "fine (204x196 dpi)",
    "204x391": "superfine (204x391 dpi)",
    "408x391": "ultrafine (408x391 dpi)",
    "200x100": "standard (200x100 dpi)",
    "200x200": "fine (200x200 dpi)",
}
_MEDIA = {
    "T.38": "T.38 fax packets over UDPTL",
    "G.711 PCMU": "G.711 audio, \u00b5-law (PCMU)",
    "G.711 PCMA": "G.711 audio, A-law (PCMA)",
}
#: how the SIP side saw the call end (sip/useragent.py's reasons)
_ENDED = {
    "remote BYE": "the caller hung up (BYE)",
    "local hangup": "the appliance hung up (BYE)",
    "no ACK": "the caller never confirmed the answer (no ACK)",
}
_JOB_STATES = {
    "queued": "queued",
    "delivering": "being delivered",
    "delivered": "delivered",
    "failed_retrying": "failed, retrying",
    "dead": "failed",
}


@dataclass(frozen=True)
class Fact:
    label: str
    value: str | float
    #: "text", "time" (epoch seconds, shown with the page's time filter) or "duration" (seconds)
    kind: str = "text"
    #: a second, quieter line: the caller's name under the number, spandsp's words under ours
    sub: str = ""
    number: bool = False  # digits and idents: shown in the number font


@dataclass(frozen=True)
class TraceRow:
    direction: str  # "received", "sent" or "" (a note)
    name: str
    meaning: str
    details: tuple[str, ...] = ()
    problem: bool = False


@dataclass(frozen=True)
class Table:
    title: str
    rows: tuple[tuple[str, str], ...]


@dataclass
class CallView:
    who: list[Fact] = field(default_factory=list)
    when: list[Fact] = field(default_factory=list)
    how: list[Fact] = field(default_factory=list)
    outcome: list[Fact] = field(default_factory=list)
    where: list[Fact] = field(default_factory=list)
    other: list[Fact] = field(default_factory=list)
    ids: list[Fact] = field(default_factory=list)
    trace: list[TraceRow] = field(default_factory=list)
    #: how many trace items there were, of which frames, before the page's selection
    trace_items: list[TraceItem] = field(default_factory=list)
    media: list[Table] = field(default_factory=list)
    capture: str = ""

    def sections(self) -> list[tuple[str, list[Fact]]]:
        """The call's facts in the page's order, empty sections left out."""
        named = [
            ("Who", self.who),
            ("When", self.when),
            ("How", self.how),
            ("How it ended", self.outcome),
            ("Where it went", self.where),
            ("Other facts", self.other),
            ("For support", self.ids),
        ]
        return [(title, facts) for title, facts in named if facts]


# -- words for values -------------------------------------------------------------------------------
def plain(value: Any) -> str:
    """Any stored value as words: lists joined, mappings as "key: value", nothing for empties."""
    if value is None or value == "" or value == [] or value == {}:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(p for p in (plain(v) for v in value) if p)
    if isinstance(value, dict):
        parts = [f"{humanise(str(k))}: {v}" for k, v in ((k, plain(v)) for k, v in value.items()) if v]
        return "; ".join(parts)
    return str(value)


def humanise(key: str) -> str:
    """A stored key as a label: "end_reason" -> "End reason"."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "?"


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _add(facts: list[Fact], label: str, value: Any, **kw: Any) -> None:
    """Append a fact unless it says nothing."""
    text = plain(value)
    if text:
        facts.append(Fact(label, text, **kw))


# -- the view ---------------------------------------------------------------------------------------
def call_view(fax: FaxRecord, jobs: list[Job]) -> CallView:
    """Everything the fax page says about the call, in words."""
    extra = fax.extra if isinstance(fax.extra, dict) else {}
    items = (
        parse_trace(str(x) for x in extra.get("trace", []) if isinstance(x, str))
        if isinstance(extra.get("trace"), list)
        else []
    )
    dcs = chosen_settings(items)
    view = CallView(trace_items=items)
    _who(view.who, fax, extra)
    _when(view.when, fax)
    _how(view.how, fax, extra, dcs)
    _outcome(view.outcome, fax, extra)
    _where(view.where, extra, jobs)
    for key in sorted(k for k in extra if k not in KNOWN_EXTRA):
        _add(view.other, humanise(str(key)), extra[key])
    _add(view.ids, "SIP Call-ID", fax.call_id, number=True)
    _add(view.ids, "Modem caller ID report", extra.get("caller_id"), number=True)
    view.trace = [_row(i) for i in frames_only(items)]
    view.media = media_tables(extra)
    view.capture = _capture_text(extra.get("capture"))
    return view


def _who(facts: list[Fact], fax: FaxRecord, extra: dict[str, Any]) -> None:
    number, name = fax.caller_number.strip(), fax.caller_name.strip()
    facts.append(
        Fact("Caller", number or ("not given" if not name else "number not given"), sub=name, number=bool(number))
    )
    facts.append(
        Fact("Sending fax's ID (TSI)", fax.remote_ident.strip() or "not sent", number=bool(fax.remote_ident.strip()))
    )
    machine = " ".join(x for x in (_text(extra.get("remote_vendor")), _text(extra.get("remote_model"))) if x)
    _add(facts, "Sending fax machine", machine)
    _add(facts, "Called number", fax.called_number, number=True)
    diversion = (
        [d for d in extra.get("diversion", []) if isinstance(d, str) and d]
        if isinstance(extra.get("diversion"), list)
        else []
    )
    if diversion:
        facts.append(
            Fact(
                "Diverted from",
                diversion[0],
                number=True,
                sub=("then " + ", ".join(diversion[1:])) if diversion[1:] else "",
            )
        )
    facts.append(Fact("Line", _line(fax, extra)))
    um = extra.get("exchange_um")
    if isinstance(um, dict) and _text(um.get("recipient")):
        facts.append(Fact("Exchange UM referral", f"for {um['recipient']}"))


def _line(fax: FaxRecord, extra: dict[str, Any]) -> str:
    peer, remote, device = _text(extra.get("peer")), _text(extra.get("remote")), _text(extra.get("device"))
    if fax.line.startswith("sip:") or peer or remote:
        who = f"peer {peer}" if peer else fax.line.removeprefix("sip:") or "SIP"
        return f"SIP, {who}" + (f" (from {remote})" if remote else "")
    if device or fax.line:
        rings = _int(extra.get("rings"))
        text = f"modem {device or fax.line}"
        if device and fax.line and fax.line != device:
            text = f"modem line {fax.line} ({device})"
        return text + (f", answered after {rings} ring{'s' if rings != 1 else ''}" if rings else "")
    return "not recorded"


def _when(facts: list[Fact], fax: FaxRecord) -> None:
    facts.append(Fact("Started", fax.created, kind="time"))
    if fax.finished is not None:
        facts.append(Fact("Ended", fax.finished, kind="time"))
    if fax.duration:
        facts.append(Fact("Call duration", fax.duration, kind="duration"))


def _how(facts: list[Fact], fax: FaxRecord, extra: dict[str, Any], dcs: Capabilities | None) -> None:
    mode = _text(extra.get("mode"))
    switches = extra.get("switches") if isinstance(extra.get("switches"), list) else []
    if mode:
        facts.append(Fact("Media", _MEDIA.get(mode, mode), sub=("changes: " + plain(switches)) if switches else ""))
    elif _text(extra.get("modem_class")):
        facts.append(Fact("Media", f"analog modem, Class {extra['modem_class']}"))
    if dcs is not None and dcs.bit_rate:
        facts.append(Fact("Modem and speed", dcs.modem_and_rate))
    elif fax.bit_rate:
        facts.append(Fact("Speed", f"{fax.bit_rate:,} bit/s"))
    if fax.bit_rate or dcs is not None:  # only a call that got as far as the settings has an ECM answer
        ecm = fax.ecm or (dcs is not None and dcs.ecm)
        facts.append(Fact("Error correction (ECM)", "yes" if ecm else "no"))
    if fax.resolution:
        facts.append(Fact("Resolution", _RESOLUTIONS.get(fax.resolution, f"{fax.resolution} dpi")))
    elif dcs is not None:
        facts.append(Fact("Resolution", dcs.resolutions[0]))
    if dcs is not None:
        facts.append(Fact("Compression", dcs.compression[0]))
        facts.append(Fact("Page width", dcs.width))
    facts.append(Fact("Pages", _pages(fax)))
    if fax.bad_rows:
        facts.append(
            Fact("Damaged rows", f"{fax.bad_rows:,}", sub="rows the line garbled, repaired from their neighbours")
        )


def _pages(fax: FaxRecord) -> str:
    if fax.state == "receiving":
        return "still arriving"
    text = f"{fax.pages}"
    if not fax.complete and fax.state != "no_fax":
        text += " (incomplete: the call ended before the last page)"
    return text


def _outcome(facts: list[Fact], fax: FaxRecord, extra: dict[str, Any]) -> None:
    if fax.state == "receiving":
        facts.append(Fact("Result", "the call is still in progress"))
        return
    class2 = str(extra.get("modem_class", "")).startswith("2")
    technical = fax.result_text.strip()
    # our own words first: a page refused by the spool, a call we ended (T.30's code says "OK" or less)
    ours = fax.result_code < 0 or class2 or (fax.result_code == 0 and technical not in ("", "OK"))
    words = None if ours else result_in_words(fax.result_code)
    if words and technical:
        sub = f"T.30: {technical} (code {fax.result_code})" if fax.result_code else ""
    else:
        sub = f"code {fax.result_code}" if fax.result_code > 0 else ""
    facts.append(Fact("Result", words or technical or "not recorded", sub=sub))
    _add(facts, "Appliance hung up because", extra.get("hangup_reason"))
    ended = _text(extra.get("end_reason"))
    _add(facts, "Call ended", _ENDED.get(ended, ended))


def _where(facts: list[Fact], extra: dict[str, Any], jobs: list[Job]) -> None:
    if jobs:
        facts.append(Fact("Sent to", ", ".join(f"{j.recipient} ({_JOB_STATES.get(j.state, j.state)})" for j in jobs)))
    route = extra.get("route")
    if isinstance(route, dict) and _text(route.get("rule")):
        rule = route["rule"]
        if rule == "default":
            chosen = "the default mailbox"
        elif rule.startswith("called "):
            chosen = f"the called number {rule.removeprefix('called ')}"
        else:
            chosen = f"routing rule {rule}"
        facts.append(Fact("Chosen by", chosen))


def _row(item: TraceItem) -> TraceRow:
    if isinstance(item, Frame):
        return TraceRow("received" if item.received else "sent", item.name, item.meaning, item.details)
    if isinstance(item, ImageData):
        return TraceRow("received" if item.received else "sent", "ECM data", item.text().removeprefix("image data: "))
    if isinstance(item, Note):
        return TraceRow("", "spandsp", item.text, problem=True)
    assert isinstance(item, Line)
    return TraceRow("", "modem", item.text)


# -- media counters ---------------------------------------------------------------------------------
#: (key, label, always shown): the rest only when not zero
_RTP_ROWS = (
    ("received", "Packets received", True),
    ("fillin", "Audio filled in for missing packets", True),
    ("late", "Arrived too late to be played", True),
    ("duplicate", "Duplicates", True),
    ("ignored_pt", "Other payloads ignored (comfort noise, tones)", False),
    ("overflow", "Dropped: playout buffer full", False),
    ("resync", "Stream restarts", False),
    ("slips", "Clock slips", False),
    ("slipped", "Audio slipped by clock slips", False),
    ("bad", "Malformed packets", False),
    ("rtp_in_t38", "Audio after the switch to T.38 (ignored)", False),
)
_UDPTL_ROWS = (
    ("received", "Datagrams received", True),
    ("delivered", "Fax packets (IFP) delivered", True),
    ("lost", "Fax packets lost", True),
    ("recovered_redundancy", "Recovered from redundancy", True),
    ("recovered_fec", "Recovered by error correction (FEC)", False),
    ("duplicates", "Duplicates", True),
    ("late", "Arrived too late", False),
    ("rejected", "Malformed (rejected)", False),
    ("resyncs", "Sequence restarts", False),
)
_SEND_ROWS = (
    ("sent", "Datagrams sent", True),
    ("max_late_ms", "Our latest send (ms after its time)", True),
    ("late_5ms", "Sent more than 5 ms late", True),
    ("not_sent", "Not sent (the appliance stalled)", False),
    ("from_stranger", "Datagrams from other addresses (ignored)", False),
)


def _number(key: str, value: Any) -> str:
    if key == "fillin" or key == "slipped":  # samples at 8 kHz
        return f"{value / 8:,.0f} ms" if isinstance(value, (int, float)) else plain(value)
    if key == "max_late_ms" and isinstance(value, (int, float)):
        return f"{value:.1f}"
    return plain(value) if value not in (None, "") else ""


def _table(title: str, stats: dict[str, Any], rows: tuple[tuple[str, str, bool], ...]) -> Table | None:
    out = []
    for key, label, always in rows:
        value = stats.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value or always:
            out.append((label, _number(key, value) or "0"))
    return Table(title, tuple(out)) if out else None


def media_tables(extra: dict[str, Any]) -> list[Table]:
    """The call's media counters as small tables: received audio, received fax packets, sending."""
    rtp = extra.get("rtp")
    if not isinstance(rtp, dict):
        rtp = {}
    udptl = extra.get("udptl")
    if not isinstance(udptl, dict):
        udptl = {}
    tables: list[Table | None] = []  # a table with nothing to show is None, dropped at the end
    if _int(rtp.get("received")):
        tables.append(_table("Audio received (RTP)", rtp, _RTP_ROWS))
    if _int(udptl.get("received")):
        tables.append(_table("Fax packets received (UDPTL)", udptl, _UDPTL_ROWS))
    sending = _table("Sent by the appliance", rtp, _SEND_ROWS) if rtp else None
    if sending is not None:
        late = rtp.get("late_ticks")
        if isinstance(late, list) and late:
            when = ", ".join(
                f"{t[0]:g} s ({t[1]:g} ms)"
                for t in late[:10]
                if isinstance(t, (list, tuple)) and len(t) == 2 and all(isinstance(x, (int, float)) for x in t)
            )
            if when:
                sending = Table(sending.title, sending.rows + (("Late sends, into the call", when),))
        tables.append(sending)
    class1 = extra.get("class1")
    if isinstance(class1, dict):
        rows = tuple(
            (humanise(str(k)), plain(v) or "0")
            for k, v in class1.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        if rows:
            tables.append(Table("Modem (Class 1)", rows))
    return [t for t in tables if t is not None]


def _capture_text(capture: Any) -> str:
    if not isinstance(capture, dict) or not _int(capture.get("packets")):
        return ""
    text = f"{_int(capture['packets']):,} packets, {_int(capture.get('bytes')) / 1e6:.1f} MB"
    if _int(capture.get("left_out")):
        text += f"; {_int(capture['left_out']):,} more after the size limit were not kept"
    return text


def facts_text(view: CallView, when: Any, duration: Any) -> str:
    """The call's facts as "label: value" lines (the diagnostics file's summary)."""
    out: list[str] = []
    for title, facts in view.sections():
        out.append(title)
        for f in facts:
            value = when(f.value) if f.kind == "time" else duration(f.value) if f.kind == "duration" else f.value
            out.append(f"  {f.label}: {value}" + (f" ({f.sub})" if f.sub else ""))
        out.append("")
    return "\n".join(out)


def tables_text(tables: list[Table]) -> str:
    out: list[str] = []
    for t in tables:
        out.append(t.title)
        width = max(len(label) for label, _ in t.rows)
        out += [f"  {label:<{width}}  {value}" for label, value in t.rows]
        out.append("")
    return "\n".join(out) if out else "No media counters were recorded for this call.\n"
