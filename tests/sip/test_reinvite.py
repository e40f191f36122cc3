"""Offers inside a dialog: re-INVITE both ways (audio <-> T.38), UPDATE, glare (491 and the §14.1
backoff), refusals, timeouts, BYE in the middle, the digest hook. Two UAs in memory, fake clock."""
from __future__ import annotations

import random

import pytest

from appliance.sip.callinfo import make_response
from appliance.sip.errors import LocalProtocolError
from appliance.sip.events import (
    CallAnswered, CallConfirmed, CallEnded, IncomingCall, ReinviteAnswered, ReinviteConfirmed, ReinviteFailed,
    ReinviteReceived, ReinviteRetrying,
)
from appliance.sip.message import SipRequest, SipResponse, parse_message
from tests.budgets import LOADED
from appliance.sip.sdp import (
    SessionDescription, answer_audio, answer_t38, has_audio, has_t38, offer_audio, offer_t38, parse_answer,
    parse_t38_answer,
)
from appliance.sip.useragent import MAX_GLARE_RETRIES, UserAgent

from sip_helpers import A, B, LOCAL, OFFER, PEER, Net, events, raw, replies, statuses

B_SDP = answer_audio(OFFER, "127.0.0.2", 50000, 2, 1).sdp


def established(net: Net, now: float = 0.0) -> str:
    """A calls B, B answers; both sides confirmed and their events drained."""
    call_id = net.a.invite("sip:100@127.0.0.2:5060", from_uri="sip:fax@127.0.0.1:5061", sdp=OFFER,
                           local=A, remote=(B.host, B.port), now=now)
    net.run(now)
    [incoming] = events(net.b)
    assert isinstance(incoming, IncomingCall)
    net.b.answer_call(call_id, B_SDP, now)
    net.run(now)
    assert [type(e) for e in events(net.a)][-1] is CallAnswered
    assert events(net.b) == [CallConfirmed(call_id)]
    return call_id


def requests(net: Net, side: str, method: str) -> list[SipRequest]:
    return [m for s, m in net.log if s == side and isinstance(m, SipRequest) and m.method == method]


def responses(net: Net, side: str, method: str) -> list[SipResponse]:
    return [m for s, m in net.log if s == side and isinstance(m, SipResponse) and m.cseq[1] == method]


def only(ua: UserAgent, kind: type) -> object:
    [event] = events(ua)
    assert isinstance(event, kind), event
    return event


# --- re-INVITE to T.38 and back ------------------------------------------------------------------

def test_gateway_reinvites_to_t38_and_back_to_audio() -> None:
    net = Net()
    call_id = established(net)
    # the caller (a gateway that heard CNG) re-INVITEs to T.38
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    received = only(net.b, ReinviteReceived)
    assert received == ReinviteReceived(call_id, received.offer, False, "INVITE")
    assert has_t38(received.offer) and not has_audio(received.offer)
    t38 = answer_t38(received.offer, "127.0.0.2", 50000, 2, 2)
    net.b.answer_reinvite(call_id, t38.sdp, 1.1)
    net.run(1.1)
    answered = only(net.a, ReinviteAnswered)
    assert parse_t38_answer(answered.answer).remote == ("127.0.0.2", 50000)
    assert only(net.b, ReinviteConfirmed) == ReinviteConfirmed(call_id, None)
    [first, reinvite] = requests(net, "a", "INVITE")
    assert reinvite.cseq == (2, "INVITE") and reinvite.via.branch != first.via.branch
    assert reinvite.uri == "sip:faxbridge@127.0.0.2:5060" and reinvite.to_tag and reinvite.from_tag == first.from_tag
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    [_, ack] = requests(net, "a", "ACK")
    assert ack.cseq == (2, "ACK") and ack.via.branch != reinvite.via.branch
    # after the fax: back to audio (Grandstream "Send Re-INVITE After Fax")
    net.a.reinvite(call_id, offer_audio("127.0.0.1", 40000, 1, 3), 60.0)
    net.run(60.0)
    received = only(net.b, ReinviteReceived)
    assert has_audio(received.offer) and not received.same_session
    net.b.answer_reinvite(call_id, answer_audio(received.offer, "127.0.0.2", 50000, 2, 3).sdp, 60.1)
    net.run(60.1)
    assert parse_answer(only(net.a, ReinviteAnswered).answer).codec == "PCMU"
    assert only(net.b, ReinviteConfirmed) == ReinviteConfirmed(call_id)
    assert net.sent("b") == ["100 INVITE", "200 INVITE", "100 INVITE", "200 INVITE", "100 INVITE", "200 INVITE"]
    net.advance(60.1, 100.0, 1.0)
    assert net.sent("b").count("200 INVITE") == 3 and events(net.a) == events(net.b) == []  # all acknowledged


def test_callee_reinvites_to_t38() -> None:
    """We (the UAS of the call) send the T.38 re-INVITE: our CSeq space, the caller's Contact."""
    net = Net()
    call_id = established(net)
    net.b.reinvite(call_id, offer_t38("127.0.0.2", 50002, 2, 2), 1.0)
    net.run(1.0)
    received = only(net.a, ReinviteReceived)
    net.a.answer_reinvite(call_id, answer_t38(received.offer, "127.0.0.1", 40002, 1, 2).sdp, 1.0)
    net.run(1.0)
    assert parse_t38_answer(only(net.b, ReinviteAnswered).answer).remote == ("127.0.0.1", 40002)
    assert only(net.a, ReinviteConfirmed) == ReinviteConfirmed(call_id)
    [reinvite] = requests(net, "b", "INVITE")
    invite = requests(net, "a", "INVITE")[0]
    assert reinvite.uri == "sip:faxbridge@127.0.0.1:5061"
    assert reinvite.from_tag == invite.to_tag or reinvite.from_tag == responses(net, "b", "INVITE")[-1].to_tag
    assert reinvite.to_tag == invite.from_tag
    [ack] = requests(net, "b", "ACK")
    assert ack.cseq[0] == reinvite.cseq[0]
    # a second re-INVITE of ours takes the next CSeq
    net.b.reinvite(call_id, offer_audio("127.0.0.2", 50000, 2, 3), 2.0)
    net.run(2.0)
    assert requests(net, "b", "INVITE")[-1].cseq[0] == reinvite.cseq[0] + 1


def test_refresh_reinvite_with_same_origin_is_same_session() -> None:
    net = Net()
    call_id = established(net)
    net.a.reinvite(call_id, OFFER, 900.0)  # a session-timer refresh: the very same SDP
    net.run(900.0)
    received = only(net.b, ReinviteReceived)
    assert received.same_session and received.offer is not None
    net.b.answer_reinvite(call_id, B_SDP, 900.0)
    net.run(900.0)
    assert only(net.a, ReinviteAnswered).answer.origin == SessionDescription.parse(B_SDP).origin
    assert only(net.b, ReinviteConfirmed) == ReinviteConfirmed(call_id)
    # the peer's next offer with the o= version bumped is a change again
    net.a.reinvite(call_id, offer_audio("127.0.0.1", 40000, 1, 2), 901.0)
    net.run(901.0)
    assert only(net.b, ReinviteReceived).same_session is False


def test_answer_after_t38_answer_is_compared_to_latest_origin() -> None:
    """same_session compares with the peer's latest SDP, not with the initial offer."""
    net = Net()
    call_id = established(net)
    t38_offer = offer_t38("127.0.0.1", 40002, 1, 2)
    net.a.reinvite(call_id, t38_offer, 1.0)
    net.run(1.0)
    received = only(net.b, ReinviteReceived)
    net.b.answer_reinvite(call_id, answer_t38(received.offer, "127.0.0.2", 50000, 2, 2).sdp, 1.0)
    net.run(1.0)
    events(net.a), events(net.b)
    net.a.reinvite(call_id, OFFER, 2.0)  # the old version-1 SDP again: not the current session
    net.run(2.0)
    assert only(net.b, ReinviteReceived).same_session is False
    net.b.answer_reinvite(call_id, B_SDP, 2.0)
    net.run(2.0)
    events(net.a), events(net.b)
    net.a.reinvite(call_id, OFFER, 3.0)
    net.run(3.0)
    assert only(net.b, ReinviteReceived).same_session is True


# --- refusals, timeouts --------------------------------------------------------------------------

@pytest.mark.parametrize("status,reason", [(488, "Not Acceptable Here"), (415, "Unsupported Media Type"),
                                           (606, "Not Acceptable")])
def test_refused_t38_reinvite(status: int, reason: str) -> None:
    net = Net()
    call_id = established(net)
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    only(net.b, ReinviteReceived)
    net.b.reject_reinvite(call_id, status, reason, 1.1)
    net.run(1.1)
    assert events(net.a) == [ReinviteFailed(call_id, status, reason)]
    assert net.sent("a")[-1] == "ACK" and requests(net, "a", "ACK")[-1].cseq == (2, "ACK")
    assert events(net.b) == []
    net.advance(1.1, 40.0)
    assert net.sent("b").count(f"{status} INVITE") == 1  # acknowledged: not retransmitted
    # the call goes on: audio re-INVITE and BYE still work
    net.a.reinvite(call_id, offer_audio("127.0.0.1", 40000, 1, 3), 41.0)
    net.run(41.0)
    assert isinstance(only(net.b, ReinviteReceived), ReinviteReceived)
    net.b.answer_reinvite(call_id, B_SDP, 41.0)
    net.run(41.0)
    assert isinstance(only(net.a, ReinviteAnswered), ReinviteAnswered)
    net.a.hangup(call_id, 42.0)
    net.run(42.0)
    assert events(net.b) == [ReinviteConfirmed(call_id), CallEnded(call_id, "remote BYE", None)]


def test_reinvite_timeout_is_408() -> None:
    net = Net()
    call_id = established(net)
    net.drop = lambda data: data.startswith(b"INVITE")
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.advance(1.0, 31.0)
    assert events(net.a) == []
    net.advance(31.25, 34.0)
    assert events(net.a) == [ReinviteFailed(call_id, 408, "Request Timeout")]
    assert len(requests(net, "a", "INVITE")) == 1 + 7
    net.drop = lambda data: False
    net.a.hangup(call_id, 35.0)  # the dialog is still there
    net.run(35.0)
    assert events(net.b) == [CallEnded(call_id, "remote BYE", None)]


def test_retransmitted_2xx_to_reinvite_gets_the_ack_again() -> None:
    net = Net()
    call_id = established(net)
    lost: list[bytes] = []
    net.drop = lambda data: data.startswith(b"ACK") and not lost and not lost.append(data)
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    net.b.answer_reinvite(call_id, answer_t38(only(net.b, ReinviteReceived).offer, "127.0.0.2", 50000, 2, 2).sdp, 1.0)
    net.run(1.0)
    assert isinstance(only(net.a, ReinviteAnswered), ReinviteAnswered) and events(net.b) == []
    net.advance(1.0, 2.0)
    assert net.sent("b").count("200 INVITE") == 3  # the initial one and the re-INVITE's twice
    assert [a.cseq for a in requests(net, "a", "ACK")] == [(1, "ACK"), (2, "ACK"), (2, "ACK")]
    assert events(net.a) == [] and events(net.b) == [ReinviteConfirmed(call_id)]


# --- glare ---------------------------------------------------------------------------------------

def test_glare_both_491_backoff_one_wins() -> None:
    net = Net()
    call_id = established(net)
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.b.reinvite(call_id, offer_t38("127.0.0.2", 50002, 2, 2), 1.0)
    net.run(1.0)
    assert net.sent("a")[-2:] == ["491 INVITE", "ACK"] and net.sent("b")[-2:] == ["491 INVITE", "ACK"]
    [a_retry] = events(net.a)
    [b_retry] = events(net.b)
    assert isinstance(a_retry, ReinviteRetrying) and isinstance(b_retry, ReinviteRetrying)
    assert 2.1 <= a_retry.delay <= 4.0        # A sent the initial INVITE: it owns the Call-ID
    assert 0.0 <= b_retry.delay <= 2.0
    for delay in (a_retry.delay, b_retry.delay):
        assert round(delay * 100) == pytest.approx(delay * 100)  # 10 ms units
    net.advance(1.0, 1.0 + b_retry.delay - 0.01, 0.01)
    assert len(requests(net, "b", "INVITE")) == 1  # B waits out its backoff
    net.advance(1.0 + b_retry.delay, 1.0 + b_retry.delay + 0.005, 0.01)
    assert len(requests(net, "b", "INVITE")) == 2
    # A sees B's retry as a normal re-INVITE; its own pending retry is dropped
    superseded, received = events(net.a)
    assert superseded == ReinviteFailed(call_id, 491, "Superseded by the peer's re-INVITE")
    assert isinstance(received, ReinviteReceived) and has_t38(received.offer)
    net.a.answer_reinvite(call_id, answer_t38(received.offer, "127.0.0.1", 40002, 1, 2).sdp, 2.5)
    net.run(2.5)
    assert isinstance(only(net.b, ReinviteAnswered), ReinviteAnswered)
    assert only(net.a, ReinviteConfirmed) == ReinviteConfirmed(call_id)
    net.advance(2.5, 10.0, 0.05)
    assert len(requests(net, "a", "INVITE")) == 2  # the initial INVITE and the glared one: no retry
    assert events(net.a) == events(net.b) == []


@pytest.mark.parametrize("seed", range(12))
def test_glare_backoff_ranges(seed: int) -> None:
    net = Net()
    net.a._rng, net.b._rng = random.Random(seed), random.Random(seed + 100)
    call_id = established(net)
    net.a.reinvite(call_id, OFFER, 1.0)
    net.b.reinvite(call_id, B_SDP, 1.0)
    net.run(1.0)
    [a_retry], [b_retry] = events(net.a), events(net.b)
    assert 2.1 <= a_retry.delay <= 4.0 and 0.0 <= b_retry.delay <= 2.0
    assert a_retry.delay * 100 == pytest.approx(round(a_retry.delay * 100))
    assert net.a.get_timer() is not None


def test_glare_retries_are_resent_then_given_up() -> None:
    """A peer that keeps answering 491: our re-INVITE is resent after each backoff, then given up."""
    net = Net()
    call_id = established(net)
    net.drop = lambda data: data.startswith(b"INVITE sip:faxbridge@127.0.0.1")  # B's re-INVITEs to A
    net.b.reinvite(call_id, B_SDP, 1.0)   # lost on the way: B's INVITE stays pending, so B keeps answering 491
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    delays = []
    t = 1.0
    while t < 30.0:
        net.tick(t)
        for e in events(net.a):
            if isinstance(e, ReinviteRetrying):
                delays.append(e.delay)
            else:
                assert e == ReinviteFailed(call_id, 491, "Request Pending")
                t = 99.0
        t += 0.01
    assert t > 30.0 and len(delays) == MAX_GLARE_RETRIES and all(2.1 <= d <= 4.0 for d in delays)
    resent = [r for r in requests(net, "a", "INVITE")[1:]]
    assert len({r.via.branch for r in resent}) == MAX_GLARE_RETRIES + 1
    assert [r.cseq[0] for r in resent] == list(range(2, 3 + MAX_GLARE_RETRIES))


def test_hangup_during_glare_backoff_drops_the_retry() -> None:
    net = Net()
    call_id = established(net)
    net.a.reinvite(call_id, OFFER, 1.0)
    net.b.reinvite(call_id, B_SDP, 1.0)
    net.run(1.0)
    events(net.a), events(net.b)
    net.a.hangup(call_id, 1.0)  # before B's retry: B's retry meets an ended dialog
    net.run(1.0)
    net.advance(1.0, 10.0, 0.05)
    assert len(requests(net, "a", "INVITE")) == 2 and CallEnded(call_id, "local hangup", 200) in events(net.a)
    assert [e for e in events(net.b) if not isinstance(e, CallEnded)] == []


# --- BYE while an offer is pending -----------------------------------------------------------------

def test_bye_while_peer_reinvite_unanswered_gets_487() -> None:
    net = Net()
    call_id = established(net)
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    only(net.b, ReinviteReceived)
    net.a.hangup(call_id, 2.0)
    net.run(2.0)
    assert "487 INVITE" in net.sent("b") and "200 BYE" in net.sent("b")
    assert events(net.b) == [CallEnded(call_id, "remote BYE", None)]
    assert events(net.a) == [CallEnded(call_id, "local hangup", 200)]  # no ReinviteFailed after hanging up
    net.b.answer_reinvite(call_id, B_SDP, 2.1)  # the application was late: harmless
    net.b.reject_reinvite(call_id, 488, "Not Acceptable Here", 2.1)
    assert net.b.datagrams_to_send() == []


def test_peer_bye_while_our_reinvite_pending() -> None:
    net = Net()
    call_id = established(net)
    net.drop = lambda data: data.startswith(b"INVITE")
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    net.b.hangup(call_id, 1.2)
    net.run(1.2)
    assert events(net.a) == [CallEnded(call_id, "remote BYE", None)]
    net.a.reinvite(call_id, OFFER, 1.3)  # ended: nothing happens
    assert net.a.datagrams_to_send() == []
    net.drop = lambda data: False
    net.advance(1.3, 40.0)  # our re-INVITE's retransmissions get 481: nothing more for the app
    assert "481 INVITE" in net.sent("b")
    assert events(net.a) == []


def test_our_hangup_with_peer_reinvite_pending() -> None:
    net = Net()
    call_id = established(net)
    net.a.reinvite(call_id, offer_t38("127.0.0.1", 40002, 1, 2), 1.0)
    net.run(1.0)
    only(net.b, ReinviteReceived)
    net.b.hangup(call_id, 2.0)
    net.run(2.0)
    assert net.sent("b")[-2:] == ["487 INVITE", "BYE"]
    assert events(net.a) == [ReinviteFailed(call_id, 487, "Request Terminated"), CallEnded(call_id, "remote BYE", None)]
    assert events(net.b) == [CallEnded(call_id, "local hangup", 200)]


# --- a scripted peer: UPDATE, no-SDP re-INVITE, target refresh, order, bodies -----------------------

PEER_SDP = OFFER  # the raw peer's INVITE carried OFFER (o=faxbridge 1 1)


def setup_raw() -> tuple[UserAgent, str, str]:
    agent = UserAgent(user_agent="fb")
    agent.receive(raw("INVITE", extra=["Content-Type: application/sdp"], body=PEER_SDP), PEER, LOCAL, 0.0)
    [event] = events(agent)
    agent.answer_call(event.call_id, answer_audio(PEER_SDP, "192.0.2.1", 30000, 5, 1).sdp, 0.1)
    to = replies(agent)[-1][0].headers.get("To")
    agent.receive(raw("ACK", branch="z9hG4bKack", to=to), PEER, LOCAL, 0.2)
    assert events(agent) == [CallConfirmed(event.call_id)]
    return agent, event.call_id, to


def sdp_extra() -> list[str]:
    return ["Content-Type: application/sdp"]


def test_update_with_sdp_is_an_offer_without_ack() -> None:
    agent, call_id, to = setup_raw()
    t38 = offer_t38("192.0.2.50", 6000, 1, 2)
    agent.receive(raw("UPDATE", branch="z9hG4bKu1", to=to, cseq="2 UPDATE", body=t38,
                      extra=[*sdp_extra(), "Session-Expires: 1800"]), PEER, LOCAL, 1.0)
    assert replies(agent) == []
    received = only(agent, ReinviteReceived)
    assert received.method == "UPDATE" and has_t38(received.offer) and not received.same_session
    answer = answer_t38(received.offer, "192.0.2.1", 30000, 5, 2).sdp
    agent.answer_reinvite(call_id, answer, 1.1)
    [(resp, dest)] = replies(agent)
    assert (resp.status, resp.cseq, dest) == (200, (2, "UPDATE"), PEER)
    assert resp.body.decode() == answer and resp.headers.get("Content-Type") == "application/sdp"
    assert resp.headers.get("Session-Expires") == "1800;refresher=uac"
    assert events(agent) == [ReinviteConfirmed(call_id)]
    agent.handle_timer(40.0)
    assert replies(agent) == []  # no 2xx retransmission for UPDATE


def test_update_without_sdp_is_answered_by_the_ua() -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("UPDATE", branch="z9hG4bKu2", to=to, cseq="2 UPDATE", extra=["Session-Expires: 1800"]),
                  PEER, LOCAL, 1.0)
    [(resp, _)] = replies(agent)
    assert resp.status == 200 and not resp.body and events(agent) == []


def test_update_refresh_same_session_and_rejection() -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("UPDATE", branch="z9hG4bKu3", to=to, cseq="2 UPDATE", body=PEER_SDP, extra=sdp_extra()),
                  PEER, LOCAL, 1.0)
    assert only(agent, ReinviteReceived).same_session is True
    agent.reject_reinvite(call_id, 488, "Not Acceptable Here", 1.0)
    assert statuses(agent) == ["488 Not Acceptable Here"]


def test_reinvite_without_sdp_answer_in_ack() -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("INVITE", branch="z9hG4bKr1", to=to, cseq="2 INVITE"), PEER, LOCAL, 1.0)
    assert statuses(agent) == ["100 Trying"]
    assert events(agent) == [ReinviteReceived(call_id, None, False, "INVITE")]
    our_offer = offer_t38("192.0.2.1", 30000, 5, 2)
    agent.answer_reinvite(call_id, our_offer, 1.0)
    [(ok, _)] = replies(agent)
    assert ok.status == 200 and ok.body.decode() == our_offer
    peer_answer = answer_t38(our_offer, "192.0.2.50", 6000, 1, 2).sdp
    agent.receive(raw("ACK", branch="z9hG4bKa1", to=to, cseq="2 ACK", body=peer_answer, extra=sdp_extra()),
                  PEER, LOCAL, 1.1)
    [confirmed] = events(agent)
    assert isinstance(confirmed, ReinviteConfirmed) and has_t38(confirmed.answer)


def test_reinvite_refreshes_remote_target() -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("INVITE", branch="z9hG4bKr2", to=to, cseq="2 INVITE", body=PEER_SDP,
                      replace={"Contact": "<sip:555@192.0.2.77:5080>"}, extra=sdp_extra()), PEER, LOCAL, 1.0)
    only(agent, ReinviteReceived)
    agent.answer_reinvite(call_id, answer_audio(PEER_SDP, "192.0.2.1", 30000, 5, 1).sdp, 1.0)
    agent.receive(raw("ACK", branch="z9hG4bKa2", to=to, cseq="2 ACK"), PEER, LOCAL, 1.1)
    replies(agent), events(agent)
    agent.hangup(call_id, 2.0)
    [(data, dest, _)] = agent.datagrams_to_send()
    bye = parse_message(data)
    assert bye.method == "BYE" and bye.uri == "sip:555@192.0.2.77:5080" and dest == ("192.0.2.77", 5080)


def test_ack_for_an_older_invite_does_not_confirm_reinvite() -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("INVITE", branch="z9hG4bKr3", to=to, cseq="2 INVITE", body=PEER_SDP, extra=sdp_extra()),
                  PEER, LOCAL, 1.0)
    only(agent, ReinviteReceived)
    agent.answer_reinvite(call_id, answer_audio(PEER_SDP, "192.0.2.1", 30000, 5, 1).sdp, 1.0)
    replies(agent)
    agent.receive(raw("ACK", branch="z9hG4bKack", to=to, cseq="1 ACK"), PEER, LOCAL, 1.1)  # the old ACK again
    assert events(agent) == [] and agent.stats["ignored_acks"] == 1
    agent.receive(raw("ACK", branch="z9hG4bKa3", to=to, cseq="2 ACK"), PEER, LOCAL, 1.2)
    assert events(agent) == [ReinviteConfirmed(call_id)]


def test_second_offer_while_first_unanswered_and_old_cseq() -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("INVITE", branch="z9hG4bKr4", to=to, cseq="5 INVITE", body=PEER_SDP, extra=sdp_extra()),
                  PEER, LOCAL, 1.0)
    only(agent, ReinviteReceived)
    replies(agent)
    agent.receive(raw("UPDATE", branch="z9hG4bKu5", to=to, cseq="6 UPDATE", body=PEER_SDP, extra=sdp_extra()),
                  PEER, LOCAL, 1.1)
    [(resp, _)] = replies(agent)
    assert resp.status == 500 and 0 <= int(resp.headers.get("Retry-After")) <= 10
    agent.reject_reinvite(call_id, 488, "Not Acceptable Here", 1.2)
    replies(agent)
    agent.receive(raw("INVITE", branch="z9hG4bKr5", to=to, cseq="4 INVITE", body=PEER_SDP, extra=sdp_extra()),
                  PEER, LOCAL, 1.3)
    assert statuses(agent) == ["100 Trying", "500 CSeq Out of Order"] and events(agent) == []


@pytest.mark.parametrize("body,ctype,status", [
    ("v=0\r\nnonsense\r\n", "application/sdp", "400 Bad SDP"),
    ("hello", "text/plain", "415 Unsupported Media Type"),
])
def test_bad_reinvite_bodies_refused_by_the_ua(body: str, ctype: str, status: str) -> None:
    agent, call_id, to = setup_raw()
    agent.receive(raw("INVITE", branch="z9hG4bKr6", to=to, cseq="2 INVITE", body=body,
                      extra=[f"Content-Type: {ctype}"]), PEER, LOCAL, 1.0)
    assert statuses(agent) == ["100 Trying", status] and events(agent) == []


# --- application misuse, queueing ---------------------------------------------------------------

def test_reinvite_misuse_raises() -> None:
    net = Net()
    call_id = established(net)
    with pytest.raises(LocalProtocolError):
        net.a.reinvite("nope", OFFER, 1.0)
    with pytest.raises(LocalProtocolError):
        net.b.answer_reinvite(call_id, B_SDP, 1.0)  # nothing to answer
    with pytest.raises(LocalProtocolError):
        net.b.reject_reinvite(call_id, 200, "OK", 1.0)
    net.a.reinvite(call_id, OFFER, 1.0)
    with pytest.raises(LocalProtocolError):
        net.a.reinvite(call_id, OFFER, 1.0)  # ours is still pending
    net.run(1.0)
    with pytest.raises(LocalProtocolError):
        net.b.reinvite(call_id, B_SDP, 1.0)  # the peer's offer must be answered first


def test_reinvite_before_the_ack_is_queued_until_it() -> None:
    net = Net()
    net.drop = lambda data: data.startswith(b"ACK")
    call_id = net.a.invite("sip:100@127.0.0.2:5060", from_uri="sip:fax@127.0.0.1:5061", sdp=OFFER,
                           local=A, remote=(B.host, B.port), now=0.0)
    net.run(0.0)
    events(net.b)
    net.b.answer_call(call_id, B_SDP, 0.0)
    net.run(0.0)
    net.b.reinvite(call_id, offer_t38("127.0.0.2", 50002, 2, 2), 0.1)  # the ACK was lost
    net.run(0.1)
    assert "INVITE" not in net.sent("b")
    net.drop = lambda data: False
    net.advance(0.25, 0.5)  # the 2xx is retransmitted, the ACK arrives, the re-INVITE goes
    assert net.sent("b").count("INVITE") == 1
    assert [type(e) for e in events(net.b)] == [CallConfirmed]
    assert isinstance(events(net.a)[-1], ReinviteReceived)


# --- the digest hook -----------------------------------------------------------------------------

def test_challenge_hook_resends_reinvite_with_credentials() -> None:
    agent, call_id, to = setup_raw()
    seen: list[tuple[str, int]] = []

    def hook(cid: str, request: SipRequest, dest: tuple, response: SipResponse, source: tuple, now: float) -> bool:
        seen.append((request.method, response.status))
        agent.resend_request(cid, request, [("Authorization", 'Digest username="fax", response="x"')], now)
        return True

    agent.challenge_hook = hook
    agent.reinvite(call_id, offer_t38("192.0.2.1", 30000, 5, 2), 1.0)
    [(data, dest, _)] = agent.datagrams_to_send()
    first = parse_message(data)
    challenge = make_response(first, 401, "Unauthorized", "peer1",
                              [("WWW-Authenticate", 'Digest realm="pbx", nonce="n1"')])
    agent.receive(bytes(challenge), PEER, LOCAL, 1.1)
    out = [parse_message(d) for d, _, _ in agent.datagrams_to_send()]
    assert [m.method for m in out] == ["ACK", "INVITE"] and seen == [("INVITE", 401)]
    second = out[1]
    assert second.cseq[0] == first.cseq[0] + 1 and second.via.branch != first.via.branch
    assert second.headers.get("Authorization") == 'Digest username="fax", response="x"'
    assert second.body == first.body and second.to_tag == first.to_tag
    assert events(agent) == []
    ok = make_response(second, 200, "OK", None, [("Content-Type", "application/sdp")],
                       answer_t38(first.body, "192.0.2.50", 6000, 1, 2).sdp)
    agent.receive(bytes(ok), PEER, LOCAL, 1.2)
    assert isinstance(only(agent, ReinviteAnswered), ReinviteAnswered)
    [ack] = [parse_message(d) for d, _, _ in agent.datagrams_to_send()]
    assert ack.method == "ACK" and ack.cseq == (second.cseq[0], "ACK")


def test_without_challenge_hook_401_fails_the_reinvite() -> None:
    agent, call_id, to = setup_raw()
    agent.reinvite(call_id, OFFER, 1.0)
    [(data, _, _)] = agent.datagrams_to_send()
    agent.receive(bytes(make_response(parse_message(data), 407, "Proxy Authentication Required")), PEER, LOCAL, 1.1)
    assert events(agent) == [ReinviteFailed(call_id, 407, "Proxy Authentication Required")]


# --- the asyncio wrappers ------------------------------------------------------------------------

def test_endpoint_wrappers_over_loopback_udp() -> None:
    import asyncio

    from appliance.sip.transport import SipEndpoint

    async def next_event(endpoint: SipEndpoint, kind: type) -> object:
        while True:
            event = await asyncio.wait_for(endpoint.events.get(), LOADED)
            if isinstance(event, kind):
                return event

    async def scenario() -> None:
        a, b = SipEndpoint(), SipEndpoint()
        await a.start([("udp", "127.0.0.1", 0)])
        await b.start([("udp", "127.0.0.1", 0)])
        try:
            port = b.locals[0].port
            call_id = a.invite(f"sip:100@127.0.0.1:{port}", from_uri="sip:fax@127.0.0.1", sdp=OFFER,
                               remote=("127.0.0.1", port))
            incoming = await next_event(b, IncomingCall)
            b.answer_call(call_id, answer_audio(incoming.offer, "127.0.0.1", 50000, 1, 1).sdp)
            await next_event(b, CallConfirmed)
            b.reinvite(call_id, offer_t38("127.0.0.1", 50000, 1, 2))          # we go to T.38
            received = await next_event(a, ReinviteReceived)
            a.answer_reinvite(call_id, answer_t38(received.offer, "127.0.0.1", 40000, 3, 2).sdp)
            answered = await next_event(b, ReinviteAnswered)
            assert parse_t38_answer(answered.answer).remote == ("127.0.0.1", 40000)
            await next_event(a, ReinviteConfirmed)
            a.reinvite(call_id, offer_audio("127.0.0.1", 40000, 3, 3))          # the peer goes back
            await next_event(b, ReinviteReceived)
            b.reject_reinvite(call_id, 488, "Not Acceptable Here")
            assert await next_event(a, ReinviteFailed) == ReinviteFailed(call_id, 488, "Not Acceptable Here")
            a.hangup(call_id)
            await next_event(b, CallEnded)
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
