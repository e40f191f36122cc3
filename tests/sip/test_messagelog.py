"""The SIP messages of a call, kept for its diagnostics: per Call-ID, bounded, only for calls the
call gate admitted.  As a library here; through the real transport and daemon in
tests/e2e/test_call_diagnostics.py."""

from __future__ import annotations

from appliance.sip.events import Local
from appliance.sip.message import SipRequest
from appliance.sip.messagelog import CALLS, HEAD, MESSAGE_BYTES, TAIL, MessageLog, messages_text

LOCAL = Local("udp", "127.0.0.1", 5060)
PEER = ("192.0.2.10", 5060)


def request(call_id: str, cseq: int, body: bytes = b"", method: str = "INFO") -> bytes:
    return bytes(SipRequest(method, "sip:5551000@127.0.0.1", [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK" + str(cseq)), ("From", "<sip:a@b>;tag=1"),
        ("To", "<sip:5551000@127.0.0.1>"), ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"),
        ("Max-Forwards", "70")], body))


def test_only_followed_calls_are_kept_and_taken_once() -> None:
    log = MessageLog()
    log.received("other@x", request("other@x", 1), PEER, LOCAL, 1.0)
    log.sent(request("other@x", 2), PEER, LOCAL, 1.0)
    assert not log.following and log.take("other@x") is None
    log.follow("c1@x")
    log.received("c1@x", request("c1@x", 1, method="INVITE"), PEER, LOCAL, 1_767_225_600.5)
    log.sent(b"SIP/2.0 200 OK\r\nCall-ID: c1@x\r\nCSeq: 1 INVITE\r\n\r\n", PEER, LOCAL, 1_767_225_601.0)
    log.sent(b"SIP/2.0 200 OK\r\nCall-ID: c2@x\r\n\r\n", PEER, LOCAL, 1_767_225_601.0)  # not followed
    record = log.take("c1@x")
    assert record is not None and [m.outgoing for m in record.head] == [False, True]
    text = messages_text(record)
    assert text.startswith("=== 2026-01-01 00:00:00.500000 UTC  received over UDP from 192.0.2.10:5060 at "
                           "127.0.0.1:5060 (")
    assert "INVITE sip:5551000@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP" in text and "\r" not in text
    assert "sent over UDP from 127.0.0.1:5060 to 192.0.2.10:5060" in text and "c2@x" not in text
    assert log.take("c1@x") is None and not log.following


def test_bounded_per_message_per_call_and_in_calls() -> None:
    log = MessageLog()
    log.follow("c@x")
    big = request("c@x", 1, b"v=0\r\n" + b"a=x\r\n" * 4000)
    log.received("c@x", big, PEER, LOCAL, 1.0)
    for n in range(2, HEAD + TAIL + 11):  # 58 messages: 32 first, 16 last, 10 between
        log.received("c@x", request("c@x", n), PEER, LOCAL, float(n))
    record = log.take("c@x")
    assert record is not None
    assert len(record.head[0].data) == MESSAGE_BYTES and record.head[0].size == len(big)
    assert len(record.head) == HEAD and len(record.tail) == TAIL and record.left_out == 10
    text = messages_text(record)
    assert f"cut at {MESSAGE_BYTES} of {len(big)} bytes" in text
    assert "=== 10 message(s) left out here" in text
    assert f"CSeq: {HEAD + TAIL + 10} INFO" in text and f"CSeq: {HEAD + 1} INFO" not in text
    for n in range(CALLS + 5):  # calls never taken: the oldest go
        log.follow(f"n{n}@x")
    assert log.take("n0@x") is None and log.take(f"n{CALLS + 4}@x") is not None
