"""Hostile and broken input: each message gets an exact outcome, and the UA keeps working after it."""
from __future__ import annotations

import pytest

from appliance.sip.useragent import UserAgent

from sip_helpers import LOCAL, OFFER, PEER, events, raw, replies

GOOD = raw("INVITE", extra=["Content-Type: application/sdp"], body=OFFER)

# (id, message, expected status line of the answer, or None when it must be dropped)
CORPUS: list[tuple[str, bytes, str | None]] = [
    ("missing Call-ID", raw(replace={"Call-ID": None}), None),
    ("missing From", raw(replace={"From": None}), None),
    ("missing To", raw(replace={"To": None}), None),
    ("missing CSeq", raw(replace={"CSeq": None}), None),
    ("missing Via", raw(replace={"Via": None}), None),
    ("bad Via", raw(via="SIP/2.0/UDP"), None),
    ("CSeq not a number", raw(cseq="abc OPTIONS"), None),
    ("CSeq too big", raw(cseq="4294967296 OPTIONS"), None),
    ("CSeq method mismatch", raw(cseq="1 INVITE"), "400 CSeq method mismatch"),
    ("CSeq negative", raw(cseq="-1 OPTIONS"), None),
    ("Content-Length negative", raw(replace={"Max-Forwards": "70\r\nContent-Length: -5"}), "400 Duplicate Content-Length"),
    ("Content-Length longer than body", raw("INVITE", body="v=0\r\n").replace(b"Content-Length: 5", b"Content-Length: 500"),
     "400 Content-Length mismatch"),
    ("Content-Length huge", raw().replace(b"Content-Length: 0", b"Content-Length: 99999999999999999999"),
     "400 Bad Content-Length"),
    ("Content-Length not a number", raw().replace(b"Content-Length: 0", b"Content-Length: zero"), "400 Bad Content-Length"),
    ("bad From", raw(replace={"From": '"unterminated <sip:a@h>;tag=1'}), None),  # a response could not carry it
    ("bad To", raw(to="<sip:100@192.0.2.1"), None),
    ("bad Max-Forwards", raw(replace={"Max-Forwards": "many"}), "400 Bad Max-Forwards"),
    ("duplicate Call-ID", raw(extra=["Call-ID: other@peer"]), "400 Duplicate Call-ID"),
    ("NUL byte in header", raw(extra=["X-Evil: a\x00b"]), "400 NUL byte in header"),
    ("invalid UTF-8", raw() .replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nSubject: \xff\xfe"),
     "400 Invalid UTF-8 in header"),
    ("header line without colon", raw(extra=["this line has no colon"]), "400 Malformed header line"),
    ("header name with space", raw(extra=["Bad Name: x"]), "400 Malformed header line"),
    ("9 KiB header line", raw(extra=["X-Long: " + "a" * 9000]), "400 Header line too long"),
    ("100k header line", raw(extra=["X-Long: " + "a" * 100_000]), "513 Message Too Large"),
    ("too many headers", raw(extra=[f"X-H{i}: {i}" for i in range(250)]), "400 Too many headers"),
    ("binary junk", bytes(range(256)) * 4, None),
    ("bad start line", b"HELLO WORLD\r\n\r\n", None),
    ("start line without version", b"OPTIONS sip:a@h\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", None),
    ("start line URI without scheme", raw().replace(b"sip:100@192.0.2.1 SIP", b"nocolon SIP", 1), None),
    ("SIP/3.0", raw().replace(b" SIP/2.0\r\n", b" SIP/3.0\r\n", 1), "505 Version Not Supported"),
    ("unicode method", "ÖPTIONS sip:a@h SIP/2.0\r\n\r\n".encode(), None),
    ("empty datagram", b"", None),
    ("only headers, nothing else", b"Via: SIP/2.0/UDP h\r\n\r\n", None),
    ("bad response status", b"SIP/2.0 999 What\r\n\r\n", None),
    ("malformed response", b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", None),
    ("malformed ACK is never answered", raw("ACK", replace={"CSeq": "1 ACK", "Max-Forwards": "x"}), None),
    ("folding before any header", raw().replace(b"\r\nVia:", b"\r\n continuation\r\nVia:", 1), "400 Malformed header line"),
    ("unicode display name is fine", raw(replace={"From": '"Zoë ☎" <sip:555@192.0.2.50>;tag=u'}), "200 OK"),
]


def _check_still_works(agent: UserAgent) -> None:
    agent.receive(raw("OPTIONS", branch="z9hG4bKafter", call_id="after@peer"), PEER, LOCAL, 1.0)
    assert [(m.status, m.call_id) for m, _ in replies(agent)] == [(200, "after@peer")]
    agent.receive(GOOD, PEER, LOCAL, 1.0)
    assert [m.status for m, _ in replies(agent)] == [100]
    assert len(events(agent)) == 1


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("data,expected", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_malformed(data: bytes, expected: str | None) -> None:
    agent = UserAgent()
    agent.receive(data, PEER, LOCAL, 0.0)
    out = replies(agent)
    if expected is None:
        assert out == []
        assert agent.stats["dropped_malformed"] == 1
    else:
        assert [f"{m.status} {m.reason}" for m, _ in out] == [expected]
        resp, dest = out[0]
        assert dest == PEER
        assert resp.call_id == "raw-1@peer" and resp.headers.get("CSeq") is not None
        assert resp.via.params.get("rport") == str(PEER[1])
    assert events(agent) == []
    assert agent.stats["internal_errors"] == 0
    _check_still_works(agent)
