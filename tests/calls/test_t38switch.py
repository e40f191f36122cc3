"""The T.38 switching policy (appliance/calls/t38switch.py), stepped through a fake clock.

Each test plays one way a call reaches T.38 (or stays on G.711) with the peer's SDP as a gateway
would send it, and checks the actions the switcher asks for, in order, and its deadlines.
"""
from __future__ import annotations

import pytest

from appliance.calls.t38switch import (
    FALLBACK_RETRY, T38_MEDIA_TIMEOUT, T38_REQUEST_DELAY, AnswerReinvite, FaxProgress, Mode, Note, RejectReinvite,
    ReinviteKind, ReinviteNotSent, ReinviteSent, Retarget, SendReinvite, T38Policy, T38Switcher, UdptlArrived,
    UseAudio, UseT38,
)
from appliance.sip import events as sipev
from appliance.sip.sdp import NoUsableCodec, SessionDescription, parse_answer, parse_t38_answer

CALL = "c1@gw"
GW = "192.0.2.10"


def sd(media: str, version: int = 1) -> SessionDescription:
    return SessionDescription.parse(f"v=0\r\no=gw 77 {version} IN IP4 {GW}\r\ns=-\r\nc=IN IP4 {GW}\r\nt=0 0\r\n"
                                    + media)


AUDIO = "m=audio 5000 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
IMAGE = "m=image 5002 udptl t38\r\na=T38FaxVersion:0\r\na=T38FaxMaxDatagram:612\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n"


def switcher(policy: str = "accept", override: int = 0) -> T38Switcher:
    return T38Switcher(T38Policy(policy), "192.0.2.1", 40000, 4242, max_datagram_override=override)


def on_audio(policy: str = "accept", now: float = 0.0) -> T38Switcher:
    s = switcher(policy)
    use = s.answer(sd(AUDIO), now)
    assert isinstance(use, UseAudio) and use.audio.codec == "PCMA" and s.mode == Mode.AUDIO
    return s


def reinvite(offer: SessionDescription | None, same: bool = False) -> sipev.ReinviteReceived:
    return sipev.ReinviteReceived(CALL, offer, same)


def t38_reinvite(version: int = 2, port: int = 5002) -> sipev.ReinviteReceived:
    return reinvite(sd(IMAGE.replace("5002", str(port)), version))


# --- the INVITE ------------------------------------------------------------------------------------

def test_t38_in_the_invite_is_taken_and_never_falls_back() -> None:
    s = switcher("accept")
    use = s.answer(sd(AUDIO + IMAGE), 3.0)
    assert isinstance(use, UseT38)
    assert (use.remote, use.far_max_datagram) == ((GW, 5002), 612)
    assert s.mode == Mode.T38 and s.switches == ["T.38 offered in the INVITE"]
    ours = SessionDescription.parse(s.sdp)
    assert [m.media for m in ours.media if m.port] == ["image"]
    assert s.next_timer() is None  # no audio was ever agreed: nothing to fall back to
    assert s.handle_timer(3.0 + 60) == []


def test_policy_off_answers_audio_and_image_offer_with_audio() -> None:
    s = switcher("off")
    use = s.answer(sd(AUDIO + IMAGE), 0.0)
    assert isinstance(use, UseAudio) and s.mode == Mode.AUDIO and s.codec == "PCMA"
    assert "m=image 0 udptl t38" in s.sdp
    with pytest.raises(NoUsableCodec):
        switcher("off").answer(sd(IMAGE), 0.0)


def test_policy_off_refuses_a_t38_reinvite_and_never_requests() -> None:
    s = on_audio("off")
    assert s.receive(sipev.CallConfirmed(CALL), 1.0) == []
    assert s.next_timer() is None
    assert s.receive(t38_reinvite(), 2.0) == [RejectReinvite(488, "Not Acceptable Here")]
    assert s.mode == Mode.AUDIO and s.switches == []


def test_max_datagram_override_replaces_the_peers_value() -> None:
    use = switcher("accept", override=300).answer(sd(IMAGE), 0.0)
    assert isinstance(use, UseT38) and use.far_max_datagram == 300


# --- the peer re-INVITEs ---------------------------------------------------------------------------

def test_peer_reinvite_to_t38_switches_and_arms_the_media_timeout() -> None:
    s = on_audio("accept")
    assert s.receive(sipev.CallConfirmed(CALL), 0.5) == []
    assert s.next_timer() is None  # "accept" never asks for T.38 itself
    answer, use = s.receive(t38_reinvite(), 10.0)
    assert isinstance(answer, AnswerReinvite) and isinstance(use, UseT38)
    back = parse_t38_answer(answer.sdp)
    assert back.remote == ("192.0.2.1", 40000)  # the same port carries UDPTL
    assert "o=faxbridge 4242 2 IN IP4" in answer.sdp and s.sdp == answer.sdp
    assert (use.remote, use.why) == ((GW, 5002), "peer re-INVITE")
    assert s.mode == Mode.T38 and s.switches == ["T.38 (peer re-INVITE)"]
    assert s.next_timer() == 10.0 + T38_MEDIA_TIMEOUT


def test_no_udptl_after_agreeing_falls_back_to_g711() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 10.0)
    deadline = 10.0 + T38_MEDIA_TIMEOUT
    assert s.handle_timer(deadline - 0.01) == []
    (send,) = s.handle_timer(deadline)
    assert isinstance(send, SendReinvite) and send.kind == ReinviteKind.FALLBACK
    offer = SessionDescription.parse(send.sdp)
    assert offer.media[0].media == "audio" and offer.media[0].rtpmap()["8"][0] == "PCMA"
    assert "0" not in offer.media[0].formats  # only the codec the call used
    assert "o=faxbridge 4242 3 IN IP4" in send.sdp
    assert s.mode == Mode.T38  # not before the user agent has sent it
    (use,) = s.receive(ReinviteSent(ReinviteKind.FALLBACK), deadline)
    assert isinstance(use, UseAudio) and use.why == "no UDPTL arrived after T.38 was agreed"
    assert use.audio.codec == "PCMA" and use.audio.remote == (GW, 5000)
    assert s.mode == Mode.AUDIO and s.sdp == send.sdp and s.sdp_version == 3
    assert s.switches[-1] == "G.711 (no UDPTL arrived after T.38 was agreed)"
    assert s.next_timer() is None


def test_fall_back_deferred_while_an_offer_is_open_then_retried() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    (first,) = s.handle_timer(T38_MEDIA_TIMEOUT)
    assert isinstance(first, SendReinvite)
    assert s.receive(ReinviteNotSent(ReinviteKind.FALLBACK, "answer the peer's offer first"), T38_MEDIA_TIMEOUT) == [
        Note("fall-back re-INVITE deferred: answer the peer's offer first")]
    assert s.mode == Mode.T38 and s.sdp_version == 2
    assert s.next_timer() == pytest.approx(T38_MEDIA_TIMEOUT + FALLBACK_RETRY)
    assert s.handle_timer(T38_MEDIA_TIMEOUT + FALLBACK_RETRY / 2) == []
    (again,) = s.handle_timer(T38_MEDIA_TIMEOUT + FALLBACK_RETRY)
    assert isinstance(again, SendReinvite) and again.sdp == first.sdp  # the same version: it was never sent
    assert isinstance(s.receive(ReinviteSent(ReinviteKind.FALLBACK), 9.0)[0], UseAudio)


def test_udptl_arriving_keeps_t38() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    assert s.receive(UdptlArrived(), 2.0) == []
    assert s.next_timer() is None
    assert s.handle_timer(60.0) == [] and s.mode == Mode.T38


def test_udptl_before_our_200_ok_counts() -> None:
    # Cisco CUBE: UDPTL starts while its re-INVITE is still unanswered
    s = on_audio("accept")
    s.receive(UdptlArrived(), 4.9)
    assert isinstance(s.receive(t38_reinvite(), 5.0)[1], UseT38)
    assert s.next_timer() is None


def test_pages_received_as_audio_refuse_t38() -> None:
    s = on_audio("accept")
    s.receive(FaxProgress(pages=1, ended=False), 20.0)
    assert s.receive(t38_reinvite(), 21.0) == [RejectReinvite(488, "Not Acceptable Here (fax already in progress)")]
    assert s.mode == Mode.AUDIO and s.sdp_version == 1


def test_refresh_and_offerless_reinvite_change_nothing() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    current = s.sdp
    assert s.receive(reinvite(sd(IMAGE, 2), same=True), 30.0) == [AnswerReinvite(current)]
    assert s.receive(reinvite(None), 31.0) == [AnswerReinvite(current)]
    assert s.mode == Mode.T38 and s.sdp_version == 2 and len(s.switches) == 1


def test_t38_reinvite_during_t38_retargets_the_same_fax() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    answer, move = s.receive(t38_reinvite(version=3, port=6002), 1.0)
    assert isinstance(answer, AnswerReinvite) and move == Retarget((GW, 6002))
    assert s.switches == ["T.38 (peer re-INVITE)"] and s.sdp_version == 3


def test_back_to_audio_before_the_fax_started_switches() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    answer, use = s.receive(reinvite(sd(AUDIO, 3)), 2.0)
    assert isinstance(answer, AnswerReinvite) and parse_answer(answer.sdp).codec == "PCMA"
    assert isinstance(use, UseAudio) and use.why == "peer re-INVITE back to audio before the fax started"
    assert s.mode == Mode.AUDIO and s.next_timer() is None


@pytest.mark.parametrize("progress", [FaxProgress(pages=0, ended=True), FaxProgress(pages=2, ended=False)])
def test_back_to_audio_after_or_during_the_fax_keeps_t38(progress: FaxProgress) -> None:
    # Grandstream "re-INVITE after fax", or a peer that changes its mind mid-fax: the pages stay ours
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    s.receive(UdptlArrived(), 0.5)
    s.receive(progress, 40.0)
    (answer,) = s.receive(reinvite(sd(AUDIO, 3)), 41.0)
    assert isinstance(answer, AnswerReinvite)
    assert s.mode == Mode.T38 and s.switches[-1] == "peer went back to audio"


def test_unusable_audio_reinvite_is_refused() -> None:
    s = on_audio("accept")
    before = s.sdp
    refused = [RejectReinvite(488, "Not Acceptable Here")]
    assert s.receive(reinvite(sd("m=audio 5000 RTP/AVP 18\r\n", 2)), 1.0) == refused
    assert s.receive(reinvite(sd("m=video 5000 RTP/AVP 31\r\n", 3)), 1.0) == refused
    assert s.mode == Mode.AUDIO and s.codec == "PCMA" and s.sdp == before


def test_pages_on_t38_never_fall_back() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    s.receive(FaxProgress(pages=1, ended=False), 1.0)
    assert s.next_timer() is None and s.handle_timer(60.0) == []


def test_phase_e_is_forgotten_when_t30_starts_over() -> None:
    s = on_audio("accept")
    s.receive(FaxProgress(pages=0, ended=True), 1.0)  # a failed audio attempt reached phase E
    s.receive(t38_reinvite(), 2.0)
    answer, use = s.receive(reinvite(sd(AUDIO, 3)), 3.0)  # the new T.38 session has not ended
    assert isinstance(use, UseAudio)


# --- we re-INVITE (policy "request") ---------------------------------------------------------------

def test_request_reinvites_after_the_ack_and_switches_when_accepted() -> None:
    s = on_audio("request")
    assert s.next_timer() is None  # not before the call is confirmed
    s.receive(sipev.CallConfirmed(CALL), 5.0)
    assert s.next_timer() == 5.0 + T38_REQUEST_DELAY
    s.receive(sipev.CallConfirmed(CALL), 5.5)  # a repeated ACK event does not push the request back
    assert s.next_timer() == 5.0 + T38_REQUEST_DELAY
    assert s.handle_timer(5.9) == []
    note, send = s.handle_timer(6.0)
    assert note == Note("re-INVITE to T.38") and isinstance(send, SendReinvite) and send.kind == ReinviteKind.T38
    assert [m.media for m in SessionDescription.parse(send.sdp).media] == ["image"]
    assert "o=faxbridge 4242 2 IN IP4" in send.sdp
    assert s.receive(ReinviteSent(ReinviteKind.T38), 6.0) == []
    assert s.next_timer() is None and s.mode == Mode.AUDIO
    peer_answer = sd(IMAGE, 2)
    (use,) = s.receive(sipev.ReinviteAnswered(CALL, peer_answer), 6.2)
    assert isinstance(use, UseT38) and use.why == "our re-INVITE accepted" and use.remote == (GW, 5002)
    assert s.mode == Mode.T38 and s.switches == ["T.38 (our re-INVITE accepted)"]
    assert [m.media for m in SessionDescription.parse(s.sdp).media] == ["image"]
    assert s.next_timer() == 6.2 + T38_MEDIA_TIMEOUT
    assert s.receive(sipev.CallConfirmed(CALL), 7.0) == [] and s.handle_timer(7.0) == []  # asked once


def test_request_peer_reinvites_first() -> None:
    s = on_audio("request")
    s.receive(sipev.CallConfirmed(CALL), 5.0)
    s.receive(t38_reinvite(), 5.5)
    assert s.next_timer() == 5.5 + T38_MEDIA_TIMEOUT  # the request timer is gone
    assert s.handle_timer(6.0) == []
    assert s.switches == ["T.38 (peer re-INVITE)"]


@pytest.mark.parametrize("status", [488, 415, 606])
def test_request_peer_refuses_stays_on_g711(status: int) -> None:
    s = on_audio("request")
    s.receive(sipev.CallConfirmed(CALL), 0.0)
    s.handle_timer(1.0)
    s.receive(ReinviteSent(ReinviteKind.T38), 1.0)
    assert s.receive(sipev.ReinviteFailed(CALL, status, "Nope"), 1.1) == [
        Note(f"re-INVITE refused ({status} Nope): staying on G.711")]
    assert s.mode == Mode.AUDIO and s.switches == [f"our re-INVITE refused: {status} Nope"]
    assert s.next_timer() is None and s.handle_timer(30.0) == []


def test_glare_491_is_left_to_the_peers_reinvite() -> None:
    s = on_audio("request")
    s.receive(sipev.CallConfirmed(CALL), 0.0)
    s.handle_timer(1.0)
    assert s.receive(sipev.ReinviteFailed(CALL, 491, "Superseded"), 1.2) == []
    assert s.switches == []
    assert isinstance(s.receive(t38_reinvite(), 1.3)[1], UseT38)


def test_request_not_sent_is_not_retried() -> None:
    s = on_audio("request")
    s.receive(sipev.CallConfirmed(CALL), 0.0)
    s.handle_timer(1.0)
    assert s.receive(ReinviteNotSent(ReinviteKind.T38, "a re-INVITE of ours is still pending"), 1.0) == [
        Note("T.38 re-INVITE not sent: a re-INVITE of ours is still pending")]
    assert s.next_timer() is None and s.mode == Mode.AUDIO


def test_audio_answer_to_our_fallback_changes_nothing() -> None:
    s = on_audio("accept")
    s.receive(t38_reinvite(), 0.0)
    s.handle_timer(T38_MEDIA_TIMEOUT)
    s.receive(ReinviteSent(ReinviteKind.FALLBACK), T38_MEDIA_TIMEOUT)
    assert s.receive(sipev.ReinviteAnswered(CALL, sd(AUDIO, 3)), 8.1) == []
    assert s.mode == Mode.AUDIO


def test_a_call_that_ended_has_no_deadlines() -> None:
    s = on_audio("request")
    s.receive(sipev.CallConfirmed(CALL), 0.0)
    s.receive(sipev.CallEnded(CALL, "remote BYE"), 0.5)
    assert s.next_timer() is None and s.handle_timer(10.0) == []
    t = on_audio("accept")
    t.receive(t38_reinvite(), 0.0)
    t.receive(sipev.CallEnded(CALL, "remote BYE"), 0.5)
    assert t.next_timer() is None and t.handle_timer(60.0) == []
