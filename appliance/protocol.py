"""What the appliance's sans-I/O state machines share: whose fault an illegal move is, and the
table of allowed moves written as data (h11's `_state.py` style).

A state machine keeps its states in an Enum and its allowed moves in one `Transitions` table;
every change of state goes through `Transitions.move`, so a move the table lacks is caught where
it happens. Such a move is always our own bug (the application asked for something the protocol
forbids): `LocalProtocolError`. What a peer sends that does not fit is never raised from here;
each protocol answers or ignores it (`RemoteProtocolError`s are its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Generic, TypeVar


class LocalProtocolError(Exception):
    """We (the application) asked a state machine for a move its protocol forbids."""


S = TypeVar("S", bound=Enum)


class Transitions(Generic[S]):
    """The allowed moves of one state machine: ``{from_state: (to_state, ...)}``.

    Staying in the same state is a move like any other: list it when it is allowed.
    """

    def __init__(
        self, name: str, moves: Mapping[S, Iterable[S]], error: type[LocalProtocolError] = LocalProtocolError
    ) -> None:
        self.name = name
        self.error = error
        self._moves: dict[S, frozenset[S]] = {state: frozenset(to) for state, to in moves.items()}

    def allowed(self, current: S, to: S) -> bool:
        return to in self._moves.get(current, frozenset())

    def move(self, current: S, to: S) -> S:
        """`to`, when the table allows it from `current`; else `error` (a LocalProtocolError)."""
        if not self.allowed(current, to):
            raise self.error(f"{self.name}: {current.value} -> {to.value} is not allowed")
        return to

    def edges(self) -> list[tuple[S, S]]:
        """Every allowed (from, to) move, for documentation and tests."""
        return [(a, b) for a, to in self._moves.items() for b in sorted(to, key=list(type(a)).index)]
