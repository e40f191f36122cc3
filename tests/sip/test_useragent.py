"""The user agent core: two UAs calling each other in memory, and a scripted raw peer."""
from __future__ import annotations

import pytest

from appliance.sip.errors import LocalProtocolError
from appliance.sip.events import (
    CallAnswered, CallConfirmed, CallEnded, CallFailed, CallProgress, IncomingCall, Local, ReinviteConfirmed,
    ReinviteReceived,
)
from appliance.sip.message import SipRequest, SipResponse
from appliance.sip.sdp import answer_audio
from appliance.sip.useragent import UserAgent

from sip_helpers import A, B, LOCAL, OFFER, PEER, Net, events, raw, replies, statuses


def call(net: Net, now: float = 0.0) -> tuple[str, IncomingCall]:
    call_id = net.a.invite("sip:100@127.0.0.2:5060", from_uri="sip:fax@127.0.0.1:5061", sdp=OFFER,
                           local=A, remote=(B.host, B.port), now=now, from_display="Fax Tester")
    net.run(now)
    incoming = events(net.b)
    assert len(incoming) == 1 and isinstance(incoming[0], IncomingCall)
    return call_id, incoming[0]


def answer(net: Net, call_id: str, incoming: IncomingCall, now: float = 0.1) -> None:
    net.b.answer_call(call_id, answer_audio(incoming.offer, "127.0.0.2", 50000, 2, 1).sdp, now)
    net.run(now)


def test_full_call_caller_hangs_up() -> None:
    net = Net()
    call_id, incoming = call(net)
    assert incoming.caller_number == "fax" and incoming.caller_name == "Fax Tester"
    assert incoming.called_number == "100" and incoming.remote == (A.host, A.port) and incoming.local == B
    net.b.send_provisional(call_id, 180, 0.05)
    net.run(0.05)
    answer(net, call_id, incoming)
    progress = events(net.a)
    assert [type(e) for e in progress] == [CallProgress, CallProgress, CallAnswered]
    assert [e.status for e in progress[:2]] == [100, 180]
    assert progress[2].answer.media[0].port == 50000
    assert events(net.b) == [CallConfirmed(call_id)]
    net.a.hangup(call_id, 5.0)
    net.run(5.0)
    assert events(net.a) == [CallEnded(call_id, "local hangup", 200)]
    assert events(net.b) == [CallEnded(call_id, "remote BYE", None)]
    assert net.sent("a") == ["INVITE", "ACK", "BYE"]
    assert net.sent("b") == ["100 INVITE", "180 INVITE", "200 INVITE", "200 BYE"]
    net.advance(5.0, 70.0, 1.0)
    assert net.a.get_timer() is None and net.b.get_timer() is None  # everything cleaned up


def test_2xx_carries_dialog_headers() -> None:
    net = Net()
    call_id, incoming = call(net)
    answer(net, call_id, incoming)
    ok = next(m for s, m in net.log if isinstance(m, SipResponse) and m.status == 200)
    assert ok.to_tag and ok.headers.get("Contact") == "<sip:faxbridge@127.0.0.2:5060>"
    assert "INVITE" in ok.headers.get("Allow") and ok.headers.get("Supported") is not None
    assert ok.headers.get("Server") == "ua-b" and ok.headers.get("Content-Type") == "application/sdp"
    assert ok.body.startswith(b"v=0")
    ack = next(m for s, m in net.log if isinstance(m, SipRequest) and m.method == "ACK")
    invite = net.log[0][1]
    assert ack.cseq == (1, "ACK") and ack.via.branch != invite.via.branch
    assert ack.uri == "sip:faxbridge@127.0.0.2:5060" and ack.to_tag == ok.to_tag


def test_callee_hangs_up_uses_remote_target() -> None:
    net = Net()
    call_id, incoming = call(net)
    answer(net, call_id, incoming)
    events(net.a), events(net.b)
    net.b.hangup(call_id, 3.0)
    net.run(3.0)
    bye = next(m for s, m in net.log if s == "b" and isinstance(m, SipRequest))
    assert bye.method == "BYE" and bye.uri == "sip:faxbridge@127.0.0.1:5061"
    assert bye.to_tag == net.log[0][1].from_tag
    assert events(net.b) == [CallEnded(call_id, "local hangup", 200)]
    assert events(net.a) == [CallEnded(call_id, "remote BYE", None)]


def test_cancel_gives_487() -> None:
    net = Net()
    call_id, _ = call(net)
    net.b.send_provisional(call_id, 180, 0.1)
    net.run(0.1)
    net.a.cancel(call_id, 0.2)
    net.run(0.2)
    assert events(net.b) == [CallEnded(call_id, "CANCEL", 487)]
    assert [e for e in events(net.a) if isinstance(e, CallFailed)] == [CallFailed(call_id, 487, "Request Terminated")]
    assert net.sent("a") == ["INVITE", "CANCEL", "ACK"]
    assert net.sent("b") == ["100 INVITE", "180 INVITE", "200 CANCEL", "487 INVITE"]
    with pytest.raises(LocalProtocolError):
        net.b.answer_call(call_id, "v=0\r\n", 0.3)


def test_cancel_before_provisional_waits_for_it() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"SIP/2.0 100")
    call_id, _ = call(net)
    net.a.cancel(call_id, 0.1)
    net.run(0.1)
    assert "CANCEL" not in net.sent("a")
    net.drop = lambda data: False
    net.b.send_provisional(call_id, 183, 0.2)
    net.run(0.2)
    assert net.sent("a") == ["INVITE", "CANCEL", "ACK"]
    assert events(net.b) == [CallEnded(call_id, "CANCEL", 487)]


def test_lost_ack_makes_2xx_retransmit() -> None:
    net = Net()
    lost = []
    net.drop = lambda data: data.startswith(b"ACK") and not lost and not lost.append(data)
    call_id, incoming = call(net)
    answer(net, call_id, incoming, now=1.0)
    assert events(net.b) == []
    net.advance(1.0, 1.6)
    assert events(net.b) == [CallConfirmed(call_id)]
    assert net.sent("b").count("200 INVITE") == 2 and net.sent("a").count("ACK") == 2
    assert len([e for e in events(net.a) if isinstance(e, CallAnswered)]) == 1
    net.advance(1.6, 40.0)
    assert net.sent("b").count("200 INVITE") == 2  # retransmission stopped


def test_timer_h_without_ack_sends_bye() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"ACK")
    call_id, incoming = call(net)
    answer(net, call_id, incoming, now=0.0)
    times = []
    for step in range(0, 34 * 8):
        now = step / 8
        before = net.sent("b").count("200 INVITE")
        net.tick(now)
        if net.sent("b").count("200 INVITE") > before:
            times.append(now)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert CallEnded(call_id, "no ACK", None) in events(net.b)
    assert "BYE" in net.sent("b")


def test_retransmitted_invite_absorbed() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"SIP/2.0 100")
    call_id, incoming = call(net)
    net.advance(0.0, 1.6)
    assert net.sent("a").count("INVITE") >= 2
    assert events(net.b) == []  # no second IncomingCall
    assert net.sent("b").count("100 INVITE") == net.sent("a").count("INVITE")
    net.drop = lambda data: False
    answer(net, call_id, incoming, now=1.7)
    net.b.receive(bytes(net.log[0][1]), (A.host, A.port), B, 1.8)  # INVITE again, after the 2xx
    assert net.b.datagrams_to_send() == [] and events(net.b) == [CallConfirmed(call_id)]


def test_reject_retransmits_until_ack() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"ACK") and net.sent("b").count("486 INVITE") < 2
    call_id, _ = call(net)
    net.b.reject_call(call_id, 486, "Busy Here", 0.1)
    net.run(0.1)
    assert events(net.b) == [CallEnded(call_id, "rejected", 486)]
    assert CallFailed(call_id, 486, "Busy Here") in events(net.a)
    net.advance(0.1, 10.0)
    assert net.sent("b").count("486 INVITE") == 2
    assert events(net.a) == []  # the retransmitted 486 was absorbed by the client transaction


def test_timer_b_times_out_invite() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"INVITE")
    call_id = net.a.invite("sip:100@127.0.0.2", from_uri="sip:fax@127.0.0.1", sdp=OFFER, local=A,
                           remote=(B.host, B.port), now=0.0)
    net.advance(0.0, 33.0)
    assert net.sent("a") == ["INVITE"] * 7  # 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5
    assert events(net.a) == [CallFailed(call_id, 408, "Request Timeout")]


def test_hangup_before_ack_waits_for_ack() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"ACK") and "BYE" not in net.sent("b")
    call_id, incoming = call(net)
    answer(net, call_id, incoming)
    net.b.hangup(call_id, 0.2)
    net.run(0.2)
    assert "BYE" not in net.sent("b")
    net.advance(0.25, 40.0)
    assert "BYE" in net.sent("b")
    assert events(net.b)[-1] == CallEnded(call_id, "local hangup", None)


def test_hangup_early_incoming_call_rejects() -> None:
    net = Net()
    call_id, _ = call(net)
    net.b.hangup(call_id, 0.1)
    net.run(0.1)
    assert events(net.b) == [CallEnded(call_id, "local hangup", 480)]
    assert any(isinstance(e, CallFailed) and e.status == 480 for e in events(net.a))
    net.b.hangup(call_id, 0.2)  # a second hangup is harmless
    assert net.b.datagrams_to_send() == []


def test_application_misuse_raises() -> None:
    net = Net()
    call_id, incoming = call(net)
    with pytest.raises(LocalProtocolError):
        net.b.send_provisional(call_id, 200, 0.0)
    with pytest.raises(LocalProtocolError):
        net.b.reject_call(call_id, 200, "OK", 0.0)
    with pytest.raises(LocalProtocolError):
        net.b.answer_call("nope", "v=0", 0.0)
    answer(net, call_id, incoming)
    with pytest.raises(LocalProtocolError):
        net.b.answer_call(call_id, "v=0", 0.2)
    with pytest.raises(LocalProtocolError):
        net.a.cancel("nope", 0.2)


def test_tcp_contact_and_same_connection() -> None:
    a_local, b_local = Local("tcp", "127.0.0.1", 5061), Local("tcp", "127.0.0.2", 5060)
    net = Net(a_local, b_local)
    call_id = net.a.invite("sip:100@127.0.0.2;transport=tcp", from_uri="sip:fax@127.0.0.1", sdp=OFFER,
                           local=a_local, remote=("127.0.0.2", 5060), now=0.0)
    net.run(0.0)
    incoming = events(net.b)[0]
    answer(net, call_id, incoming)
    ok = next(m for s, m in net.log if isinstance(m, SipResponse) and m.status == 200)
    assert ok.headers.get("Contact") == "<sip:faxbridge@127.0.0.2:5060;transport=tcp>"
    assert net.log[0][1].via.transport == "TCP"
    net.advance(0.1, 40.0)
    assert net.sent("b").count("200 INVITE") == 1 and net.sent("a").count("INVITE") == 1  # no retransmissions


# --- a scripted peer ----------------------------------------------------------------------------

def ua() -> UserAgent:
    return UserAgent(user_agent="fb")


def test_options_out_of_dialog() -> None:
    agent = ua()
    agent.receive(raw("OPTIONS"), PEER, LOCAL, 0.0)
    [(resp, dest)] = replies(agent)
    assert resp.status == 200 and dest == PEER
    assert resp.headers.get("Accept") == "application/sdp"
    assert "OPTIONS" in resp.headers.get("Allow") and resp.headers.get("Supported") is not None
    assert resp.to_tag and resp.call_id == "raw-1@peer" and resp.cseq == (1, "OPTIONS")


def test_options_retransmission_gets_same_response() -> None:
    agent = ua()
    agent.receive(raw("OPTIONS"), PEER, LOCAL, 0.0)
    first = agent.datagrams_to_send()
    agent.receive(raw("OPTIONS"), PEER, LOCAL, 0.5)
    assert agent.datagrams_to_send() == first


@pytest.mark.parametrize("method,status", [
    ("REGISTER", "405 Method Not Allowed"), ("SUBSCRIBE", "405 Method Not Allowed"),
    ("PUBLISH", "405 Method Not Allowed"), ("MESSAGE", "405 Method Not Allowed"),
    ("NOTIFY", "405 Method Not Allowed"), ("REFER", "405 Method Not Allowed"),
    ("FOO", "501 Not Implemented"), ("BYE", "481 Call/Transaction Does Not Exist"),
    ("CANCEL", "481 Call/Transaction Does Not Exist"), ("INFO", "481 Call/Transaction Does Not Exist"),
    ("UPDATE", "481 Call/Transaction Does Not Exist"),
])
def test_method_refusals(method: str, status: str) -> None:
    agent = ua()
    agent.receive(raw(method), PEER, LOCAL, 0.0)
    out = replies(agent)
    assert [f"{m.status} {m.reason}" for m, _ in out] == [status]
    if status.startswith(("405", "501")):
        assert "INVITE" in out[0][0].headers.get("Allow")


def test_in_dialog_request_for_unknown_dialog_is_481() -> None:
    agent = ua()
    agent.receive(raw("NOTIFY", to="<sip:100@192.0.2.1>;tag=gone"), PEER, LOCAL, 0.0)
    assert statuses(agent) == ["481 Call/Transaction Does Not Exist"]
    agent.receive(raw("INVITE", branch="z9hG4bKre", to="<sip:100@192.0.2.1>;tag=gone", body=OFFER,
                      extra=["Content-Type: application/sdp"]), PEER, LOCAL, 0.0)
    assert statuses(agent) == ["100 Trying", "481 Call/Transaction Does Not Exist"]


def test_require_100rel_gets_420() -> None:
    agent = ua()
    agent.receive(raw("INVITE", extra=["Require: 100rel, foo", "Content-Type: application/sdp"], body=OFFER),
                  PEER, LOCAL, 0.0)
    out = replies(agent)
    assert [m.status for m, _ in out] == [100, 420]
    assert out[1][0].headers.get("Unsupported") == "100rel, foo"
    assert events(agent) == []


def test_max_forwards_zero_gets_483() -> None:
    agent = ua()
    agent.receive(raw("OPTIONS", replace={"Max-Forwards": "0"}), PEER, LOCAL, 0.0)
    assert statuses(agent) == ["483 Too Many Hops"]


def test_unsupported_uri_scheme_416_and_body_type_415() -> None:
    agent = ua()
    agent.receive(raw("OPTIONS", uri="urn:x:y"), PEER, LOCAL, 0.0)
    assert statuses(agent) == ["416 Unsupported URI Scheme"]
    agent.receive(raw("INVITE", branch="z9hG4bK2", extra=["Content-Type: text/plain"], body="hi"), PEER, LOCAL, 0.0)
    assert statuses(agent) == ["100 Trying", "415 Unsupported Media Type"]


def test_response_routing_rport_received_and_sent_by() -> None:
    agent = ua()
    agent.receive(raw("OPTIONS", via="SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKa;rport"), PEER, LOCAL, 0.0)
    [(resp, dest)] = replies(agent)
    assert dest == PEER
    assert resp.via.params == {"branch": "z9hG4bKa", "rport": "5099", "received": "192.0.2.50"}
    agent.receive(raw("OPTIONS", via="SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKb"), PEER, LOCAL, 0.0)
    [(resp, dest)] = replies(agent)
    assert dest == ("192.0.2.50", 5070) and resp.via.params["received"] == "192.0.2.50"
    agent.receive(raw("OPTIONS", via="SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKc"), PEER, LOCAL, 0.0)
    [(resp, dest)] = replies(agent)
    assert dest == ("192.0.2.50", 5060) and "received" not in resp.via.params
    tcp = Local("tcp", "192.0.2.1", 5060)
    agent.receive(raw("OPTIONS", via="SIP/2.0/TCP 10.9.9.9:5070;branch=z9hG4bKd"), PEER, tcp, 0.0)
    assert [d for _, d, _ in agent.datagrams_to_send()] == [PEER]


def test_incoming_call_identities() -> None:
    agent = ua()
    agent.receive(raw("INVITE", uri="sip:+4930111@192.0.2.1;user=phone", extra=[
        'P-Asserted-Identity: "Front Desk" <sip:+4930999@gw>, <tel:+4930999>',
        "Diversion: <sip:200@pbx>;reason=unconditional", "Diversion: <sip:300@pbx>;reason=no-answer",
        "Content-Type: application/sdp"], body=OFFER), PEER, LOCAL, 0.0)
    [event] = events(agent)
    assert (event.caller_number, event.caller_name, event.called_number) == ("+4930999", "Front Desk", "+4930111")
    assert event.diversion == ["200", "300"]
    assert event.offer is not None and event.offer.media[0].port == 40000


def test_called_number_falls_back_to_to_and_caller_to_from() -> None:
    agent = ua()
    agent.receive(raw("INVITE", uri="sip:192.0.2.1", to="<sip:777@192.0.2.1>"), PEER, LOCAL, 0.0)
    [event] = events(agent)
    assert (event.caller_number, event.caller_name, event.called_number) == ("555", "Peer", "777")
    assert event.offer is None


def _established(agent: UserAgent) -> tuple[str, str]:
    agent.receive(raw("INVITE", extra=["Content-Type: application/sdp", "Session-Expires: 1800"], body=OFFER),
                  PEER, LOCAL, 0.0)
    [event] = events(agent)
    agent.answer_call(event.call_id, "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n", 0.1)
    ok = replies(agent)[-1][0]
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac" and ok.headers.get("Require") == "timer"
    to = ok.headers.get("To")
    agent.receive(raw("ACK", branch="z9hG4bKack", to=to), PEER, LOCAL, 0.2)
    assert events(agent) == [CallConfirmed(event.call_id)]
    return event.call_id, to


def test_in_dialog_update_info_reinvite_options() -> None:
    agent = ua()
    call_id, to = _established(agent)
    agent.receive(raw("UPDATE", branch="z9hG4bKu", to=to, cseq="2 UPDATE", extra=["Session-Expires: 1800"]), PEER, LOCAL, 1.0)
    [(resp, _)] = replies(agent)
    assert resp.status == 200 and resp.headers.get("Session-Expires") == "1800"
    agent.receive(raw("INFO", branch="z9hG4bKi", to=to, cseq="3 INFO"), PEER, LOCAL, 1.0)
    assert statuses(agent) == ["200 OK"]
    agent.receive(raw("OPTIONS", branch="z9hG4bKo", to=to, cseq="4 OPTIONS"), PEER, LOCAL, 1.0)
    assert statuses(agent) == ["200 OK"]
    agent.receive(raw("INVITE", branch="z9hG4bKr", to=to, cseq="5 INVITE", body=OFFER,
                      extra=["Content-Type: application/sdp"]), PEER, LOCAL, 2.0)
    assert statuses(agent) == ["100 Trying"]  # the application answers a re-INVITE, not the UA
    [reinvite] = events(agent)
    assert isinstance(reinvite, ReinviteReceived) and reinvite.same_session  # the same o= as the INVITE's
    agent.answer_reinvite(call_id, "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n", 2.0)
    out = replies(agent)
    assert [m.status for m, _ in out] == [200] and out[0][0].body.startswith(b"v=0\r\no=- 1 1")
    agent.receive(raw("ACK", branch="z9hG4bKack2", to=to, cseq="5 ACK"), PEER, LOCAL, 2.1)
    assert events(agent) == [ReinviteConfirmed(call_id)]
    agent.handle_timer(60.0)
    assert replies(agent) == []  # the re-INVITE's 2xx was acknowledged: no retransmission, no BYE
    agent.receive(raw("BYE", branch="z9hG4bKbye", to=to, cseq="6 BYE"), PEER, LOCAL, 61.0)
    assert statuses(agent) == ["200 OK"] and events(agent) == [CallEnded(call_id, "remote BYE", None)]


def test_bye_with_wrong_tag_is_481() -> None:
    agent = ua()
    call_id, to = _established(agent)
    agent.receive(raw("BYE", branch="z9hG4bKbye", to="<sip:100@192.0.2.1>;tag=wrong", cseq="2 BYE"),
                  PEER, LOCAL, 1.0)
    assert statuses(agent) == ["481 Call/Transaction Does Not Exist"] and events(agent) == []


def test_unknown_response_dropped() -> None:
    agent = ua()
    agent.receive(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKzzz\r\nFrom: <sip:a@h>;tag=1\r\n"
                  b"To: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n", PEER, LOCAL, 0.0)
    assert agent.datagrams_to_send() == [] and agent.stats["dropped_responses"] == 1


def test_crlf_keepalive_datagram_ignored() -> None:
    agent = ua()
    agent.receive(b"\r\n\r\n", PEER, LOCAL, 0.0)
    assert agent.datagrams_to_send() == [] and agent.stats["keepalives"] == 1
