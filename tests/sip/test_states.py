"""The SIP core's states are enums moved through one table each (calls, registrations, transactions)."""
from __future__ import annotations

import random

import pytest

from appliance.config import RegistrationConfig
from appliance.sip.errors import LocalProtocolError
from appliance.sip.events import Local
from appliance.sip.registration import REG_STATES, RegState, Registration
from appliance.sip.transaction import (INVITE_CLIENT, INVITE_SERVER, NON_INVITE_CLIENT, NON_INVITE_SERVER,
                                       TxState)
from appliance.sip.useragent import CALL_PHASES, CallPhase, Role, UserAgent

from sip_helpers import raw

UDP = Local("udp", "192.0.2.1", 5060)
PEER = ("192.0.2.50", 5060)


def test_every_state_has_a_row_and_every_move_names_states() -> None:
    for table, states in ((CALL_PHASES, CallPhase), (REG_STATES, RegState)):
        sources = {a for a, _ in table.edges()}
        assert sources == set(states)
    for tx_table in (INVITE_SERVER, NON_INVITE_SERVER, INVITE_CLIENT, NON_INVITE_CLIENT):
        for (state, _event), new in tx_table.items():
            assert isinstance(state, TxState) and isinstance(new, TxState)


def test_a_call_moves_only_along_the_table() -> None:
    ua = UserAgent(rng=random.Random(1))
    ua.receive(raw("INVITE"), PEER, UDP, 0.0)
    ev = ua.next_event()
    call = ua._calls[ev.call_id]  # type: ignore[union-attr]
    assert (call.role, call.state) == (Role.UAS, CallPhase.EARLY)
    ua.answer_call(call.call_id, "v=0\r\n", 0.1)
    assert call.state == CallPhase.ANSWERED == "answered"  # still reads as its old string
    with pytest.raises(LocalProtocolError, match="call: answered -> calling"):
        call.move(CallPhase.CALLING)
    assert call.state == CallPhase.ANSWERED
    ua.hangup(call.call_id, 0.2)  # before the ACK: the BYE waits (§15)
    ua.handle_timer(0.1 + 64 * 0.5)  # no ACK ever: BYE and the end
    assert call.state == CallPhase.ENDED


def test_a_registration_moves_only_along_the_table() -> None:
    reg = Registration(RegistrationConfig(registrar="sip:pbx.example", user="u", password="p"), UDP,
                       rng=random.Random(1))
    assert reg.state == RegState.IDLE
    reg.start(0.0)
    assert reg.state == RegState.REGISTERING and reg.status().state == "registering"
    with pytest.raises(LocalProtocolError, match="registration: registering -> refreshing"):
        reg._move(RegState.REFRESHING)
    reg.stop(1.0)
    assert reg.state == RegState.UNREGISTERING
