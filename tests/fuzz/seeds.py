"""Seed inputs for the fuzz targets, made from real data: ``python -m tests.fuzz.seeds``.

Writes ``seed-*`` files into ``tests/fuzz/corpus/<target>/`` (``make fuzz`` then minimises the
corpus with libFuzzer's merge, which keeps the seeds that add coverage).  Sources:

- the SIP messages, SDP, Referred-By values and digest headers written in tests/sip/*.py (string
  literals that look like them), and a real call between two of our user agents;
- the MIT-licensed captures in ../shared/fixtures/pcaps/ (grandstream-ht801-t38-ecm.pcap and
  sonus-asterisk-t38-nonecm.pcap only: carrier-g711-alaw-sender.pcap's licence forbids copying
  any of it): their SIP, SDP, RTP and UDPTL payloads;
- the modem dialogues in tests/modem/dialogues/ (commands, responses, Class 2 calls);
- the configuration examples in README.md;
- the gate's calls and attacks after tests/sip/test_hostile.py, the playout streams of
  tests/media/test_rtp.py, and fax TIFFs made by the code and by tests/poisonfax.py.
"""
from __future__ import annotations

import ast
import hashlib
import re
import struct
import sys
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
PCAPS = ROOT.parent / "shared" / "fixtures" / "pcaps"
#: the only captures whose licence (MIT) lets their bytes be copied into the repository
FREE_PCAPS = ("grandstream-ht801-t38-ecm.pcap", "sonus-asterisk-t38-nonecm.pcap")
_SIP_START = re.compile(rb"^(?:[A-Z]+ [^ \r\n]+ SIP/2\.0|SIP/2\.0 \d{3})")


def _literals(paths: Iterable[Path]) -> list[bytes]:
    """Every str/bytes literal in the given Python files (implicit concatenation joined)."""
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                value = node.value
                out.append(value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value)
    return out


def _pcap_udp() -> list:  # type: ignore[type-arg]
    sys.path.insert(0, str(ROOT / "tests" / "media"))
    from udptl_helpers import read_pcap_udp

    datagrams = []
    for name in FREE_PCAPS:
        path = PCAPS / name
        if path.exists():
            datagrams += read_pcap_udp(path)
        else:
            print(f"seeds: {path} not found: its payloads are left out", file=sys.stderr)
    return datagrams


def _call_messages() -> list[bytes]:
    """A whole call between two of our user agents: G.711, a re-INVITE to T.38, BYE."""
    sys.path.insert(0, str(ROOT / "tests" / "sip"))
    from sip_helpers import A, B, OFFER, Net, events

    from appliance.sip.events import IncomingCall
    from appliance.sip.sdp import answer_audio, offer_t38

    net = Net()
    try:
        call_id = net.a.invite("sip:100@127.0.0.2:5060", from_uri="sip:fax@127.0.0.1:5061", sdp=OFFER,
                               local=A, remote=(B.host, B.port), now=0.0, from_display="Fax Tester")
        net.run(0.0)
        incoming = next(e for e in events(net.b) if isinstance(e, IncomingCall))
        net.b.send_provisional(call_id, 180, 0.05)
        net.b.answer_call(call_id, answer_audio(incoming.offer, "127.0.0.2", 50000, 2, 1).sdp, 0.1)
        net.run(0.1)
        net.b.reinvite(call_id, offer_t38("127.0.0.2", 50002, 2, 2), 1.0)
        net.run(1.0)
        net.a.hangup(call_id, 5.0)
        net.run(5.0)
    except Exception as e:  # noqa: BLE001 - the helpers' API may move: the other seeds still do
        print(f"seeds: the in-memory call stopped early ({e!r})", file=sys.stderr)
    return [bytes(msg) for _, msg in net.log]


def sip_messages() -> list[bytes]:
    found = [v for v in _literals(sorted((ROOT / "tests" / "sip").glob("*.py"))) if _SIP_START.match(v)]
    found += [d.payload for d in _pcap_udp() if _SIP_START.match(d.payload)]
    found += _call_messages()
    return found


def _body(msg: bytes) -> bytes:
    return re.split(rb"\r?\n\r?\n", msg, maxsplit=1)[1] if re.search(rb"\r?\n\r?\n", msg) else b""


def _header_values(msgs: list[bytes], name: bytes) -> list[bytes]:
    pattern = re.compile(rb"^(?:" + name + rb")\s*:\s*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
    return [m.group(1) for msg in msgs for m in pattern.finditer(msg.split(b"\r\n\r\n")[0])]


def sdp_bodies(msgs: list[bytes]) -> list[bytes]:
    from appliance.sip.sdp import T38Params, offer_audio, offer_t38

    found = [b for b in map(_body, msgs) if b.lstrip().startswith(b"v=")]
    found += [v for v in _literals(sorted((ROOT / "tests" / "sip").glob("test_*sdp*.py"))) if v.startswith(b"v=")]
    found += [offer_audio("192.0.2.1", 40000, 1, 1).encode(), offer_t38("192.0.2.1", 40002, 1, 2).encode(),
              offer_t38("192.0.2.1", 40002, 1, 2, T38Params(udp_ec="t38UDPFEC", fill_bit_removal=True)).encode()]
    return found


def referred_by(msgs: list[bytes]) -> list[bytes]:
    found = _header_values(msgs, rb"Referred-By|b")
    found += [v for v in _literals([ROOT / "tests" / "sip" / "test_exchange_um.py"]) if b"msExchUM" in v]
    return found


def digest_challenges(msgs: list[bytes]) -> list[bytes]:
    from appliance.sip.digest import DigestServer

    found = _header_values(msgs, rb"WWW-Authenticate")
    found += [b"P " + v for v in _header_values(msgs, rb"Proxy-Authenticate")]
    server = DigestServer("faxbridge", key=b"k" * 32)
    now = 1_700_000_000.0
    found += [v.encode() for v in server.challenges(now)] + [b"\n".join(v.encode() for v in server.challenges(now, True))]
    found += [v for v in _literals([ROOT / "tests" / "sip" / "test_digest.py"]) if v.startswith(b"Digest ")]
    return found


def digest_authorizations(msgs: list[bytes]) -> list[bytes]:
    """Answers that verify, with the nonce and response as the target's placeholders."""
    from appliance.sip.digest import DigestServer, build_authorization, parse_challenge

    server = DigestServer("faxbridge", key=b"k" * 32)
    nonce = server.nonce(1_700_000_000.0)
    found = _header_values(msgs, rb"Authorization|Proxy-Authorization")
    for challenge in server.challenges(1_700_000_000.0):
        c = parse_challenge(challenge)
        value = build_authorization(c, "fax", "secret", "INVITE", "sip:100@192.0.2.1", 1, "0a4f113b")
        digest = re.search(r'response="([0-9a-f]+)"', value).group(1)  # type: ignore[union-attr]
        found.append(value.replace(nonce, "@NONCE@").replace(digest, "@RESPONSE@").encode())
        no_qop = value.replace(', qop=auth, nc=00000001, cnonce="0a4f113b"', "")
        found.append(no_qop.replace(nonce, "@NONCE@").replace(digest, "@RESPONSE@").encode())
    return found


def rtp_packets(datagrams: list) -> list[bytes]:  # type: ignore[type-arg]
    from appliance.media.rtp import RtpPacket, RtpStream, looks_like_rtp

    found, sizes = [], set()
    for d in datagrams:
        if looks_like_rtp(d.payload) and 5060 not in (d.src[1], d.dst[1]) and len(d.payload) not in sizes:
            try:
                RtpPacket.parse(d.payload)
            except ValueError:
                continue
            sizes.add(len(d.payload))
            found.append(d.payload)
    import random
    stream = RtpStream(0, random.Random(1))
    found += [stream.packet(b"\xff" * 160), stream.packet(b"\x7f" * 20)]
    found.append(b"\xb1\x80\x00\x01" + b"\x00" * 8 + b"\x00\x00\x00\x01" + b"\xbe\xde\x00\x01abcd" + b"pay\x03")
    return found


def udptl_streams(datagrams: list) -> tuple[list[bytes], list[list[bytes]]]:  # type: ignore[type-arg]
    """Distinct-looking datagrams of each sender's UDPTL stream, and the streams themselves."""
    from appliance.media.udptl import UdptlError, UdptlSender, decode

    streams: dict[tuple, list[bytes]] = {}
    for d in datagrams:
        if 5060 in (d.src[1], d.dst[1]):
            continue
        try:
            decode(d.payload)
        except UdptlError:
            continue
        streams.setdefault((d.src, d.dst), []).append(d.payload)
    streams = {k: v for k, v in streams.items() if len(v) >= 20}
    single, shapes = [], set()
    for packets in streams.values():
        for p in packets:
            shape = (len(p) // 16, p[2:4])
            if shape not in shapes:
                shapes.add(shape)
                single.append(p)
    fec = UdptlSender(fec=True, fec_span=3, fec_entries=2)
    single += [fec.packet(bytes([0x06 + i % 3]) * (1 + i % 5)) for i in range(12)][6:]
    return single, list(streams.values())


def _records_stream(packets: list[bytes]) -> bytes:
    return b"\x00" + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def _round_trip(ifps: list[bytes], flags: bytes) -> bytes:
    out = b"\x01" + flags
    for i, ifp in enumerate(ifps):
        ifp = ifp[:64] or b"\x06"
        control = (len(ifp) - 1) << 1 | (1 if i % 7 == 3 else 0) | (0x80 if i % 11 == 5 else 0)
        out += bytes([control]) + ifp
    return out


def modem_dialogues() -> list:  # type: ignore[type-arg]
    sys.path.insert(0, str(ROOT))
    from tests.modem.dialogue import DIALOGUES, load

    return [(p.name, load(p)) for p in sorted(DIALOGUES.glob("*.txt"))]


def at_scripts() -> list[bytes]:
    from tests.fuzz.targets.at_channel import COMMANDS
    from tests.modem.dialogue import wire_bytes

    found = []
    for _, turns in modem_dialogues():
        for numeric in (False, True):
            out = b""
            for turn in turns:
                if turn.cmd is not None:
                    if turn.cmd in COMMANDS:
                        out += bytes([0, COMMANDS.index(turn.cmd)])
                    else:
                        text = turn.cmd.encode()[:63]
                        out += bytes([0x80, len(text)]) + text
                wire = wire_bytes(turn, echo=not numeric, numeric=numeric)
                for i in range(0, len(wire), 255):
                    out += bytes([1, len(wire[i:i + 255])]) + wire[i:i + 255]
                out += bytes([2, 5])
            found.append(out)
    return found


def fparam_lines() -> list[bytes]:
    lines = set()
    for path in sorted((ROOT / "tests" / "modem" / "dialogues").rglob("*.txt")):
        for line in path.read_text().splitlines():
            if line.startswith("< ") and (line[2:3] in "+(0123456789"):
                lines.add(line[2:].encode("latin-1"))
    return sorted(lines)


def _tiny_page() -> bytes:
    """One short MH-coded page (a white strip with a black bar), as a modem delivers it, stuffed."""
    import tempfile

    from PIL import Image, ImageDraw

    from appliance.fax.pages import write_fax_tiff
    from appliance.modem.dle import dle_stuff
    from appliance.spandsp.t4 import T4_1D, T4Transmitter

    image = Image.new("1", (1728, 12), 1)
    ImageDraw.Draw(image).rectangle((100, 3, 900, 8), fill=0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "page.tif"
        write_fax_tiff([image], path, dpi=(204, 98))
        with T4Transmitter(path) as tx:
            data = tx.encode_page(T4_1D)
    return dle_stuff(data) + b"\x10\x03"


def class2_calls() -> list[bytes]:
    """The Class 2 dialogues as the modem's side of the call: records the driver reads in turn."""
    page = _tiny_page()
    found = []
    for path in sorted((ROOT / "tests" / "modem" / "dialogues" / "class2").glob("*.txt")):
        variant, records, current = "2.0", [], b""
        for line in path.read_text().splitlines():
            if line.startswith("@setup"):
                variant = line.split()[1]
            elif line.startswith("> "):
                if current:
                    records.append(current)
                current = b""
            elif line.startswith("<data"):
                records.append(current)
                current = b""
                for i in range(0, len(page), 255):
                    records.append(page[i:i + 255])
            elif line.startswith("< ") or line.startswith("<! "):
                current += b"\r\n" + line.split(" ", 1)[1].encode("latin-1") + b"\r\n"
        records.append(current)
        setup = [b"\r\nOK\r\n"] * 3 + [b"\r\n1,5,0,2,0,0,0,0\r\nOK\r\n", b"\r\nOK\r\n"] + [b"\r\nOK\r\n"] * 2
        if variant == "2":
            setup = [b"\r\nOK\r\n"] * 3 + [b"\r\nERROR\r\n"]
        chunks = setup + [r for r in records if r]
        flags = (1 if variant == "2.0" else 0) | 2
        found.append(bytes([flags]) + b"".join(bytes([len(r)]) + r for c in chunks for r in _split(c)))
    return found


def _split(data: bytes) -> list[bytes]:
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


def readme_configs() -> list[bytes]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.encode() for b in re.findall(r"```toml\n(.*?)```", text, re.S)]
    return blocks + [b"\n".join(blocks)]


def config_files(blocks: list[bytes]) -> list[bytes]:
    from tests.fuzz.targets.config_load import SEPARATOR
    from tests.fuzz.targets.config_restore import BEFORE_MAIN, BEFORE_SECRETS

    found = list(blocks) + [BEFORE_MAIN.encode() + SEPARATOR + BEFORE_SECRETS.encode()]
    found += [b + SEPARATOR + b'[delivery]\npassword = "s3cret"\n' for b in blocks if b"[delivery]" in b]
    found += [b + SEPARATOR + b'[[sip.registrations]]\nname = "pbx"\npassword = "s3cret"\n'
              for b in blocks if b"[[sip.registrations]]" in b]
    return found


def query_strings() -> list[bytes]:
    return [b"limit=50&offset=0", b"state=delivered&q=ACME", b"from=2026-01-01&to=2026-01-31",
            b"caller=%2B4930123456&called=5551000&tsi=ACME+Sales&recipient=sales%40example.com",
            b"before=1767225600.25_12", b"after=1767225600_3&deleted=1", b"to=fax%40example.com",
            b"limit=500&offset=100000&state=failed_retrying&q=%C3%A9"]


def settings_forms() -> list[bytes]:
    from urllib.parse import urlencode

    from appliance.web.forms import show_value
    from appliance.web.settings_fields import (DELIVERY_FIELDS, MODEM_FIELDS, PEERS, REGISTRATIONS, ROUTING_FIELDS,
                                               RULES, SIP_FIELDS, SYSTEM_FIELDS)
    from appliance.web.tomledit import defaults

    found = []
    for fields in (SYSTEM_FIELDS, SIP_FIELDS, MODEM_FIELDS, ROUTING_FIELDS, DELIVERY_FIELDS):
        form = []
        for f in fields:
            value = show_value(f, defaults(f.section).get(f.name))
            if f.kind == "bool":
                form.append((f.key + "-shown", "1"))
                if value:
                    form.append((f.key, "on"))
            elif f.kind != "secret":
                form.append((f.key, str(value)))
        found.append(urlencode(form).encode())
    found.append(b"peers-count=2&peers-0-_origin=&peers-0-name=gw1&peers-0-match=192.0.2.10&peers-0-transport=udp"
                 b"&peers-0-t38=accept&peers-0-username=gw&peers-0-password=pw&peers-0-t38_max_datagram=0"
                 b"&peers-1-_origin=&peers-1-name=&peers-1-match=")
    found.append(b"regs-count=1&regs-0-_origin=0&regs-0-name=pbx&regs-0-registrar=sip%3Apbx.example.com"
                 b"&regs-0-user=100&regs-0-expires=3600&regs-0-password=&regs-0-password-clear=1")
    found.append(b"rules-count=2&rules-0-_position=2&rules-0-name=sales&rules-0-called=5551000"
                 b"&rules-0-to=sales%40example.com&rules-0-format=pdf&rules-0-tiff=&rules-0-um_recipient="
                 b"&rules-1-_position=1&rules-1-name=um&rules-1-um_recipient=true&rules-1-use_um_recipient=on"
                 b"&rules-1-use_um_recipient-shown=1&rules-1-format=tiff&rules-1-subject=Fax+from+%7Bcaller%7D")
    found.append(b"routing.default=faxes%40example.com&routing.called=5551000+%3D+sales%40example.com")
    return found


def api_requests() -> list[bytes]:
    return [b"/api/faxes?" + q for q in query_strings()[:6]] + [b"/faxes?" + q for q in query_strings()[:6]] + [
        b"/api/route?called=%2B4930999100&caller=%2B49301&tsi=ACME&line=sip%3Agw1&um=a%40example.com"]


def _gate_record(msg: bytes, source: int = 0, control: int = 0, ms: int = 20) -> bytes:
    return bytes([control, source]) + struct.pack(">HH", ms, len(msg)) + msg


def gate_inputs(msgs: list[bytes]) -> list[bytes]:
    """The gate's input (tests/fuzz/targets/sip_gate.py): each real message alone from a peer, and
    the calls and attacks of tests/sip/test_hostile.py as sequences from peers and strangers."""
    sys.path.insert(0, str(ROOT / "tests" / "sip"))
    from sip_helpers import raw

    from tests.fuzz.targets.sip_gate import MAX_LEN

    found = [b"\x00\x11\x03" + _gate_record(m) for m in msgs if len(m) + 9 <= MAX_LEN]
    found += [b"\x04\x11\x03" + _gate_record(m, source=3, control=1) for m in msgs[:20]]  # private networks
    invite = raw("INVITE", call_id="call-1@gw", branch="z9hG4bKinv1")
    ack = raw("ACK", call_id="call-1@gw", branch="z9hG4bKack1", to="<sip:100@192.0.2.1>;tag=ours", cseq="1 ACK")
    bye = raw("BYE", call_id="call-1@gw", branch="z9hG4bKbye1", to="<sip:100@192.0.2.1>;tag=ours", cseq="2 BYE")
    cancel = raw("CANCEL", call_id="call-1@gw", branch="z9hG4bKinv1", cseq="1 CANCEL")
    reply = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
             b"To: <sip:a@b>;tag=2\r\nCall-ID: call-1@gw\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
    call = [_gate_record(invite), _gate_record(invite), _gate_record(cancel), _gate_record(ack),
            _gate_record(reply), _gate_record(bye)]
    found.append(b"\x08\x11\x03" + b"".join(call))
    found.append(b"\x48\x11\x03" + b"".join(call[:1]) + _gate_record(raw("INVITE", call_id="call-2@gw")))
    # in-dialog requests and an ACK from a stranger, for a call a peer set up
    found.append(b"\x00\x11\x03" + _gate_record(invite) + _gate_record(bye, source=2) + _gate_record(ack, source=2)
                 + _gate_record(ack, source=4) + _gate_record(bye, source=4))
    # the tag inside the To URI or name, from a peer that must authenticate; then with credentials
    for to in ("<sip:fax@192.0.2.1;tag=x>", '"a;tag=b" <sip:fax@192.0.2.1>'):
        found.append(b"\x01\x11\x03" + _gate_record(raw("INVITE", call_id="tag-trick@gw", to=to)))
    authorization = ('Digest username="gw", realm="faxbridge", nonce="@NONCE@", uri="sip:100@192.0.2.1", '
                     'response="@RESPONSE@", algorithm={}, qop=auth, nc=00000001, cnonce="0a4f113b"')
    for algorithm in ("SHA-256", "MD5"):
        authed = raw("INVITE", call_id="auth@gw", extra=[f"Authorization: {authorization.format(algorithm)}"])
        found.append(b"\x09\x11\x03" + _gate_record(raw("INVITE", call_id="auth@gw")) + _gate_record(authed)
                     + _gate_record(authed))
    found.append(b"\x01\x11\x03" + _gate_record(raw("INVITE", call_id="bad@gw", extra=[
        'Authorization: Digest username="gw", realm="faxbridge", nonce="@NONCE@", uri="sip:1@h", '
        'response="\u00e9' + "0" * 63 + '", algorithm=SHA-256, qop=auth, nc=0000000\u00b2, cnonce="c"'])))
    # a long request line from a stranger; an oversized ACK; a flood of strangers
    found.append(b"\x00\x11\x03" + _gate_record(raw("INVITE", uri="sip:fax@192.0.2.1;x=" + "a" * 3000), source=2))
    vias = ",".join(f"SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK{i}" for i in range(100))
    found.append(b"\x00\x11\x03" + _gate_record(raw("ACK", via=vias, call_id="nothing@x", cseq="1 ACK"))
                 + _gate_record(raw("ACK", call_id="nothing@x", cseq="1 ACK"), control=2))
    found.append(b"\x00\x00\x01" + b"".join(_gate_record(raw("OPTIONS", branch=f"z9hG4bK{i}"), source=6 + i, ms=1)
                                            for i in range(12)))
    # numbers that are not ASCII digits, from a peer (answered 400) and a stranger (dropped)
    for source in (0, 2):
        found.append(b"\x00\x11\x03" + _gate_record(raw("INVITE", replace={"Max-Forwards": "7\u00b2"}), source)
                     + _gate_record(raw("INVITE").replace(b"Content-Length: ", b"Content-Length: \xc2\xb2"), source))
    # capacity: three calls against max_calls 2 and the peer's own 1
    found.append(b"\x50\x11\x03" + b"".join(_gate_record(raw("INVITE", call_id=f"cap{i}@gw", branch=f"z9hG4bKc{i}"),
                                                         source=i % 2) for i in range(3)))
    return found


def _put(step: int = 0, length: int = 40, flags: int = 0) -> bytes:
    return b"\x00" + struct.pack(">hBB", step, length, flags)


def _tick(ms: int = 20) -> bytes:
    return bytes([1 | (ms // 5 - 1) << 2])


def playout_scripts() -> list[bytes]:
    """Streams for the playout buffer (tests/fuzz/targets/playout.py), after tests/media/test_rtp.py:
    in time, lost and reordered, across the timestamp wrap, a delay spike, a sender that slipped,
    a new SSRC, a far jump, duplicates, other payload types, a flood of tiny packets."""
    steady = _put() + _tick() + _put() + _tick()
    found = [b"\x02" + struct.pack(">I", 1000) + steady * 25,
             b"\x06" + struct.pack(">I", 0xFFFFFFFF - 800) + steady * 20,
             b"\x00" + struct.pack(">I", 0) + (_put(length=20) + _tick(10)) * 30 + (_put(length=60) + _tick(30)) * 10]
    lossy = _put() + _tick() + _put(160) + _tick() + _put(-320) + _put(160) + _tick() + _put(length=40, flags=4)
    found.append(b"\x02" + struct.pack(">I", 5) + lossy * 8 + _tick(100) * 3)
    spike = steady * 20 + _tick() * 8 + _put() * 8 + (_put() + _tick()) * 20
    found.append(b"\x02" + struct.pack(">I", 77) + spike)
    found.append(b"\x02" + struct.pack(">I", 77) + steady * 10 + _tick() * 15 + (_put() + _tick()) * 25)
    found.append(b"\x01" + struct.pack(">I", 9) + steady * 5 + (_put(0x1234, flags=17) + _tick()) * 10)
    found.append(b"\x02" + struct.pack(">I", 9) + steady * 3 + _put(20000) + _tick() + _put(-30000) + _tick() * 3)
    found.append(b"\x02" + struct.pack(">I", 9) + (_put() + _put(length=1, flags=2) + _tick()) * 10)
    found.append(b"\x02" + struct.pack(">I", 0) + _put(length=1, flags=8) + _put(1, 1, 8) * 600 + _tick(100) * 20)
    found.append(b"\x02" + struct.pack(">I", 0) + (_put(-240, 255) + _tick(50)) * 20 + b"\x0a\x03")
    return found


def tiff_files() -> list[bytes]:
    """Fax files for tests/fuzz/targets/tiff_pages.py, made by the code and by tests/poisonfax.py:
    small G4 pages (write_fax_tiff), Profile S and TIFF-F conversions, a damaged tail, poison
    pages over the size limits, a PNG to send; each for every reader, and round trips."""
    import io
    import tempfile

    from PIL import Image

    from appliance.delivery.tiff_profiles import to_profile_s
    from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
    from appliance.fax.testpages import demo_pages
    from tests.fuzz.targets.tiff_pages import MAX_LEN
    from tests.poisonfax import fax_tiff, good_page, poison_page

    files = []
    with tempfile.TemporaryDirectory() as d:
        for dpi, count in ((FINE, 1), (STANDARD, 2)):
            pages = [p.crop((0, 0, p.width, 160)) for p in demo_pages(count, dpi)]
            path = Path(d) / "demo.tif"
            write_fax_tiff(pages, path, dpi)
            files.append(path.read_bytes())
        files.append(to_profile_s(files[-1]))
    files.append(files[-2][: len(files[-2]) * 3 // 4])  # a damaged tail: the call dropped mid-page
    _, good = good_page(1, rows=120)
    files.append(fax_tiff([good, poison_page(rows=30_000)]))
    files.append(fax_tiff([poison_page(rows=12_000, width=4864, dpi=(408, 391)), good]))
    png = io.BytesIO()
    Image.new("L", (300, 200), 255).save(png, format="PNG", dpi=(100, 100))
    seeds = [bytes([kind]) + f for f in files + [png.getvalue()] for kind in range(7)]
    seeds += [bytes([7, options]) + bytes(range(256)) * (3 + options) for options in range(6)]
    return [s for s in seeds if len(s) <= MAX_LEN]


def all_seeds() -> dict[str, list[bytes]]:
    msgs = sip_messages()
    datagrams = _pcap_udp()
    udptl_single, streams = udptl_streams(datagrams)
    framed = [m for m in msgs if re.search(rb"^(Content-Length|l)\s*:", m, re.I | re.M)]
    seeds: dict[str, list[bytes]] = {
        "sip_message": msgs,
        "sip_gate": gate_inputs(msgs),
        "sip_framer": [b"\x00\x00\x00\x01" + b"\r\n\r\n".join(framed[i:i + 3]) for i in range(0, len(framed), 3)]
        + [b"\x00\x00\x00\x02\r\n\r\n" + framed[0] + b"\r\n" if framed else b""],
        "sdp": sdp_bodies(msgs),
        "referred_by": referred_by(msgs),
        "digest_client": digest_challenges(msgs),
        "digest_server": digest_authorizations(msgs),
        "rtp_packet": rtp_packets(datagrams),
        "playout": playout_scripts(),
        "udptl_decode": udptl_single,
        "udptl_stream": [_records_stream(s[:30]) for s in streams] + [_records_stream(s[100:140]) for s in streams]
        + [_round_trip([decode_primary(p) for p in s[:40]], flags)
           for s in streams for flags in (b"\x00\x0b\x32\xff\xf0", b"\x07\x05\x00\x00\x00", b"\x0b\x02\x00\x12\x34")],
        "at_channel": at_scripts(),
        "modem_fparams": fparam_lines(),
        "class2_session": class2_calls(),
        "t30_frames": t30_frames(),
        "tiff_pages": tiff_files(),
        "config_load": config_files(readme_configs()),
        "config_restore": readme_configs(),
        "boot_config": boot_configs(),
        "backup_file": backup_files(),
        "web_params": query_strings(),
        "web_settings_form": settings_forms(),
        "web_api": api_requests(),
        "fax_number": fax_numbers(),
    }
    return seeds


def fax_numbers() -> list[bytes]:
    """Numbers as the tests type them, for each numbering of the target (its first byte)."""
    typed = ["(212) 555-0123", "1 617 555 0123", "555-0123", "011 49 30 1234567", "+44 (0)20 7946 0000",
             "1-900-555-0123", "876 555 0123", "030/234 56 78", "2345678", "0049 030 2345678", "0900 1234567",
             "020 7946 0000", "09 1234 56789", "06 1234 5678", "+39 06 1234 5678", "02 345 67 89", "112", "9-1-1",
             "+1 911", "11880", "1-800-FLOWERS", "+49 30 12", "\uff10\uff13\uff10 1234567", " +49.30.2345678 "]
    return [bytes([box]) + number.encode() for box in range(6) for number in typed]


def boot_configs() -> list[bytes]:
    """faxbridge.txt: the shipped template, a filled-in one as Notepad saves it (BOM, CRLF), one
    with its secrets erased, and lines of each kind of mistake."""
    template = (ROOT / "image" / "boot" / "faxbridge.txt").read_bytes()
    filled = (b"hostname = faxdesk\ntimezone = Europe/Berlin\nwifi_ssid = Office\nwifi_passphrase = wifi-secret-77\n"
              b"wifi_country = de\naddress = 192.168.1.50/24\ngateway = 192.168.1.1\ndns = 192.168.1.1, 9.9.9.9\n"
              b"ssh = on\nssh_authorized_key = ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me\n"
              b"admin_password = correct horse battery\n")
    from appliance.firstboot.bootconfig import blank_secrets

    bad = (b"hostname = -x\ntimezone = Mars/Olympus\nhostnme = a\nadmin_password = short\nwifi_passphrase = x\n"
           b"address = 10.0.0.0/8\ngateway = 192.168.0.1\ndns = 1.1.1.1\nssh = maybe\nnot a setting\n"
           b"hostname = again\nwifi_ssid = caf\xe9\n")
    return [template, b"\xef\xbb\xbf" + filled.replace(b"\n", b"\r\n"), filled, blank_secrets(filled), bad,
            b"address = fe80::5/64\ngateway = fe80::1\n", b"timezone = 'UTC'\rssh = \"off\"\r"]


def backup_files() -> list[bytes]:
    """Sealed backups (cheap scrypt parameters) of a configuration alone, with secrets and with
    certificates, one cut short, and the same contents as plaintext."""
    from appliance.backup.contents import Contents
    from appliance.backup.fileformat import KdfParams, seal
    from tests.fuzz.targets.backup_file import PASSPHRASE

    main = '[system]\nhostname = "frontdesk"\n[routing]\ndefault = "faxes@example.com"\n'
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
    plains = [Contents({"faxbridge.toml": main}, hostname="frontdesk", created="2026-12-07T17:00:00+00:00",
                       made_by="faxbridge 0.1.0").to_bytes(),
              Contents({"faxbridge.toml": main, "secrets.toml": '[delivery]\npassword = "pw"\n'}).to_bytes(),
              Contents({"faxbridge.toml": main, "tls/owner-cert.pem": pem, "tls/owner-key.pem": key,
                        "tls/sip-cert.pem": pem, "tls/sip-key.pem": key}).to_bytes()]
    fast = KdfParams(10, 8, 1)
    sealed = [seal(p, PASSPHRASE, fast, salt=bytes(16), nonce=bytes(12)) for p in plains]
    return sealed + [sealed[0][:-40], seal(plains[0], "another passphrase", fast, bytes(16), bytes(12))] + plains


def t30_frames() -> list[bytes]:
    """Direction byte + frame: our DIS, the recorded calls' DCS and TSI, ECM's PPS, PPR, FCD, RCP,
    CTC, an NSF, EOR, DCN, MCF, a DTC and a short one."""
    frames = ["0 ff 13 80 00 ee fa c4 80 95 80 80 80 18", "1 ff 13 83 00 62 f8 44",
              "1 ff 13 83 00 46 f8 84 80 80 80 80 00",
              "1 ff 03 43 34 33 32 31 20 30 33 20 39 34 2b 20 20 20 20 20 20 20 20 20", "1 ff 13 bf 4f 00 00 34",
              "0 ff 13 bd 06" + " 00" * 31, "1 ff 03 06 17" + " aa" * 64, "1 ff 03 86", "1 ff 13 12 00 0c",
              "0 ff 03 20 ad 00 31 32", "1 ff 13 cf 2f", "1 ff 13 fb", "0 ff 13 8c", "1 ff 13 81 00 ee fa c4", "1 ff"]
    return [bytes([int(f[0])]) + bytes.fromhex(f[2:].replace(" ", "")) for f in frames]


def decode_primary(datagram: bytes) -> bytes:
    from appliance.media.udptl import decode

    return decode(datagram).primary


def write(seeds: dict[str, list[bytes]], corpus: Path = CORPUS) -> dict[str, int]:
    """Write each target's seeds as corpus/<target>/seed-<sha1>; returns how many are new."""
    from tests.fuzz.targets import TARGETS, load

    counts = {}
    for target in TARGETS:
        limit = load(target).MAX_LEN
        folder = corpus / target
        folder.mkdir(parents=True, exist_ok=True)
        new = 0
        for data in seeds.get(target, []):
            if not data or len(data) > limit:
                continue
            path = folder / f"seed-{hashlib.sha1(data).hexdigest()}"
            if not path.exists():
                path.write_bytes(data)
                new += 1
        counts[target] = new
    return counts


if __name__ == "__main__":
    for name, count in write(all_seeds()).items():
        print(f"{name:20} {count} new seed(s)")
