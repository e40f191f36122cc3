"""Transaction state machines driven directly, with fixed clocks."""
from __future__ import annotations

import pytest

from appliance.sip.errors import LocalProtocolError
from appliance.sip.message import SipRequest, SipResponse, parse_message
from appliance.sip.transaction import (
    ACCEPTED, CALLING, COMPLETED, CONFIRMED, INVITE_CLIENT, INVITE_SERVER, NON_INVITE_CLIENT,
    NON_INVITE_SERVER, PROCEEDING, TERMINATED, TRYING, InviteClientTransaction, InviteServerTransaction,
    NonInviteClientTransaction, NonInviteServerTransaction, TimerConfig, client_key, server_key,
)

from sip_helpers import raw


def request(method: str = "INVITE", branch: str = "z9hG4bK1") -> SipRequest:
    msg = parse_message(raw(method, branch=branch))
    assert isinstance(msg, SipRequest)
    return msg


def response(req: SipRequest, status: int) -> SipResponse:
    resp = SipResponse(status, "X")
    for name in ("Via", "From", "Call-ID", "CSeq"):
        for value in req.headers.get_all(name):
            resp.headers.add(name, value)
    resp.headers.add("To", (req.headers.get("To") or "") + (";tag=t" if status > 100 else ""))
    return resp


def fire_until(tx, end: float, step: float = 0.125) -> None:  # type: ignore[no-untyped-def]
    t = 0.0
    while t <= end:
        tx.handle_timer(t)
        t += step


def test_tables_only_reach_known_states() -> None:
    states = {CALLING, TRYING, PROCEEDING, ACCEPTED, COMPLETED, CONFIRMED, TERMINATED}
    for table in (INVITE_SERVER, NON_INVITE_SERVER, INVITE_CLIENT, NON_INVITE_CLIENT):
        assert {s for s, _ in table} | set(table.values()) <= states
        assert not any(s == TERMINATED for s, _ in table)  # Terminated is final


def test_invite_server_non2xx_timer_g_then_h() -> None:
    sent: list[tuple[float, bytes]] = []
    now = [0.0]
    req = request()
    tx = InviteServerTransaction(req, lambda d: sent.append((now[0], d)), False, 0.0)
    tx.respond(response(req, 100), 0.0)
    tx.respond(response(req, 486), 0.0)
    assert tx.state == COMPLETED
    t = 0.0
    while t <= 40:
        now[0] = t
        tx.handle_timer(t)
        t += 0.125
    times = [t for t, d in sent if d.startswith(b"SIP/2.0 486")]
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.state == TERMINATED and tx.timed_out


def test_invite_server_ack_confirms_then_timer_i() -> None:
    sent: list[bytes] = []
    req = request()
    tx = InviteServerTransaction(req, sent.append, False, 0.0)
    tx.respond(response(req, 603), 0.0)
    tx.receive_request(request("ACK"), 0.2)
    assert tx.state == CONFIRMED and tx.get_timer() == pytest.approx(5.2)
    tx.receive_request(req, 1.0)  # a late INVITE retransmission in Confirmed is absorbed
    assert len(sent) == 1
    tx.handle_timer(5.2)
    assert tx.state == TERMINATED and not tx.timed_out


def test_invite_server_reliable_has_no_timer_g() -> None:
    sent: list[bytes] = []
    req = request()
    tx = InviteServerTransaction(req, sent.append, True, 0.0)
    tx.respond(response(req, 486), 0.0)
    assert set(tx.timers) == {"H"}
    tx.receive_request(request("ACK"), 1.0)
    tx.handle_timer(1.0)
    assert tx.state == TERMINATED


def test_invite_server_retransmission_resends_last_response() -> None:
    sent: list[bytes] = []
    req = request()
    tx = InviteServerTransaction(req, sent.append, False, 0.0)
    tx.respond(response(req, 100), 0.0)
    tx.receive_request(req, 0.5)
    assert [d[:12] for d in sent] == [b"SIP/2.0 100 "] * 2
    tx.respond(response(req, 200), 1.0)
    assert tx.state == ACCEPTED
    tx.receive_request(req, 1.5)  # absorbed; the UA core retransmits 2xx itself
    assert len(sent) == 3
    tx.handle_timer(1.0 + 32.0)
    assert tx.state == TERMINATED


def test_invite_server_refuses_local_misuse() -> None:
    req = request()
    tx = InviteServerTransaction(req, lambda d: None, False, 0.0)
    tx.respond(response(req, 486), 0.0)
    with pytest.raises(LocalProtocolError):
        tx.respond(response(req, 200), 0.1)


def test_non_invite_server_timer_j() -> None:
    sent: list[bytes] = []
    req = request("BYE")
    tx = NonInviteServerTransaction(req, sent.append, False, 0.0)
    tx.receive_request(req, 0.1)  # Trying: nothing to resend yet
    assert sent == []
    tx.respond(response(req, 200), 0.2)
    tx.receive_request(req, 0.7)
    assert len(sent) == 2 and tx.state == COMPLETED
    tx.handle_timer(0.2 + 31.9)
    assert tx.state == COMPLETED
    tx.handle_timer(0.2 + 32.0)
    assert tx.state == TERMINATED


def test_non_invite_server_reliable_terminates_at_once() -> None:
    req = request("OPTIONS")
    tx = NonInviteServerTransaction(req, lambda d: None, True, 0.0)
    tx.respond(response(req, 200), 3.0)
    assert tx.get_timer() == 3.0


def test_invite_client_timer_a_and_b() -> None:
    sent: list[float] = []
    clock = [0.0]
    req = request()
    tx = InviteClientTransaction(req, lambda d: sent.append(clock[0]), False, 0.0)
    tx.start(0.0)
    t = 0.0
    while t <= 33:
        clock[0] = t
        tx.handle_timer(t)
        t += 0.125
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tx.state == TERMINATED and tx.timed_out


def test_invite_client_non2xx_acked_by_transaction() -> None:
    sent: list[bytes] = []
    req = request()
    tx = InviteClientTransaction(req, sent.append, False, 0.0)
    tx.start(0.0)
    assert tx.receive_response(response(req, 180), 0.1) and tx.state == PROCEEDING
    assert tx.get_timer() is None  # no retransmission once a provisional arrived
    assert tx.receive_response(response(req, 404), 0.2)
    ack = parse_message(sent[-1])
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.via.branch == req.via.branch and ack.to_tag == "t"
    assert not tx.receive_response(response(req, 404), 0.3)  # retransmission absorbed, ACK resent
    assert sent[-1] == sent[-2]
    tx.handle_timer(0.2 + 32.0)
    assert tx.state == TERMINATED and not tx.timed_out


def test_invite_client_2xx_passes_retransmissions_to_ua() -> None:
    req = request()
    tx = InviteClientTransaction(req, lambda d: None, True, 0.0)
    tx.start(0.0)
    assert set(tx.timers) == {"B"}  # reliable: no timer A
    assert tx.receive_response(response(req, 200), 0.1) and tx.state == ACCEPTED
    assert tx.receive_response(response(req, 200), 0.6)
    assert not tx.receive_response(response(req, 180), 0.7)


def test_non_invite_client_timer_e_caps_at_t2_and_f() -> None:
    sent: list[float] = []
    clock = [0.0]
    req = request("BYE")
    tx = NonInviteClientTransaction(req, lambda d: sent.append(clock[0]), False, 0.0)
    tx.start(0.0)
    t = 0.0
    while t <= 33:
        clock[0] = t
        tx.handle_timer(t)
        t += 0.125
    assert sent[:6] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(b - a == 4.0 for a, b in zip(sent[4:], sent[5:]))
    assert tx.state == TERMINATED and tx.timed_out


def test_non_invite_client_proceeding_uses_t2_then_k() -> None:
    sent: list[float] = []
    clock = [0.0]
    req = request("BYE")
    tx = NonInviteClientTransaction(req, lambda d: sent.append(clock[0]), False, 0.0)
    tx.start(0.0)
    tx.receive_response(response(req, 100), 0.1)
    for t in (0.5, 4.5):
        clock[0] = t
        tx.handle_timer(t)
    assert sent == [0.0, 0.5, 4.5]
    assert tx.receive_response(response(req, 200), 5.0) and tx.state == COMPLETED
    assert not tx.receive_response(response(req, 200), 5.1)
    tx.handle_timer(10.0)
    assert tx.state == TERMINATED


def test_custom_timer_config() -> None:
    req = request("OPTIONS")
    tx = NonInviteClientTransaction(req, lambda d: None, False, 0.0, TimerConfig(t1=0.1, t2=0.4))
    tx.start(0.0)
    assert tx.timers == {"E": 0.1, "F": pytest.approx(6.4)}


def test_matching_keys() -> None:
    invite = request("INVITE", "z9hG4bKm")
    assert server_key(request("ACK", "z9hG4bKm")) == server_key(invite)
    assert server_key(request("CANCEL", "z9hG4bKm"), "INVITE") == server_key(invite)
    assert server_key(request("CANCEL", "z9hG4bKm")) != server_key(invite)
    assert client_key(response(invite, 200)) == client_key(invite) == ("z9hG4bKm", "INVITE")
    legacy = parse_message(raw("INVITE", branch="1234"))
    assert server_key(legacy)[0] == "2543"
