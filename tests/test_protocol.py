"""appliance/protocol.py: the shared transition table and LocalProtocolError."""
from __future__ import annotations

from enum import Enum

import pytest

from appliance import protocol
from appliance.protocol import LocalProtocolError, Transitions
from appliance.sip import errors as sip_errors


class Door(Enum):
    OPEN = "open"
    SHUT = "shut"
    LOCKED = "locked"


DOOR = Transitions("door", {Door.OPEN: (Door.SHUT,), Door.SHUT: (Door.OPEN, Door.LOCKED), Door.LOCKED: (Door.SHUT,)})


def test_allowed_moves_return_the_new_state() -> None:
    assert DOOR.move(Door.OPEN, Door.SHUT) is Door.SHUT
    assert DOOR.move(Door.SHUT, Door.LOCKED) is Door.LOCKED
    assert DOOR.allowed(Door.LOCKED, Door.SHUT) and not DOOR.allowed(Door.LOCKED, Door.OPEN)
    assert DOOR.edges() == [(Door.OPEN, Door.SHUT), (Door.SHUT, Door.OPEN), (Door.SHUT, Door.LOCKED),
                            (Door.LOCKED, Door.SHUT)]


def test_a_move_missing_from_the_table_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError, match="door: locked -> open is not allowed"):
        DOOR.move(Door.LOCKED, Door.OPEN)
    with pytest.raises(LocalProtocolError):
        DOOR.move(Door.OPEN, Door.OPEN)  # staying put is a move too, and not listed here


def test_the_error_class_can_be_a_protocols_own() -> None:
    table = Transitions("sip door", {Door.OPEN: ()}, error=sip_errors.LocalProtocolError)
    with pytest.raises(sip_errors.LocalProtocolError) as info:
        table.move(Door.OPEN, Door.SHUT)
    assert isinstance(info.value, protocol.LocalProtocolError) and isinstance(info.value, sip_errors.SipError)
