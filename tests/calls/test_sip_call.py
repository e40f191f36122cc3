"""The SIP call's driver (appliance/calls/sip_call.py) hands the user agent's refusals back to the
switcher: a re-INVITE the UA will not send now is retried, never taken for sent."""
from __future__ import annotations

from types import SimpleNamespace

from appliance.calls.sip_call import InboundSipCall
from appliance.calls.t38switch import FALLBACK_RETRY, T38_MEDIA_TIMEOUT, Mode, SendReinvite
from appliance.config import Config
from appliance.sip import events as sipev
from appliance.sip.errors import LocalProtocolError
from appliance.sip.sdp import SessionDescription

SDP = "v=0\r\no=gw 1 {v} IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
AUDIO = "m=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n"
IMAGE = "m=image 5002 udptl t38\r\na=T38FaxVersion:0\r\n"


class FakeSip:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.refuse = True

    def reinvite(self, call_id: str, sdp: str) -> None:
        if self.refuse:
            raise LocalProtocolError(f"call {call_id}: answer the peer's offer first")
        self.sent.append((call_id, sdp))


def test_a_refused_fall_back_is_retried_and_the_call_stays_on_t38() -> None:
    sip = FakeSip()
    channel = SimpleNamespace(port=40000)
    call = InboundSipCall("c1", Config(), sip, channel, None, None, "192.0.2.1")  # type: ignore[arg-type]
    s = call.switcher
    s.answer(SessionDescription.parse(SDP.format(v=1) + AUDIO), 0.0)
    s.receive(sipev.ReinviteReceived("c1", SessionDescription.parse(SDP.format(v=2) + IMAGE), False), 0.0)
    actions = s.handle_timer(T38_MEDIA_TIMEOUT)
    assert [type(a) for a in actions] == [SendReinvite]
    call._carry_out(actions, T38_MEDIA_TIMEOUT)
    assert sip.sent == [] and call.mode == Mode.T38
    assert s.next_timer() == T38_MEDIA_TIMEOUT + FALLBACK_RETRY


def test_our_t38_request_goes_to_the_user_agent_once() -> None:
    sip = FakeSip()
    sip.refuse = False
    channel = SimpleNamespace(port=40000)
    call = InboundSipCall("c2", Config(), sip, channel, None, None, "192.0.2.1",  # type: ignore[arg-type]
                          t38_policy="request")
    call.switcher.answer(SessionDescription.parse(SDP.format(v=1) + AUDIO), 0.0)
    call._carry_out(call.switcher.receive(sipev.CallConfirmed("c2"), 3.0), 3.0)
    call._carry_out(call.switcher.handle_timer(4.0), 4.0)
    call._carry_out(call.switcher.handle_timer(9.0), 9.0)
    assert len(sip.sent) == 1 and "m=image 40000 udptl t38" in sip.sent[0][1]
    assert call.mode == Mode.AUDIO  # until the peer's 200 OK says yes
