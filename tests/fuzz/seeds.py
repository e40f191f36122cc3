"""Seed inputs for the fuzz targets, made from real data: ``python -m tests.fuzz.seeds``.

Writes ``seed-*`` files into ``tests/fuzz/corpus/<target>/`` (``make fuzz`` then minimises the
corpus with libFuzzer's merge, which keeps the seeds that add coverage).  Sources:

- the SIP messages, SDP, Referred-By values and digest headers written in tests/sip/*.py (string
  literals that look like them), and a real call between two of our user agents;
- the MIT-licensed captures in ../shared/fixtures/pcaps/ (grandstream-ht801-t38-ecm.pcap and
  sonus-asterisk-t38-nonecm.pcap only: carrier-g711-alaw-sender.pcap's licence forbids copying
  any of it): their SIP, SDP, RTP and UDPTL payloads;
- the modem dialogues in tests/modem/dialogues/ (commands, responses, Class 2 calls);
- the configuration examples in README.md.
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
    server = DigestServer("faxbridge", key=b"k" * 32, clock=lambda: 1_700_000_000.0)
    found += [v.encode() for v in server.challenges()] + [b"\n".join(v.encode() for v in server.challenges(True))]
    found += [v for v in _literals([ROOT / "tests" / "sip" / "test_digest.py"]) if v.startswith(b"Digest ")]
    return found


def digest_authorizations(msgs: list[bytes]) -> list[bytes]:
    """Answers that verify, with the nonce and response as the target's placeholders."""
    from appliance.sip.digest import DigestServer, build_authorization, parse_challenge

    server = DigestServer("faxbridge", key=b"k" * 32, clock=lambda: 1_700_000_000.0)
    nonce = server.nonce()
    found = _header_values(msgs, rb"Authorization|Proxy-Authorization")
    for challenge in server.challenges():
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

    from appliance.web.settings import (DELIVERY_FIELDS, MODEM_FIELDS, PEERS, REGISTRATIONS, ROUTING_FIELDS,
                                        RULES, SIP_FIELDS, SYSTEM_FIELDS, show_value)
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


def all_seeds() -> dict[str, list[bytes]]:
    msgs = sip_messages()
    datagrams = _pcap_udp()
    udptl_single, streams = udptl_streams(datagrams)
    framed = [m for m in msgs if re.search(rb"^(Content-Length|l)\s*:", m, re.I | re.M)]
    seeds: dict[str, list[bytes]] = {
        "sip_message": msgs,
        "sip_framer": [b"\x00\x00\x00\x01" + b"\r\n\r\n".join(framed[i:i + 3]) for i in range(0, len(framed), 3)]
        + [b"\x00\x00\x00\x02\r\n\r\n" + framed[0] + b"\r\n" if framed else b""],
        "sdp": sdp_bodies(msgs),
        "referred_by": referred_by(msgs),
        "digest_client": digest_challenges(msgs),
        "digest_server": digest_authorizations(msgs),
        "rtp_packet": rtp_packets(datagrams),
        "udptl_decode": udptl_single,
        "udptl_stream": [_records_stream(s[:30]) for s in streams] + [_records_stream(s[100:140]) for s in streams]
        + [_round_trip([decode_primary(p) for p in s[:40]], flags)
           for s in streams for flags in (b"\x00\x0b\x32\xff\xf0", b"\x07\x05\x00\x00\x00", b"\x0b\x02\x00\x12\x34")],
        "at_channel": at_scripts(),
        "modem_fparams": fparam_lines(),
        "class2_session": class2_calls(),
        "config_load": config_files(readme_configs()),
        "config_restore": readme_configs(),
        "web_params": query_strings(),
        "web_settings_form": settings_forms(),
        "web_api": api_requests(),
    }
    return seeds


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
